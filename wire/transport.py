"""How both sides build their MQTT client: MQTT 5 (or 3.1.1, for brokers such as RabbitMQ
3.x's MQTT plugin), TLS with the CA pinned for mqtts://, an optional login and client
certificate, a persistent session, reconnect backoff, and no Nagle delay. The one piece of
I/O set-up the device and the cloud share, so they cannot drift apart."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MQTT_VERSIONS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


def make_client(client_id: str, url: str, username: str = "", password: str = "", ca: str = "",
                client_cert: str = "", client_key: str = "", manual_ack: bool = False,
                max_reconnect_delay: int = 60, mqtt_version: str = "5") -> mqtt.Client:
    if mqtt_version == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             manual_ack=manual_ack)
    else:  # 3.1.1 has no session expiry: a persistent session is clean_session=False
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTT_VERSIONS[mqtt_version],
                             clean_session=False, manual_ack=manual_ack)
    if username:
        client.username_pw_set(username, password)
    if urlsplit(url).scheme == "mqtts":
        client.tls_set(ca_certs=ca or None, certfile=client_cert or None, keyfile=client_key or None,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.reconnect_delay_set(min_delay=1, max_delay=max_reconnect_delay)
    return client


def connect_async(client: mqtt.Client, url: str, keepalive: int, session_expiry_s: int) -> None:
    """Connect (and keep reconnecting) in the background with a persistent session."""
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    if client.protocol != mqtt.MQTTv5:
        client.connect_async(host, port, keepalive=keepalive)
    else:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
        client.connect_async(host, port, keepalive=keepalive, clean_start=False, properties=properties)
    client.loop_start()


def send_immediately(client: mqtt.Client) -> None:
    """Call on connect. Acks and receipts are small packets; with Nagle's algorithm each
    waits for the peer's delayed ACK (~40 ms a hop). paho leaves it on."""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
