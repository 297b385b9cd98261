"""The RabbitMQ set-up Earmark's clustered path needs, generated in one place: the server
settings (rabbitmq.conf lines) and the accounts (`rabbitmqctl import_definitions` input).
deploy/setup.sh, the multi-host harness (deploy/cluster) and the tests load exactly these,
and deploy/SCALING.md shows them.

What it guarantees, and why each line is there:
- **Device logins never reach AMQP.** A device's password works only over MQTT: AMQP 0-9-1
  offers the EXTERNAL mechanism alone (`auth_mechanisms.1 = EXTERNAL`), so an AMQP client
  logs in only with a client certificate from the store's CA, which ingesters hold and
  devices do not. (RabbitMQ before 4.0.3 checks topic permissions on a message's routing key
  but not on the extra keys of its CC/BCC headers: over AMQP a device could have routed a
  message into any other device's receipt subscription.) The MQTT plugin authenticates by
  password as before; its listener's TLS does not ask devices for certificates.
- **Every message is bounded.** `max_message_size` refuses any message over what an
  envelope can be (MAX_MESSAGE_BYTES, the same bound as Mosquitto's max_packet_size); over
  MQTT (RabbitMQ 3.10) the plugin's channel refuses the message and nothing is queued.
- **Each device writes only its own clip and status topics and reads only its own receipts
  and status** (topic permissions, which the MQTT plugin checks on every publish and
  subscribe), and may declare only its own subscription queues.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from earmark.wire.envelope import MAX_ENVELOPE_BYTES

MAX_MESSAGE_BYTES = MAX_ENVELOPE_BYTES + 1024  # an envelope and its framing; Mosquitto's max_packet_size too
AMQPS_PORT = 5671

# The ingester login's rights on its vhost: configure, write, read on resources (the clip
# queue, its own status queue, amq.topic) and, on amq.topic, write and read by routing key
# (receipts out; clips and statuses in).
INGESTER_PERMISSIONS = (r"^earmark\.(clips|status\..+)$", r"^(amq\.topic|earmark\.(clips|status\..+))$",
                        r"^(amq\.topic|earmark\.(clips|status\..+))$")
INGESTER_TOPIC_PERMISSIONS = (r"^earmark\.v1\.receipts\.[a-z0-9-]+$", r"^earmark\.v1\.(clips|status)\.[a-z0-9*-]+$")


@dataclass(frozen=True)
class ServerTls:
    """The node's TLS files: the store's CA (which signs ingesters' client certificates), and
    the node's own certificate and key."""

    ca: Path
    cert: Path
    key: Path


def server_conf(tls: ServerTls, amqps: str = f"0.0.0.0:{AMQPS_PORT}") -> list[str]:
    """rabbitmq.conf lines for Earmark's guarantees (see the module docstring); the node's
    other settings (MQTT listeners, clustering) are the operator's."""
    return [
        CONF_BEGIN,
        "# AMQP takes client certificates only (ingesters); device passwords work over MQTT alone",
        f"listeners.ssl.default = {amqps}",
        f"ssl_options.cacertfile = {tls.ca}",
        f"ssl_options.certfile = {tls.cert}",
        f"ssl_options.keyfile = {tls.key}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = false",  # devices' MQTT over TLS brings no certificate
        "auth_mechanisms.1 = EXTERNAL",
        "ssl_cert_login_from = common_name",
        "# no message larger than a clip envelope",
        f"max_message_size = {MAX_MESSAGE_BYTES}",
        CONF_END,
    ]


PLUGINS = ("rabbitmq_mqtt", "rabbitmq_auth_mechanism_ssl")
CONF_BEGIN = "# Earmark's server settings (cloud/broker/rabbit.py), begin"
CONF_END = "# Earmark's server settings, end"


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def device_queues(device_id: str) -> str:
    """The resources a device's MQTT session may use: amq.topic and its own subscription
    queues (the plugin names them after the client id, <device>-<16 hex> on RabbitMQ)."""
    return rf"^(amq\.topic|mqtt-subscription-{re.escape(device_id)}-[0-9a-f]{{16}}qos[01])$"


QUEUE_BYTES = 2 * 1024**3  # the clips queue at most: past it publishes are refused (devices keep the clips)


def definitions(vhost: str, ingester: str, devices: dict[str, tuple[str, str]], queue: str = "earmark.clips",
                queue_bytes: int = QUEUE_BYTES) -> dict[str, object]:
    """`rabbitmqctl import_definitions` input: the vhost, the ingester's login (no password:
    it logs in by its certificate, whose common name is `ingester`) and each device's
    (`devices`: device id -> (login, password)), with their rights; and a policy that bounds
    the clips' quorum queue in bytes, refusing publishes past it (`reject-publish`: the
    device gets no ack and keeps the clip in its spool) rather than swelling the cluster."""
    configure, write, read = INGESTER_PERMISSIONS
    permissions = [{"user": ingester, "vhost": vhost, "configure": configure, "write": write, "read": read}]
    topics = [{"user": ingester, "vhost": vhost, "exchange": "amq.topic",
               "write": INGESTER_TOPIC_PERMISSIONS[0], "read": INGESTER_TOPIC_PERMISSIONS[1]}]
    users = [{"name": ingester, "password_hash": "", "tags": "", "hashing_algorithm": "rabbit_password_hashing_sha256"}]
    for device, (user, password) in devices.items():
        own = device_queues(device)
        permissions.append({"user": user, "vhost": vhost, "configure": own, "write": own, "read": own})
        topics.append({"user": user, "vhost": vhost, "exchange": "amq.topic",
                       "write": rf"^earmark\.v1\.(clips|status)\.{re.escape(device)}$",
                       "read": rf"^earmark\.v1\.(receipts|status)\.{re.escape(device)}$"})
        users.append({"name": user, "password_hash": password_hash(password), "tags": "",
                      "hashing_algorithm": "rabbit_password_hashing_sha256"})
    policies = [{"vhost": vhost, "name": "earmark-clips-bounded", "pattern": f"^{re.escape(queue)}$",
                 "apply-to": "queues", "priority": 0,
                 "definition": {"max-length-bytes": queue_bytes, "overflow": "reject-publish"}}]
    return {"vhosts": [{"name": vhost}], "users": users, "permissions": permissions, "topic_permissions": topics,
            "policies": policies}


def install_local(conf: Path, tls_dir: Path, amqps: str, ingester: str) -> bool:
    """For a node on this machine (deploy/setup.sh): a CA of its own in `tls_dir`, the node's
    certificate, a client certificate for `ingester`, and server_conf in `conf` (replacing the
    block an earlier run wrote). Returns True if the conf changed (the node must restart)."""
    import pwd
    import shutil

    from earmark.cloud.broker.certs import ca_paths, init_ca, issue

    init_ca(tls_dir / "ca")
    if not (tls_dir / "node.pem").exists():
        issue(tls_dir / "ca", "node", tls_dir, ["localhost", "127.0.0.1"])
    if not (tls_dir / f"{ingester}.pem").exists():
        issue(tls_dir / "ca", ingester, tls_dir, server=False)
    try:  # the node runs as its own user: it reads its key, and nothing else here
        rabbit = pwd.getpwnam("rabbitmq")
        for name in ("node.key", "node.pem"):
            shutil.chown(tls_dir / name, rabbit.pw_uid, rabbit.pw_gid)
        tls_dir.chmod(0o711)
        (tls_dir / "ca").chmod(0o711)  # ca.pem is public; ca.key stays the owner's alone
    except KeyError:
        pass
    block = "\n".join(server_conf(ServerTls(ca_paths(tls_dir / "ca")[0], tls_dir / "node.pem", tls_dir / "node.key"),
                                   amqps)) + "\n"
    text = conf.read_text() if conf.exists() else ""
    begin = text.find(CONF_BEGIN)
    kept = text if begin < 0 else text[:begin] + text[text.index(CONF_END, begin) + len(CONF_END):].lstrip("\n")
    wanted = kept + ("" if kept.endswith("\n") or not kept else "\n") + block
    if wanted == text:
        return False
    conf.write_text(wanted)
    return True


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Earmark's settings for a RabbitMQ node on this machine")
    parser.add_argument("--conf", type=Path, required=True)
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--amqps", default=f"127.0.0.1:{AMQPS_PORT}")
    parser.add_argument("--ingester", default="earmark-ingester")
    args = parser.parse_args()
    print("changed" if install_local(args.conf, args.tls_dir, args.amqps, args.ingester) else "unchanged")
