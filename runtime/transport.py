"""How both sides build their MQTT client: MQTT 5 (or 3.1.1, for brokers such as RabbitMQ
3.x's MQTT plugin), TLS with the CA pinned for mqtts://, an optional login and client
certificate, a persistent session, reconnect backoff, and no Nagle delay. The one piece of
I/O set-up the device and the cloud share, so they cannot drift apart."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MQTT_VERSIONS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


class Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (paho swallows the
    OSError and calls on_connect_fail with no reason)."""

    last_connect_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            code = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return code


def host_port(url: str) -> tuple[str, int]:
    """The broker's host and port in an mqtt:// or mqtts:// URL (1883 and 8883 by default)."""
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def describe_connect_error(exc: OSError | None, url: str) -> str:
    """One line on why a broker could not be reached, naming what to check."""
    parts = urlsplit(url)
    where = "{}:{}".format(*host_port(url))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS to {where} failed: certificate verify failed, {exc.verify_message} "
                "(pin the broker's CA: --ca or broker.ca)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS to {where} failed: {exc.reason or exc} (is it an mqtts:// listener? is the CA right?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker host {parts.hostname!r}: {exc.strerror}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}: is the broker running and listening there?"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} (a firewall, or the wrong address)"
    return f"cannot reach the broker at {where}: {exc}" if exc else f"cannot reach the broker at {where}"


class FailureLog:
    """Logs a recurring failure without flooding: at once when it starts or its reason
    changes, then at most once per `every_s` with the count in between; once when it ends."""

    def __init__(self, logger: logging.Logger, every_s: float = 60.0) -> None:
        self.logger, self.every_s = logger, every_s
        self._reason = ""
        self._last = 0.0
        self._since_logged = 0

    def failed(self, reason: str, level: int = logging.ERROR) -> None:
        now = time.monotonic()
        if reason != self._reason or now - self._last >= self.every_s:
            more = f" ({self._since_logged} more time(s) since the last report)" if self._since_logged else ""
            self.logger.log(level, "%s; retrying%s", reason, more)
            self._reason, self._last, self._since_logged = reason, now, 0
        else:
            self._since_logged += 1

    def recovered(self, what: str) -> None:
        if self._reason:
            self.logger.info("%s (after: %s)", what, self._reason)
        self._reason, self._since_logged = "", 0


def tls_context(ca: str = "", client_cert: str = "", client_key: str = "") -> ssl.SSLContext:
    """TLS to a broker: its certificate checked against `ca` (the system's CAs if empty) and its
    host name; `client_cert` and `client_key` where the broker asks for a client certificate."""
    context = ssl.create_default_context(cafile=ca or None)
    if client_cert:
        context.load_cert_chain(client_cert, client_key or None)
    return context


def make_client(client_id: str, url: str, username: str = "", password: str = "", ca: str = "",
                client_cert: str = "", client_key: str = "", manual_ack: bool = False,
                max_reconnect_delay: int = 60, mqtt_version: str = "5") -> Client:
    client: Client
    if mqtt_version == "5":
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        manual_ack=manual_ack)
    else:  # 3.1.1 has no session expiry: a persistent session is clean_session=False
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTT_VERSIONS[mqtt_version],
                        clean_session=False, manual_ack=manual_ack)
    if username:
        client.username_pw_set(username, password)
    if urlsplit(url).scheme == "mqtts":
        client.tls_set_context(tls_context(ca, client_cert, client_key))
    client.reconnect_delay_set(min_delay=1, max_delay=max_reconnect_delay)
    return client


def connect_async(client: mqtt.Client, url: str, keepalive: int, session_expiry_s: int,
                  max_packet_size: int = 0) -> None:
    """Connect (and keep reconnecting) in the background with a persistent session. MQTT 5:
    `max_packet_size` (if given) is the largest packet the broker may send this client."""
    host, port = host_port(url)
    if client.protocol != mqtt.MQTTv5:
        client.connect_async(host, port, keepalive=keepalive)
    else:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
        if max_packet_size:
            properties.MaximumPacketSize = max_packet_size
        client.connect_async(host, port, keepalive=keepalive, clean_start=False, properties=properties)
    client.loop_start()


def send_immediately(client: mqtt.Client) -> None:
    """Call on connect. Acks and receipts are small packets; with Nagle's algorithm each
    waits for the peer's delayed ACK (~40 ms a hop). paho leaves it on."""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
