"""The ingester's MQTT 5 client: one connection, kept and remade, that takes a firehose of
clips and answers them a batch at a time.

Why not paho, which the device uses: on the ingest path paho's per-packet Python was the
largest cost after the checks themselves (bench/ingest_throughput.py: its network thread
spent more CPU per clip than a whole discarding paho subscriber; reading a 160 KB PUBLISH a
byte of length at a time, a properties object per packet, a wake-up and a send per ack).
Here one thread owns the socket: it reads whatever has arrived into one buffer and hands
each whole PUBLISH on (`on_message`); what other threads send (`send`: a batch's acks and
receipts) is queued, and the thread writes it in one go.

What it keeps of a full client: TLS with the CA pinned and an optional client certificate;
a persistent session (Clean Start 0, a session expiry), resumed on reconnect; reconnecting
with doubling delays (1 s up to `max_delay_s`); keep-alive pings, and a connection given up
when the broker stops answering them; receipts at QoS 1, held until the broker's PUBACK,
within the broker's Receive Maximum, and sent again (DUP) after a reconnect. What it never
does: QoS 2, wills, retained publishes, topic aliases. Packets: mqtt_packets.py.

Callbacks run on the network thread: on_connect(session_present), on_refused(reason) for a
CONNACK that refuses, on_connect_fail(error) for a broker that cannot be reached,
on_disconnect(why), on_message(Message), on_subscribe(mid, reasons).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from earmark.cloud.ingest import mqtt_packets as packets
from earmark.cloud.ingest.mqtt_packets import PacketError, Reason
from earmark.wire.envelope import MAX_ENVELOPE_BYTES
from earmark.wire.errors import EarmarkError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0
BUFFER_BYTES = 4 << 20  # one read takes up to this much: many clips per system call
MIN_DELAY_S = 1.0


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    mid: int  # 0 at QoS 0
    qos: int


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    client_id: str
    username: str = ""
    password: str = field(default="", repr=False)  # never in a log line
    tls: ssl.SSLContext | None = None
    keepalive_s: int = 60
    session_expiry_s: int = 0
    max_delay_s: float = 30.0
    # The largest packet the broker may send: room for an envelope over the limit to arrive
    # and be quarantined as oversize, and a bound on what one message can make this process hold.
    max_packet_bytes: int = 2 * MAX_ENVELOPE_BYTES


class ConnectionLost(EarmarkError, ConnectionError):
    """The connection ended (closed, reset, a ping unanswered, the broker's DISCONNECT)."""


class IngestClient:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.on_connect: Callable[[bool], None] = lambda _present: None
        self.on_refused: Callable[[Reason], None] = lambda _reason: None
        self.on_connect_fail: Callable[[OSError], None] = lambda _error: None
        self.on_disconnect: Callable[[str], None] = lambda _why: None
        self.on_message: Callable[[Message], None] = lambda _message: None
        self.on_subscribe: Callable[[int, list[Reason]], None] = lambda _mid, _reasons: None
        self._lock = threading.Lock()
        self._outbox: list[bytes] = []  # for this connection only: acks, (un)subscriptions
        self._publishes: collections.deque[tuple[str, bytes]] = collections.deque()  # until sent, across connections
        self._inflight: dict[int, bytes] = {}  # mid -> a sent QoS 1 PUBLISH, until its PUBACK
        self._next_mid = 0
        self._closing: bytes | None = None  # the DISCONNECT to send, once close() is called
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._woken = False
        self._receive_maximum = 65_535
        self._last_sent = 0.0  # when this connection last wrote (keep-alive pings only fill silences)
        self._thread: threading.Thread | None = None

    # -- any thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-ingest", daemon=True)
        self._thread.start()

    def subscribe(self, topic_filter: str, qos: int) -> int:
        mid = self._mid()
        self._queue(packets.subscribe(mid, topic_filter, qos))
        return mid

    def unsubscribe(self, topic_filter: str) -> int:
        mid = self._mid()
        self._queue(packets.unsubscribe(mid, topic_filter))
        return mid

    def send(self, acks: list[int], publishes: list[tuple[str, bytes]]) -> None:
        """PUBACK each of `acks` on the current connection (dropped if it ends first: the broker
        then delivers those messages again) and publish each (topic, payload) at QoS 1 (kept
        until the broker has it, across reconnects). Written together, in this order."""
        with self._lock:
            self._outbox.extend(packets.puback(mid) for mid in acks)
            self._publishes.extend(publishes)
            self._wake()

    def close(self, end_session: bool = False) -> None:
        """Disconnect and stop; the broker keeps the session (and queues for it) unless
        `end_session`. Waits for the network thread."""
        with self._lock:
            self._closing = packets.disconnect(0 if end_session else None)
            self._wake()
        if self._thread is not None:
            self._thread.join(CONNECT_TIMEOUT_S + 5)
        self._wake_r.close()
        self._wake_w.close()

    def _queue(self, packet: bytes) -> None:
        with self._lock:
            self._outbox.append(packet)
            self._wake()

    def _wake(self) -> None:  # with the lock held
        if not self._woken:
            self._woken = True
            with contextlib.suppress(BlockingIOError):
                self._wake_w.send(b"x")

    def _mid(self) -> int:
        with self._lock:
            return self._free_mid()

    # -- the network thread ----------------------------------------------------------------

    def _run(self) -> None:
        delay = MIN_DELAY_S
        while self._closing is None:
            try:
                sock, connack, behind = self._open()
            except OSError as exc:  # refused, unreachable, TLS, timed out
                self.on_connect_fail(exc)
            except Exception:  # a bug: logged, never a network thread that ends in silence
                log.exception("the MQTT client could not connect")
            else:
                if not connack.reason.is_failure:
                    delay = MIN_DELAY_S
                    try:
                        why = self._serve(sock, connack, behind)
                    except Exception:  # a bug in a callback: logged, and the connection made anew
                        log.exception("the MQTT client's network thread failed; reconnecting")
                        why = "an error in the client"
                    if why:
                        self.on_disconnect(why)
                        self._pause(delay)
                    continue
                sock.close()
                self.on_refused(connack.reason)
            self._pause(delay)  # a failed attempt: the next one waits twice as long, up to max_delay_s
            delay = min(delay * 2, self.endpoint.max_delay_s)

    def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if close() is called meanwhile (what is sent meanwhile waits
        for the next connection)."""
        until = time.monotonic() + seconds
        while self._closing is None and (left := until - time.monotonic()) > 0:
            if select.select([self._wake_r], [], [], left)[0]:
                with self._lock, contextlib.suppress(BlockingIOError):
                    self._woken = False
                    self._wake_r.recv(4096)

    def _open(self) -> tuple[socket.socket, packets.Connack, bytes]:
        """A connection and the broker's CONNACK, with whatever it sent right behind it (a
        resumed session's queued clips may come in the same segment)."""
        e = self.endpoint
        sock = socket.create_connection((e.host, e.port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # acks are small: no Nagle delay
            if e.tls is not None:
                sock = e.tls.wrap_socket(sock, server_hostname=e.host)
            sock.sendall(packets.connect(e.client_id, e.keepalive_s, e.session_expiry_s, e.max_packet_bytes,
                                         e.username, e.password))
            buf = b""
            while (whole := packets.frame(buf, 0, len(buf))) is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionLost("the broker closed the connection before its CONNACK")
                buf += chunk
            first, start, end = whole
            if first >> 4 != packets.CONNACK:
                raise ConnectionLost(f"the broker answered CONNECT with packet type {first >> 4}")
            connack = packets.parse_connack(buf[start:end])
        except (OSError, PacketError) as exc:
            sock.close()
            raise exc if isinstance(exc, OSError) else ConnectionLost(str(exc)) from None
        return sock, connack, buf[end:]

    def _serve(self, sock: socket.socket, connack: packets.Connack, behind: bytes) -> str:
        """Until the connection ends: why it did, or "" if close() ended it. `behind`: what
        came after the CONNACK in the same read."""
        keepalive = connack.properties.get(packets.SERVER_KEEP_ALIVE, self.endpoint.keepalive_s)
        assert isinstance(keepalive, int)
        maximum = connack.properties.get(packets.RECEIVE_MAXIMUM, 65_535)
        assert isinstance(maximum, int)
        with self._lock:
            self._receive_maximum = maximum
            self._outbox.clear()  # acks of the last connection: the broker delivers those messages again
            self._outbox.extend(packets.dup(p) if connack.session_present else p for p in self._inflight.values())
        sock.settimeout(max(keepalive, 10))  # a blocking send or a TLS record's rest: never for ever
        inbox = Inbox(self.endpoint.max_packet_bytes, behind)
        self.on_connect(connack.session_present)
        self._last_sent = time.monotonic()
        ping_sent: float | None = None
        try:
            self._dispatch(inbox)
            while True:
                if self._flush(sock):
                    return ""
                now = time.monotonic()
                timeout = None
                if keepalive:
                    if ping_sent is not None and now - ping_sent >= keepalive:
                        raise ConnectionLost(f"the broker did not answer a ping in {keepalive} s")
                    if ping_sent is None and now - self._last_sent >= keepalive:
                        sock.sendall(packets.PINGREQ_PACKET)
                        ping_sent = self._last_sent = now
                    timeout = max(0.05, (ping_sent if ping_sent is not None else self._last_sent) + keepalive - now)
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
                readable = [sock] if pending else select.select([sock, self._wake_r], [], [], timeout)[0]
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                if sock in readable:
                    inbox.read(sock)
                    ping_sent = None  # the broker is there
                    self._dispatch(inbox)
        except (OSError, PacketError) as exc:
            return str(exc) if isinstance(exc, ConnectionLost) else f"{type(exc).__name__}: {exc}"
        finally:
            sock.close()

    def _flush(self, sock: socket.socket) -> bool:
        """Write what is queued, in one go; True once the DISCONNECT of close() is written."""
        with self._lock:
            self._woken = False
            out, self._outbox = self._outbox, []
            while self._publishes and len(self._inflight) < self._receive_maximum:
                topic, payload = self._publishes.popleft()
                mid = self._free_mid()
                self._inflight[mid] = packet = packets.publish(mid, topic, payload)
                out.append(packet)
            closing = self._closing
        if closing is not None:
            out.append(closing)
        if out:
            sock.sendall(b"".join(out))
            self._last_sent = time.monotonic()
        return closing is not None

    def _free_mid(self) -> int:  # with the lock held
        for _ in range(65_535):
            self._next_mid = self._next_mid % 65_535 + 1
            if self._next_mid not in self._inflight:
                return self._next_mid
        raise EarmarkError("no MQTT packet identifier is free: 65535 receipts wait for the broker")

    def _dispatch(self, inbox: Inbox) -> None:
        """Hand on every whole packet the inbox holds."""
        for first, body in inbox.packets():
            kind = first >> 4
            if kind == packets.PUBLISH:
                topic, mid, qos, at = packets.parse_publish(first, body)
                self.on_message(Message(topic, bytes(body[at:]), mid, qos))
            elif kind == packets.PUBACK:
                mid = packets.parse_ack(body, many=False)[0]
                with self._lock:
                    self._inflight.pop(mid, None)
                    if self._publishes:
                        self._wake()
            elif kind in (packets.SUBACK, packets.UNSUBACK):
                mid, reasons = packets.parse_ack(body, many=True)
                if kind == packets.SUBACK:
                    self.on_subscribe(mid, reasons)
            elif kind == packets.DISCONNECT:
                raise ConnectionLost(f"the broker disconnected: {packets.parse_disconnect(body)}")
            elif kind != packets.PINGRESP:
                raise PacketError(f"an unexpected packet of type {kind}")


class Inbox:
    """What the broker has sent and the client not yet handled: one buffer, read into as far
    as there is room (many PUBLISHes per system call), each whole packet handed out as a view."""

    def __init__(self, max_packet_bytes: int, arrived: bytes = b"", size: int = BUFFER_BYTES) -> None:
        self.max_packet_bytes = max_packet_bytes
        self.buf = bytearray(max(size, len(arrived)))
        self.buf[:len(arrived)] = arrived
        self.start, self.end = 0, len(arrived)  # buf[start:end] has arrived and is not handled yet

    def read(self, sock: socket.socket) -> None:
        if self.end == len(self.buf) or (self.start and len(self.buf) - self.end < len(self.buf) // 4):
            rest = self.end - self.start  # move the unhandled rest to the front
            self.buf[:rest] = self.buf[self.start:self.end]
            self.start, self.end = 0, rest
            if rest == len(self.buf):  # one packet larger than the buffer: grow it
                self.buf.extend(bytes(len(self.buf)))
        with memoryview(self.buf) as view:
            count = sock.recv_into(view[self.end:])
        if not count:
            raise ConnectionLost("the broker closed the connection")
        self.end += count

    def packets(self) -> Iterator[tuple[int, memoryview]]:
        """Each whole packet (its first byte, its body), in order; a partial one stays."""
        with memoryview(self.buf) as view:
            while (whole := packets.frame(view, self.start, self.end, self.max_packet_bytes)) is not None:
                first, body_start, body_end = whole
                with view[body_start:body_end] as body:
                    yield first, body
                self.start = body_end
