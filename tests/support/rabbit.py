"""A throwaway virtual host on the local RabbitMQ (its MQTT plugin on 127.0.0.1:1884, as
deploy/setup.sh configures it), with the accounts deploy/SCALING.md describes: an ingester
that may consume the clip queue and publish receipts, and devices that may publish only on
their own clip and status topics and read only their own receipts. Loaded in one
`rabbitmqctl import_definitions`; the vhost and users are deleted afterwards."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import uuid

from earmark.cloud.ingest.amqp_source import INGESTER_PERMISSIONS, INGESTER_TOPIC_PERMISSIONS

MQTT_PORT = int(os.environ.get("EARMARK_TEST_RABBIT_MQTT_PORT", "1884"))
AMQP_PORT = int(os.environ.get("EARMARK_TEST_RABBIT_AMQP_PORT", "5672"))


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def account_definitions(vhost: str, ingester: tuple[str, str],
                        devices: dict[str, tuple[str, str]]) -> dict[str, object]:
    """`rabbitmqctl import_definitions` input for a virtual host with the accounts
    deploy/SCALING.md describes: the ingester's (login, password), and each device's."""
    users = [ingester, *devices.values()]
    configure, write, read = INGESTER_PERMISSIONS  # exactly what deploy/SCALING.md grants
    permissions = [{"user": ingester[0], "vhost": vhost, "configure": configure, "write": write, "read": read}]
    topics = [{"user": ingester[0], "vhost": vhost, "exchange": "amq.topic",
               "write": INGESTER_TOPIC_PERMISSIONS[0], "read": INGESTER_TOPIC_PERMISSIONS[1]}]
    for device, (user, _) in devices.items():
        own = rf"^(amq\.topic|mqtt-subscription-{re.escape(device)}-[0-9a-f]{{16}}qos[01])$"
        permissions.append({"user": user, "vhost": vhost, "configure": own, "write": own, "read": own})
        topics.append({"user": user, "vhost": vhost, "exchange": "amq.topic",
                       "write": rf"^earmark\.v1\.(clips|status)\.{re.escape(device)}$",
                       "read": rf"^earmark\.v1\.(receipts|status)\.{re.escape(device)}$"})
    return {
        "vhosts": [{"name": vhost}],
        "users": [{"name": name, "password_hash": password_hash(password), "tags": "",
                   "hashing_algorithm": "rabbit_password_hashing_sha256"} for name, password in users],
        "permissions": permissions,
        "topic_permissions": topics,
    }


class RabbitVhost:
    def __init__(self, devices: list[str]) -> None:
        self.vhost = f"earmark-t-{uuid.uuid4().hex[:10]}"
        self.ingester = (f"{self.vhost}-ingester", secrets.token_urlsafe(16))
        self.devices = {d: (f"{self.vhost}-{d}", secrets.token_urlsafe(16)) for d in devices}
        definitions = account_definitions(self.vhost, self.ingester, self.devices)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:  # 3.10 does not read "-"
            json.dump(definitions, file)
            file.flush()
            os.chmod(file.name, 0o644)  # only hashes; the node (user rabbitmq) may read the file itself
            done = subprocess.run(["rabbitmqctl", "-q", "import_definitions", file.name],
                                  capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"rabbitmqctl import_definitions failed: {done.stderr.strip()}")

    @property
    def amqp_url(self) -> str:
        return f"amqp://127.0.0.1:{AMQP_PORT}/{self.vhost}"

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
        users = ", ".join(f'<<"{name}">>' for name in [self.ingester[0], *(u for u, _ in self.devices.values())])
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True, timeout=60)
        subprocess.run(["rabbitmqctl", "-q", "eval",
                        f'[rabbit_auth_backend_internal:delete_user(U, <<"earmark-tests">>) || U <- [{users}]].'],
                       capture_output=True, timeout=60)
