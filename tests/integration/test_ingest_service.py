"""`earmark-cloud ingest` as a process against a real Mosquitto: clips stored once with
receipts, metrics and health, a SIGKILL mid-stream, a broker that is not up yet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from earmark.cloud.settings import default_master_key_path
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from earmark.wire.receipt import parse_receipt
from tests.support.broker import Mosquitto, free_port
from tests.support.cloudkit import SimDevice, make_store
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


RUNNING: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_ingester_outlives_its_test() -> Iterator[None]:
    yield
    while RUNNING:
        proc = RUNNING.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Ingester:
    def __init__(self, data_dir: Path, broker: Mosquitto, log: Path) -> None:
        self.data_dir, self.broker, self.log = data_dir, broker, log
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Ingester:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir", str(self.data_dir),
             "--broker", self.broker.url, "--metrics-port", str(self.metrics_port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))  # noqa: SIM115
        RUNNING.append(self.proc)
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout, f"a healthy ingester: {self.log.read_text()[-2000:]}", interval=0.1)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


class DeviceLink:
    """A device's MQTT side, by hand: publishes envelopes, collects its receipts."""

    def __init__(self, device: SimDevice, broker: Mosquitto) -> None:
        self.receipts: dict[str, str] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.device_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"earmark/v1/receipts/{device.device_id}", qos=1)
        self.client.loop_start()
        self.device = device

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        receipt = parse_receipt(message.payload)
        with self.lock:
            self.receipts[receipt.clip_id] = receipt.status

    def publish(self, envelope: bytes) -> None:
        self.client.publish(self.device.topic, envelope, qos=1).wait_for_publish(10)

    def wait_receipts(self, count: int, timeout: float = 60) -> dict[str, str]:
        def arrived() -> dict[str, str] | None:
            with self.lock:
                return dict(self.receipts) if len(self.receipts) >= count else None

        return wait_until(arrived, timeout, f"{count} receipts")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def cloud(tmp_path: Path) -> tuple[Path, SimDevice]:
    store = make_store(tmp_path / "cloud")
    owner = store.registry.add_owner("Alice")
    device = SimDevice("kitchen", owner.owner_id)
    store.registry.add_device(owner.owner_id, device.public_key, device.device_id)
    store.close()
    return tmp_path / "cloud", device


def stored(data_dir: Path, owner_id: str) -> list[str]:
    store = Store(data_dir, default_master_key_path(data_dir))
    try:
        return [c.clip_id for c in store.clips.of_owner(owner_id)]
    finally:
        store.close()


def test_clips_are_stored_once_with_receipts_metrics_and_health(
        tmp_path: Path, broker: Mosquitto, cloud: tuple[Path, SimDevice]) -> None:
    data_dir, device = cloud
    ingester = Ingester(data_dir, broker, tmp_path / "ingest.log").start()
    ingester.wait_healthy()
    link = DeviceLink(device, broker)
    envelopes = [device.clip(seed=i) for i in range(10)]
    for envelope in envelopes:
        link.publish(envelope)
    link.publish(envelopes[0])  # a resend: answered "duplicate", stored once
    stranger = SimDevice("kitchen", device.owner_id)  # same topic, wrong key
    link.publish(stranger.clip(seed=99))
    receipts = link.wait_receipts(11)
    ids = [decode_envelope(e).header.clip_id for e in envelopes]
    assert all(receipts[i] in ("stored", "duplicate") for i in ids)
    assert list(receipts.values()).count("rejected") == 1
    assert sorted(stored(data_dir, device.owner_id)) == sorted(ids)

    status, text = ingester.get("/metrics")
    assert status == 200
    assert 'earmark_clips_total{status="stored"} 10.0' in text
    assert 'earmark_clips_total{status="duplicate"} 1.0' in text
    assert 'earmark_rejections_total{reason="bad_signature"} 1.0' in text
    assert "earmark_ingest_seconds_count 12.0" in text
    assert json.loads(ingester.get("/healthz")[1]) == {"broker": "ok", "store": "ok"}

    assert ingester.kill(signal.SIGTERM) == 0
    link.close()


def test_killing_the_ingester_mid_stream_loses_and_doubles_nothing(
        tmp_path: Path, broker: Mosquitto, cloud: tuple[Path, SimDevice]) -> None:
    data_dir, device = cloud
    ingester = Ingester(data_dir, broker, tmp_path / "ingest.log").start()
    ingester.wait_healthy()
    link = DeviceLink(device, broker)
    envelopes = {decode_envelope(e).header.clip_id: e for e in (device.clip(seed=i, seconds=2.0) for i in range(60))}

    def publish_all() -> None:  # paced like a handful of devices, so the kill lands mid-stream
        for envelope in envelopes.values():
            link.publish(envelope)
            time.sleep(0.025)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    link.wait_receipts(10)
    ingester.kill(signal.SIGKILL)  # mid-stream, with messages in flight
    killed_at = len(link.receipts)
    publisher.join()
    Ingester(data_dir, broker, tmp_path / "ingest2.log").start().wait_healthy()
    wait_until(lambda: len(stored(data_dir, device.owner_id)) >= 60, 60, "all 60 clips stored", interval=0.2)
    # A receipt can die with the ingester after its ack went out; the device then sends
    # the clip again, as a device does with any clip still waiting, and hears "duplicate".
    # First a sentinel: once its receipt is here, every receipt sent before it is too.
    sentinel = device.clip(seed=999)
    link.publish(sentinel)
    wait_until(lambda: decode_envelope(sentinel).header.clip_id in link.receipts, 30, "the sentinel's receipt")
    envelopes[decode_envelope(sentinel).header.clip_id] = sentinel
    with link.lock:
        unanswered = [e for clip_id, e in envelopes.items() if clip_id not in link.receipts]
    for envelope in unanswered:
        link.publish(envelope)
    receipts = link.wait_receipts(len(envelopes))  # all 61: waiting for 60 raced the last re-sent clip's receipt

    clips = stored(data_dir, device.owner_id)
    assert len(clips) == len(set(clips)) == 61 and set(clips) == set(envelopes)
    assert set(receipts) == set(envelopes) and set(receipts.values()) <= {"stored", "duplicate"}
    assert killed_at < 60, "the kill came too late to test anything"
    link.close()


def test_the_ingester_waits_for_a_broker_that_is_not_up_yet(
        tmp_path: Path, cloud: tuple[Path, SimDevice]) -> None:
    data_dir, device = cloud
    broker = Mosquitto(tmp_path / "late-broker")
    ingester = Ingester(data_dir, broker, tmp_path / "ingest.log").start()
    wait_until(lambda: "retrying" in ingester.log.read_text(), 30, "the ingester to say the broker is not there")
    assert ingester.get("/healthz")[0] == 503
    broker.start()
    try:
        ingester.wait_healthy(timeout=40)
        link = DeviceLink(device, broker)
        link.publish(device.clip())
        assert list(link.wait_receipts(1).values()) == ["stored"]
        link.close()
        assert ingester.kill(signal.SIGTERM) == 0
    finally:
        broker.stop()
        if ingester.proc and ingester.proc.poll() is None:
            ingester.kill()
    assert os.path.exists(data_dir / "earmark.db")


def test_a_second_ingester_on_the_same_store_refuses_to_start(
        tmp_path: Path, broker: Mosquitto, cloud: tuple[Path, SimDevice]) -> None:
    data_dir, device = cloud
    first = Ingester(data_dir, broker, tmp_path / "first.log").start()
    first.wait_healthy()
    orphan = data_dir / "blobs" / device.owner_id / "in-flight.bin"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"a blob the first ingester has written but not yet committed")
    second = subprocess.run([sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir", str(data_dir),
                             "--broker", broker.url, "--metrics-port", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "another ingester" in second.stderr and second.stderr.strip().count("\n") == 0
    assert orphan.exists(), "the refused ingester swept a blob that was not its to sweep"
    assert first.kill(signal.SIGTERM) == 0


def test_an_ingester_started_before_its_database_waits_for_it(tmp_path: Path) -> None:
    from earmark.cloud.store.crypto import create_master_key

    data_dir = tmp_path / "cloud"
    create_master_key(default_master_key_path(data_dir))
    nowhere = f"postgresql://earmark_test_service@127.0.0.1:{free_port()}/earmark"  # nothing listens
    log = tmp_path / "ingest.log"
    proc = subprocess.Popen([sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir", str(data_dir),
                             "--database-url", nowhere, "--metrics-port", "0"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))  # noqa: SIM115
    try:
        deadline = time.monotonic() + 30
        while log.read_text().count("retrying in") < 2:  # waits, with backoff, instead of exiting
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "cannot connect to PostgreSQL" in log.read_text()


def presence(data_dir: Path, owner_id: str) -> dict[str, tuple[bool, object]]:
    store = Store(data_dir, default_master_key_path(data_dir))
    try:
        return {d: (p.online, p.status.get("spool_depth")) for d, p in store.presence.of_owner(owner_id).items()}
    finally:
        store.close()


def test_the_ingester_records_whether_each_device_is_online_from_its_retained_status(
        tmp_path: Path, broker: Mosquitto, cloud: tuple[Path, SimDevice]) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    data_dir, device = cloud
    link = DeviceLink(device, broker)  # connected before the ingester: its retained status is waiting
    link.client.will_set(f"earmark/v1/status/{device.device_id}", b"offline", qos=1, retain=True)
    link.client.reconnect()  # (the will is sent with CONNECT)
    link.client.publish(f"earmark/v1/status/{device.device_id}", b'{"state":"online","spool_depth":3}',
                        qos=1, retain=True).wait_for_publish(10)
    stranger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stranger-pi", protocol=mqtt.MQTTv5)
    stranger.connect("127.0.0.1", broker.port)
    stranger.loop_start()
    stranger.publish("earmark/v1/status/stranger-pi", b'{"state":"online"}', qos=1, retain=True).wait_for_publish(10)
    ingester = Ingester(data_dir, broker, tmp_path / "ingest.log").start()
    ingester.wait_healthy()
    wait_until(lambda: presence(data_dir, device.owner_id) == {device.device_id: (True, 3)}, 30,
               "the device shown online from its retained status")

    # The connection drops without a goodbye: the broker publishes the will, and it is offline.
    link.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    wait_until(lambda: presence(data_dir, device.owner_id) == {device.device_id: (False, None)}, 30,
               "the device shown offline from its will")
    assert ingester.kill(signal.SIGTERM) == 0
    link.client.loop_stop()
    stranger.loop_stop()
    stranger.disconnect()
    store = Store(data_dir, default_master_key_path(data_dir))
    try:  # a device the registry does not know has no row, under anyone
        assert store.db.query("SELECT device_id FROM device_presence") == [
            {"device_id": device.device_id}]
    finally:
        store.close()
