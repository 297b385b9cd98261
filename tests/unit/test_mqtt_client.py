"""The ingester's MQTT client against a scripted broker on loopback, for what Mosquitto does
not make it do (the ingest tests run it against a real Mosquitto): keep within the broker's
Receive Maximum, send unanswered receipts again with DUP on a resumed session, give up a
connection whose broker stops answering pings, and drop acks queued for a connection that
ended (the broker delivers those messages again on the next)."""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from earmark.cloud.ingest import mqtt_packets as packets
from earmark.cloud.ingest.mqtt_client import Endpoint, Inbox, IngestClient, Message
from tests.support.waiting import wait_until


class ScriptedBroker:
    """Accepts connections one at a time and gives each to the test as a Peer."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.peers: queue.Queue[Peer] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.peers.put(Peer(conn))

    def next_peer(self, session_present: bool = False, receive_maximum: int = 0, behind: bytes = b"") -> Peer:
        """The next connection, answered with a CONNACK (and `behind` in the same write)."""
        peer = self.peers.get(timeout=10)
        first, _ = peer.packet()
        assert first >> 4 == packets.CONNECT
        properties = b"\x21" + struct.pack("!H", receive_maximum) if receive_maximum else b""
        peer.conn.sendall(bytes([0x20, 3 + len(properties), int(session_present), 0, len(properties)])
                          + properties + behind)
        return peer

    def close(self) -> None:
        self.server.close()


class Peer:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.conn.settimeout(10)
        self.buf = b""

    def packet(self, timeout: float = 10) -> tuple[int, bytes]:
        self.conn.settimeout(timeout)
        while (whole := packets.frame(self.buf, 0, len(self.buf))) is None:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        first, start, end = whole
        body, self.buf = self.buf[start:end], self.buf[end:]
        return first, body

    def idle(self, seconds: float) -> bool:
        """Nothing more arrives within `seconds`."""
        try:
            self.packet(timeout=seconds)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def broker() -> Iterator[ScriptedBroker]:
    b = ScriptedBroker()
    yield b
    b.close()


def client_of(broker: ScriptedBroker, keepalive_s: int = 60) -> tuple[IngestClient, queue.Queue[str]]:
    client = IngestClient(Endpoint("127.0.0.1", broker.port, "ingest-test", keepalive_s=keepalive_s,
                                   session_expiry_s=60, max_delay_s=1))
    events: queue.Queue[str] = queue.Queue()
    client.on_connect = lambda present: events.put(f"connected {present}")
    client.on_disconnect = lambda why: events.put(f"lost {why}")
    client.start()
    return client, events


def test_clips_queued_for_a_resumed_session_may_come_in_the_connacks_segment(broker: ScriptedBroker) -> None:
    """bench/ingest_scaling.py, 2026-12-07: Mosquitto sent a resumed session's queued clips
    right behind its CONNACK; the client took that for a protocol error and reconnected."""
    client, events = client_of(broker)
    messages: queue.Queue[Message] = queue.Queue()
    client.on_message = messages.put
    queued = packets.publish(1, "earmark/v1/c", b"first") + packets.publish(2, "earmark/v1/c", b"second")
    peer = broker.next_peer(session_present=True, behind=queued)
    assert events.get(timeout=5) == "connected True"
    assert [(m.topic, m.payload, m.mid) for m in (messages.get(timeout=5), messages.get(timeout=5))] == [
        ("earmark/v1/c", b"first", 1), ("earmark/v1/c", b"second", 2)]
    assert events.empty() and peer.idle(0.3)  # still connected
    client.close()


def test_receipts_stay_within_the_brokers_receive_maximum(broker: ScriptedBroker) -> None:
    client, events = client_of(broker)
    peer = broker.next_peer(receive_maximum=2)
    assert events.get(timeout=5) == "connected False"
    client.send([], [(f"earmark/v1/receipts/pi-{n}", b"{}") for n in range(5)])
    seen = []
    for _ in range(5):
        first, body = peer.packet()
        assert first >> 4 == packets.PUBLISH
        seen.append(struct.unpack_from("!H", body, 2 + struct.unpack_from("!H", body)[0])[0])
        if len(seen) % 2 == 0 or len(seen) == 5:  # two out: nothing more until one is acked
            assert peer.idle(0.3)
            for mid in seen[-2:] if len(seen) % 2 == 0 else seen[-1:]:
                peer.conn.sendall(packets.puback(mid))
    assert len(set(seen)) == 5
    client.close()


def test_an_unanswered_receipt_is_sent_again_with_dup_on_a_resumed_session(broker: ScriptedBroker) -> None:
    client, events = client_of(broker)
    peer = broker.next_peer()
    assert events.get(timeout=5) == "connected False"
    client.send([41], [("earmark/v1/receipts/pi", b'{"clip":1}')])
    assert peer.packet() == (0x40, b"\x00\x29")  # the ack first
    first, body = peer.packet()
    assert first == 0x32  # QoS 1, not a duplicate
    peer.conn.close()  # gone before its PUBACK
    assert events.get(timeout=5).startswith("lost")
    again = broker.next_peer(session_present=True)
    assert events.get(timeout=5) == "connected True"
    assert again.packet() == (0x3A, body)  # DUP set, the same packet id and receipt
    client.close()


def test_a_broker_that_stops_answering_pings_is_left_and_reconnected(broker: ScriptedBroker) -> None:
    client, events = client_of(broker, keepalive_s=1)
    peer = broker.next_peer()
    assert events.get(timeout=5) == "connected False"
    assert peer.packet(timeout=3)[0] >> 4 == 12  # PINGREQ, left unanswered
    assert "did not answer a ping" in events.get(timeout=5)
    broker.next_peer()
    assert events.get(timeout=5) == "connected False"
    client.close()


def test_acks_queued_for_a_lost_connection_are_not_sent_on_the_next(broker: ScriptedBroker) -> None:
    client, events = client_of(broker)
    peer = broker.next_peer()
    assert events.get(timeout=5) == "connected False"
    peer.conn.close()
    wait_until(lambda: not events.empty(), 5, "the client to notice")
    client.send([7], [])  # too late for that connection: its message comes again on the next
    nxt = broker.next_peer(session_present=True)
    assert events.get(timeout=5).startswith("lost") and events.get(timeout=5) == "connected True"
    assert nxt.idle(0.5)
    client.close()


def test_receipts_sent_while_the_broker_refuses_do_not_hurry_the_reconnects(broker: ScriptedBroker) -> None:
    client, _ = client_of(broker)
    failures: queue.Queue[OSError] = queue.Queue()
    client.on_connect_fail = failures.put
    attempts = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            broker.peers.get(timeout=0.05).conn.close()  # closed before any CONNACK
            attempts += 1
        client.send([], [("earmark/v1/receipts/pi", b"{}")])  # each wakes the network thread
    assert 2 <= attempts <= 4 and failures.qsize() >= 2  # one a second (max_delay_s), not a busy loop
    client.close()


def test_the_password_is_in_no_repr_a_log_line_could_show() -> None:
    endpoint = Endpoint("broker.example", 8883, "ingest-1", "ingester", "hunter2-secret")
    assert "hunter2" not in repr(endpoint) and "hunter2" not in str(IngestClient(endpoint).__dict__.get("endpoint"))


def test_the_inbox_grows_for_a_packet_larger_than_its_buffer_and_keeps_partial_ones() -> None:
    a, b = socket.socketpair()
    a.settimeout(5)
    with a, b:
        inbox = Inbox(max_packet_bytes=10_000, size=64)
        big, small = packets.publish(1, "t", bytes(range(256)) * 4), packets.publish(2, "t", b"x")
        got: list[tuple[int, bytes]] = []
        b.sendall(big + small[:3])  # the second packet cut short
        while not got:
            inbox.read(a)
            got += [(first, bytes(body)) for first, body in inbox.packets()]
        b.sendall(small[3:])
        while len(got) < 2:
            inbox.read(a)
            got += [(first, bytes(body)) for first, body in inbox.packets()]
        assert [packets.parse_publish(first, memoryview(body))[1] for first, body in got] == [1, 2]
        assert got[0][1].endswith(bytes(range(256)) * 4) and len(inbox.buf) >= len(big)
