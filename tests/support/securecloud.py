"""The whole cloud as ops would run it, for tests: a store, the Mosquitto config that
`earmark-cloud broker config` writes (TLS, logins, ACL) run by a real mosquitto, and the
ingester as a process logging in over TLS."""

from __future__ import annotations

import getpass
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from earmark.cloud.broker import logins as broker
from earmark.cloud.broker.config import write_broker_config
from earmark.cloud.broker.control import sync_broker
from earmark.device.settings import BrokerSettings
from earmark.runtime.durable import write_file
from tests.support.broker import free_port, port_open
from tests.support.cloudkit import SimDevice, make_store, reopen
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def wait_until_logged(process: subprocess.Popen[bytes], log_path: Path, marker: str, timeout: float = 60) -> None:
    """Return once `marker` is in the process's log (an ingester logs readiness); raise with
    the log's tail if the process exits or the time runs out first."""
    def logged() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{log_path.name}: exited before logging {marker!r}: {log_path.read_text()[-1500:]}")
        return marker in log_path.read_text()

    wait_until(logged, timeout, f"{log_path.name} to log {marker!r}", interval=0.05)


class SecureCloud:
    def __init__(self, folder: Path, require_client_certs: bool = False, database_url: str = "") -> None:
        self.folder = folder
        self.data_dir = folder / "cloud"
        self.database_url = database_url
        self.store = make_store(self.data_dir, database_url)
        self.port = free_port()
        self.setup = write_broker_config(self.store, folder / "broker", port=self.port,
                                                run_as=getpass.getuser(), require_client_certs=require_client_certs)
        self.broker_proc: subprocess.Popen[bytes] | None = None
        self.ingesters: dict[str, subprocess.Popen[bytes]] = {}
        self.ingester_runs = 0

    # -- processes -------------------------------------------------------------------------

    def start_broker(self) -> None:
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115
        self.broker_proc = subprocess.Popen(["mosquitto", "-c", str(self.setup.config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        wait_until(lambda: port_open(self.port), 10, "mosquitto to listen")

    def stop_broker(self) -> None:
        if self.broker_proc is not None:
            self.broker_proc.terminate()
            self.broker_proc.wait(10)
            self.broker_proc = None

    def start_ingester(self, wait: bool = True, name: str = "main", *extra: str) -> Path:
        """Start an ingester process (each name is its own MQTT client id, so several share
        the subscription); with `wait`, return once its subscription is granted (a clip
        published before any ingester ever subscribed has nowhere to go). Returns its log."""
        self.ingester_runs += 1
        log_path = self.folder / f"ingest-{name}-{self.ingester_runs}.log"
        username, password_file = self.ingester_login(name)
        log = open(log_path, "ab")  # noqa: SIM115
        process = self.ingesters[name] = subprocess.Popen(
            [sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir", str(self.data_dir),
             "--client-id", username,
             *(["--database-url", self.database_url] if self.database_url else []),
             "--broker", self.setup.url, "--ca", str(self.setup.ca), "--username", username,
             "--password-file", str(password_file), "--metrics-port", "0",
             *(["--client-cert", str(self.setup.ingester_cert), "--client-key", str(self.setup.ingester_key)]
               if self.setup.ingester_cert else []), *extra],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        if wait:
            wait_until_logged(process, log_path, "subscribed to")
        return log_path

    def ingester_login(self, name: str) -> tuple[str, Path]:
        """The broker login of the ingester called `name`: "main" has the one `broker config`
        made; each other gets its own (the broker makes a login its client id)."""
        if name == "main":
            return broker.INGESTER_USERNAME, self.setup.ingester_password_file
        password_file = self.setup.config.parent / f"{broker.INGESTER_USERNAME}-{name}.password"
        if not password_file.exists():
            made = broker.add_ingester_login(self.store, name)
            self.sync()
            return made
        return f"{broker.INGESTER_USERNAME}-{name}", password_file

    def kill_ingester(self, sig: int = signal.SIGKILL, name: str = "main") -> None:
        process = self.ingesters.pop(name, None)
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(30)

    def close(self) -> None:
        for name in list(self.ingesters):
            self.kill_ingester(name=name)
        self.stop_broker()
        self.store.close()

    # -- registry --------------------------------------------------------------------------

    def add_device(self, owner_id: str, device_id: str) -> tuple[SimDevice, str]:
        device = SimDevice(device_id, owner_id)
        self.store.registry.add_device(owner_id, device.public_key, device_id)
        password = broker.create_login(self.store, device_id, "device")
        self.sync()
        return device, password

    def sync(self) -> None:
        """What every CLI command that changes a login does next (broker/control.py)."""
        sync_broker(self.store)

    def device_broker(self, device_id: str, password: str, url: str | None = None,
                      **options: Any) -> BrokerSettings:
        """A paired device's broker settings, as `provision` would leave them (password file
        written 0600 beside the cloud's folder); `url` lets a test route through a proxy."""
        password_file = self.folder / f"{device_id}.password"
        write_file(password_file, password.encode())
        return BrokerSettings(url=url or self.setup.url, username=device_id, password_file=str(password_file),
                              ca=str(self.setup.ca), **options)

    def revoke(self, device_id: str) -> None:
        self.store.registry.revoke_device(device_id)
        broker.revoke_login(self.store, device_id)
        self.sync()

    def clips(self, owner_id: str) -> list[str]:
        fresh = reopen(self.store)
        try:
            return [c.clip_id for c in fresh.clips.of_owner(owner_id)]
        finally:
            fresh.close()

    def quarantine_reasons(self) -> list[str]:
        fresh = reopen(self.store)
        try:
            return [q.reason for q in fresh.quarantine.all()]
        finally:
            fresh.close()


class Client:
    """An MQTT 5 client over TLS with the broker's CA pinned; records what it receives."""

    def __init__(self, cloud: SecureCloud, username: str | None, password: str | None,
                 client_id: str | None = None, cert: tuple[Path, Path] | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.refused: object = None
        self.connected = threading.Event()
        self.done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username or "anon",
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(cloud.setup.ca), certfile=str(cert[0]) if cert else None,
                            keyfile=str(cert[1]) if cert else None, cert_reqs=ssl.CERT_REQUIRED,
                            tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_disconnect = lambda *_: self.done.set()
        self.granted: dict[int, list[object]] = {}  # subscription mid -> the broker's answer
        self.client.on_subscribe = lambda _c, _u, mid, reasons, _p: self.granted.__setitem__(mid, reasons)
        self.client.connect_async("127.0.0.1", cloud.port)
        self.client.loop_start()

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10) -> list[object]:
        """Subscribe and wait for the broker's SUBACK (the signal that it now delivers to us)."""
        _, mid = self.client.subscribe(topic, qos=qos)
        return wait_until(lambda: self.granted.get(mid), timeout, f"the broker's answer to subscribing {topic}")

    def _on_connect(self, _c: object, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self.refused = reason
            self.done.set()
        else:
            self.connected.set()

    def wait(self, timeout: float = 10) -> bool:
        """True once connected; False if refused or timed out."""
        try:
            wait_until(lambda: self.connected.is_set() or self.done.is_set(), timeout, "the connection")
        except AssertionError:
            return False
        return self.connected.is_set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
