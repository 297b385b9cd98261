"""The clustered path: real device publishers speak MQTT to RabbitMQ's MQTT plugin, which
routes their clips into a quorum queue; ingester processes consume it over AMQP with manual
acks into PostgreSQL and send receipts back the same way. The ingest core is the same one;
only the source differs. A SIGKILLed ingester's unacked clips go to the others at once, and
ingesters whose connections the broker drops reconnect and lose nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from earmark.device.settings import BrokerSettings
from earmark.device.sync.publisher import Publisher
from earmark.device.sync.spool import Spool
from earmark.runtime.durable import write_file
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import SimDevice, make_store, reopen
from tests.support.pgdb import temporary_database
from tests.support.rabbit import RabbitVhost
from tests.support.securecloud import wait_until_logged
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CLIPS = 300


class Cloud:
    def __init__(self, folder: Path, database_url: str, rabbit: RabbitVhost) -> None:
        self.folder, self.rabbit = folder, rabbit
        self.data_dir = folder / "cloud"
        self.store = make_store(self.data_dir, database_url)
        (self.data_dir / "cloud.toml").write_text(
            f'source = "amqp"\ndatabase_url = "{database_url}"\n\n{rabbit.amqp_toml()}\n[metrics]\nport = 0\n')
        self.ingesters: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start_ingester(self, name: str) -> None:
        log_path = self.folder / f"ingest-{name}.log"
        process = subprocess.Popen([sys.executable, "-m", "earmark.cloud.cli", "ingest",
                                    "--data-dir", str(self.data_dir),
                                    "--client-id", f"ingester-{name}", "-v"],  # -v: a DEBUG line per stored clip
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"))  # noqa: SIM115
        self.ingesters[name] = (process, log_path)
        wait_until_logged(process, log_path, "consuming quorum queue")

    def stored_by(self, name: str) -> int:
        return self.ingesters[name][1].read_text().count("stored clip ")

    def device(self, owner_id: str, device_id: str) -> SimDevice:
        device = SimDevice(device_id, owner_id)
        self.store.registry.add_device(owner_id, device.public_key, device_id)
        return device

    def device_broker(self, device_id: str) -> BrokerSettings:
        username, password = self.rabbit.mqtt_login(device_id)
        password_file = self.folder / f"{device_id}.password"
        write_file(password_file, password.encode())
        return BrokerSettings(url=self.rabbit.mqtt_url, username=username, password_file=str(password_file),
                              mqtt_version="3.1.1", receipt_timeout_s=5.0, keepalive_s=10)

    def close(self) -> None:
        for process, _ in self.ingesters.values():
            if process.poll() is None:
                process.kill()
                process.wait(30)
        self.store.close()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    rabbit = RabbitVhost(["kitchen-pi", "den-pi"])
    try:
        with temporary_database() as url:
            made = Cloud(tmp_path, url, rabbit)
            try:
                yield made
            finally:
                made.close()
    finally:
        rabbit.close()


def test_clips_through_a_quorum_queue_arrive_exactly_once_though_an_ingester_is_killed(
        cloud: Cloud, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        cloud.start_ingester(name)
    alice = cloud.store.registry.add_owner("Alice").owner_id
    bob = cloud.store.registry.add_owner("Bob").owner_id
    devices = [cloud.device(alice, "kitchen-pi"), cloud.device(bob, "den-pi")]
    spools = [Spool(tmp_path / f"spool-{d.device_id}", 10**9) for d in devices]
    publishers = [Publisher(cloud.device_broker(d.device_id), d.device_id, s)
                  for d, s in zip(devices, spools, strict=True)]
    expected: dict[str, set[str]] = {alice: set(), bob: set()}

    def record(index: int) -> None:
        device, spool, publisher = devices[index], spools[index], publishers[index]
        for n in range(CLIPS // 2):
            envelope = device.clip(seed=n * 2 + index, seconds=0.25)
            clip_id = decode_envelope(envelope).header.clip_id
            expected[device.owner_id].add(clip_id)
            spool.put(clip_id, envelope)
            publisher.notify()
            time.sleep(0.02)

    recorders = [threading.Thread(target=record, args=(i,)) for i in range(2)]
    try:
        for publisher in publishers:
            publisher.start()
        for thread in recorders:
            thread.start()
        wait_until(lambda: cloud.store.counts()["clips"] >= 10, 60, "10 clips stored before the first fault")
        process, _ = cloud.ingesters["b"]
        process.send_signal(signal.SIGKILL)  # not restarted: the queue gives its clips to a and c
        process.wait(30)
        at_kill = cloud.store.counts()["clips"]
        wait_until(lambda: cloud.store.counts()["clips"] >= at_kill + 5, 60, "5 more clips stored by a and c")
        # Then the broker drops a's and c's connections with deliveries unacked; they reconnect.
        subprocess.run(["rabbitmqctl", "-q", "close_all_user_connections", cloud.rabbit.ingester, "test"],
                       check=True, capture_output=True, timeout=60)
        for thread in recorders:
            thread.join()
        for publisher, spool in zip(publishers, spools, strict=True):
            assert publisher.wait_drained(timeout=120), f"{len(spool.clips())} clips never got a receipt"
        # Resent clips whose receipts were lost with the connections are duplicates still on
        # their way through; the queue ends empty (seen: about 3 s after the spools drained).
        wait_until(lambda: cloud.rabbit.queue_depth() == (0, 0), 60, "the queue to empty", interval=0.5)
        store = reopen(cloud.store)
        try:
            for owner in (alice, bob):
                stored = [c.clip_id for c in store.clips.of_owner(owner)]
                assert len(stored) == len(set(stored)) and set(stored) == expected[owner]
            assert store.quarantine.all() == []
        finally:
            store.close()
        for name in ("a", "c"):  # each lost its connection mid-stream and went on storing after it
            log = cloud.ingesters[name][1].read_text()
            assert log.count("consuming quorum queue") == 2 and "stored clip" in log.split("lost RabbitMQ")[1]
        work = {name: cloud.stored_by(name) for name in cloud.ingesters}
        assert work["a"] > 0 and work["c"] > 0 and work["b"] > 0, work
        print(f"clips stored per ingester: {work}")
    finally:
        for publisher in publishers:
            publisher.stop()


def test_rabbitmq_lets_a_device_publish_only_on_its_own_topic(cloud: Cloud) -> None:
    cloud.start_ingester("a")
    alice = cloud.store.registry.add_owner("Alice").owner_id
    bob = cloud.store.registry.add_owner("Bob").owner_id
    kitchen, den = cloud.device(alice, "kitchen-pi"), cloud.device(bob, "den-pi")
    username, password = cloud.rabbit.mqtt_login("kitchen-pi")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kitchen-pi", protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    closed = threading.Event()
    client.on_disconnect = lambda *_: closed.set()
    client.connect("127.0.0.1", int(cloud.rabbit.mqtt_url.rsplit(":", 1)[1]))
    client.loop_start()
    try:
        forged = SimDevice(den.device_id, bob, kitchen.key).clip(seed=1)  # signed by the kitchen's key
        client.publish(den.topic, forged, qos=1)
        assert closed.wait(10), "RabbitMQ let the kitchen device publish on the den's topic"
    finally:
        client.loop_stop()
    # The sentinel: the kitchen's own clip on its own topic, through the same queue. Once it is
    # stored, the forged one would have been too, had RabbitMQ let it in.
    own = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kitchen-pi", protocol=mqtt.MQTTv311)
    own.username_pw_set(username, password)
    own.connect("127.0.0.1", int(cloud.rabbit.mqtt_url.rsplit(":", 1)[1]))
    own.loop_start()
    try:
        own.publish(kitchen.topic, kitchen.clip(seed=2), qos=1).wait_for_publish(10)
        wait_until(lambda: cloud.store.clips.count(alice) == 1, 60, "the kitchen's own clip")
    finally:
        own.loop_stop()
        own.disconnect()
    assert cloud.rabbit.queue_depth() == (0, 0) and cloud.stored_by("a") == 1
    assert cloud.store.clips.count(bob) == 0
    # A wrong password is refused at connect.
    intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="den-pi", protocol=mqtt.MQTTv311)
    intruder.username_pw_set(cloud.rabbit.mqtt_login("den-pi")[0], "wrong")
    refused, accepted = threading.Event(), threading.Event()
    intruder.on_connect = lambda _c, _u, _f, reason, _p: (refused if reason.is_failure else accepted).set()
    intruder.on_disconnect = lambda *_: refused.set()
    intruder.connect_async("127.0.0.1", int(cloud.rabbit.mqtt_url.rsplit(":", 1)[1]))
    intruder.loop_start()
    try:
        assert refused.wait(10) and not accepted.is_set()
    finally:
        intruder.loop_stop()
    process, log = cloud.ingesters["a"]
    process.send_signal(signal.SIGTERM)  # a clean stop: exit 0, with nothing left unacked
    assert process.wait(15) == 0 and "ingester stopped" in log.read_text()
    assert cloud.rabbit.queue_depth() == (0, 0)


def test_through_rabbitmq_a_devices_status_and_its_will_show_whether_it_is_online(cloud: Cloud) -> None:
    cloud.start_ingester("a")
    alice = cloud.store.registry.add_owner("Alice").owner_id
    kitchen = cloud.device(alice, "kitchen-pi")
    username, password = cloud.rabbit.mqtt_login("kitchen-pi")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kitchen-pi", protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    client.will_set(f"earmark/v1/status/{kitchen.device_id}", b"offline", qos=1, retain=True)
    client.connect("127.0.0.1", int(cloud.rabbit.mqtt_url.rsplit(":", 1)[1]))
    client.loop_start()

    def state() -> tuple[bool, object] | None:
        found = cloud.store.presence.of_owner(alice).get(kitchen.device_id)
        return (found.online, found.status.get("mic")) if found else None

    try:
        client.publish(f"earmark/v1/status/{kitchen.device_id}", b'{"state": "online", "mic": "open"}',
                       qos=1, retain=True).wait_for_publish(10)
        wait_until(lambda: state() == (True, "open"), 30, "the device online through the status queue")
        client.socket().close()  # the connection drops without a DISCONNECT: RabbitMQ publishes the will
        wait_until(lambda: state() == (False, None), 60, "the device offline from its will")
    finally:
        client.loop_stop()
    assert "refused the status queue" not in cloud.ingesters["a"][1].read_text()


def test_no_device_can_knock_another_offline_by_taking_its_client_id(cloud: Cloud, tmp_path: Path) -> None:
    """Issue 24 case 6: with the permissions exactly as deploy/SCALING.md set them, a device
    connecting with another device's client id knocked it offline, 4 of 4 times (RabbitMQ
    registers the id before it checks the login's permissions)."""
    cloud.start_ingester("a")
    alice, bob = (cloud.store.registry.add_owner(name).owner_id for name in ("Alice", "Bob"))
    kitchen, _ = cloud.device(alice, "kitchen-pi"), cloud.device(bob, "den-pi")
    spool = Spool(tmp_path / "spool", 10**9)
    publisher = Publisher(cloud.device_broker("kitchen-pi"), "kitchen-pi", spool)
    drops: list[object] = []
    inner = publisher.client.on_disconnect
    publisher.client.on_disconnect = lambda *args: (drops.append(args[3]), inner(*args))
    publisher.start()
    try:
        wait_until(publisher.connected.is_set, 30, "the kitchen device online")
        username, password = cloud.rabbit.mqtt_login("den-pi")  # the den's own, valid login
        for guess in ("kitchen-pi", "kitchen-pi", "kitchen-pi-0000000000000000", "kitchen-pi-ffffffffffffffff"):
            intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=guess, protocol=mqtt.MQTTv311,
                                   clean_session=False)
            intruder.username_pw_set(username, password)
            answered = threading.Event()
            intruder.on_connect = intruder.on_disconnect = lambda *_, done=answered: done.set()
            intruder.connect("127.0.0.1", int(cloud.rabbit.mqtt_url.rsplit(":", 1)[1]))
            intruder.loop_start()
            answered.wait(10)
            intruder.loop_stop()
            intruder.disconnect()
        # The sentinel: a clip sent after the attempts gets its receipt on the same connection.
        envelope = kitchen.clip(seed=1, seconds=0.25)
        spool.put(decode_envelope(envelope).header.clip_id, envelope)
        publisher.notify()
        assert publisher.wait_drained(timeout=60)
        assert drops == [], f"the kitchen device was knocked offline: {drops}"
    finally:
        publisher.stop()
