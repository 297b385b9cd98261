"""A throwaway virtual host on the local RabbitMQ, set up as deploy/setup.sh configures it
(cloud/broker/rabbit.py: its MQTT plugin on 127.0.0.1:1884, AMQP by client certificate only
on 127.0.0.1:5671, messages bounded), with the accounts that module generates: an ingester
that may consume the clip queue and publish receipts, logging in by a certificate issued for
this vhost from the node's CA, and devices that may publish only on their own clip and
status topics and read only their own receipts. Loaded in one `rabbitmqctl
import_definitions`; the vhost and users are deleted afterwards."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from earmark.cloud.broker.certs import ca_paths, issue
from earmark.cloud.broker.rabbit import AMQPS_PORT, definitions

MQTT_PORT = int(os.environ.get("EARMARK_TEST_RABBIT_MQTT_PORT", "1884"))
AMQP_PORT = int(os.environ.get("EARMARK_TEST_RABBIT_AMQP_PORT", "5672"))  # the node's plain listener
TLS_DIR = Path(os.environ.get("EARMARK_TEST_RABBIT_TLS", "/etc/rabbitmq/earmark-tls"))  # deploy/setup.sh's


class RabbitVhost:
    def __init__(self, devices: list[str]) -> None:
        self.vhost = f"earmark-t-{uuid.uuid4().hex[:10]}"
        self.ingester = f"{self.vhost}-ingester"
        self.certs = Path(tempfile.mkdtemp(prefix="earmark-rabbit-"))
        self.ingester_cert, self.ingester_key = issue(TLS_DIR / "ca", self.ingester, self.certs, server=False)
        self.ca = ca_paths(TLS_DIR / "ca")[0]
        self.devices = {d: (f"{self.vhost}-{d}", secrets.token_urlsafe(16)) for d in devices}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:  # 3.10 does not read "-"
            json.dump(definitions(self.vhost, self.ingester, self.devices), file)
            file.flush()
            os.chmod(file.name, 0o644)  # only hashes; the node (user rabbitmq) may read the file itself
            done = subprocess.run(["rabbitmqctl", "-q", "import_definitions", file.name],
                                  capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"rabbitmqctl import_definitions failed: {done.stderr.strip()}")

    @property
    def amqp_url(self) -> str:
        return f"amqps://127.0.0.1:{AMQPS_PORT}/{self.vhost}"

    def amqp_toml(self) -> str:
        """The ingester's [amqp] table: the vhost over TLS, logging in by its certificate."""
        return (f'[amqp]\nurl = "{self.amqp_url}"\nusername = "{self.ingester}"\nca = "{self.ca}"\n'
                f'cert = "{self.ingester_cert}"\nkey = "{self.ingester_key}"\n')

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{MQTT_PORT}"

    def mqtt_login(self, device: str) -> tuple[str, str]:
        """The plugin's username form vhost:user picks the device's virtual host."""
        user, password = self.devices[device]
        return f"{self.vhost}:{user}", password

    def queue_depth(self, queue: str = "earmark.clips") -> tuple[int, int]:
        """(ready, unacked) messages in the queue."""
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", self.vhost, "name", "messages_ready",
                              "messages_unacknowledged", "--no-table-headers"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        for line in out.splitlines():
            name, ready, unacked = line.split()
            if name == queue:
                return int(ready), int(unacked)
        return 0, 0

    def close(self) -> None:
        users = ", ".join(f'<<"{name}">>' for name in [self.ingester, *(u for u, _ in self.devices.values())])
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True, timeout=60)
        subprocess.run(["rabbitmqctl", "-q", "eval",
                        f'[rabbit_auth_backend_internal:delete_user(U, <<"earmark-tests">>) || U <- [{users}]].'],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.certs, ignore_errors=True)
