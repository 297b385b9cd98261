"""The MQTT 5 packets the ingester's client writes and reads (OASIS MQTT Version 5.0): pure
functions over bytes, no I/O, so each packet's layout is a one-line test.

What the ingester needs and nothing more: CONNECT with a login, a session expiry and no
will; SUBSCRIBE and UNSUBSCRIBE of one filter each; PUBLISH at QoS 0 or 1 both ways;
PUBACK; PINGREQ; DISCONNECT (with a session expiry of 0 to end the session). It never asks
for topic aliases, so a broker may not send any, and it reads no PUBLISH property; it does
read CONNACK's (Receive Maximum, Server Keep Alive, Maximum Packet Size). Anything a broker
sends that breaks the specification is a PacketError, and the client drops that connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from earmark.wire.errors import EarmarkError

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ_PACKET, PINGRESP, DISCONNECT, AUTH = b"\xc0\x00", 13, 14, 15

# CONNACK properties the client acts on
SESSION_EXPIRY, SERVER_KEEP_ALIVE, RECEIVE_MAXIMUM, MAXIMUM_PACKET_SIZE = 0x11, 0x13, 0x21, 0x27

# Each property's value type (section 2.2.2.2): to skip what is not needed.
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _FOUR,
    0x12: _UTF8, 0x13: _TWO, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE, 0x18: _FOUR, 0x19: _BYTE,
    0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _TWO, 0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE,
    0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}

# Reason codes (section 2.4), named as paho names them, so logs read the same.
REASON_NAMES = {
    0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2", 0x04: "Disconnect with will message",
    0x10: "No matching subscribers", 0x11: "No subscription existed", 0x80: "Unspecified error",
    0x81: "Malformed packet", 0x82: "Protocol error", 0x83: "Implementation specific error",
    0x84: "Unsupported protocol version", 0x85: "Client identifier not valid",
    0x86: "Bad user name or password", 0x87: "Not authorized", 0x88: "Server unavailable",
    0x89: "Server busy", 0x8A: "Banned", 0x8B: "Server shutting down", 0x8C: "Bad authentication method",
    0x8D: "Keep alive timeout", 0x8E: "Session taken over", 0x8F: "Topic filter invalid",
    0x90: "Topic name invalid", 0x91: "Packet identifier in use", 0x93: "Receive maximum exceeded",
    0x94: "Topic alias invalid", 0x95: "Packet too large", 0x96: "Message rate too high",
    0x97: "Quota exceeded", 0x98: "Administrative action", 0x99: "Payload format invalid",
    0x9A: "Retain not supported", 0x9B: "QoS not supported", 0x9C: "Use another server",
    0x9D: "Server moved", 0x9E: "Shared subscriptions not supported", 0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time", 0xA1: "Subscription identifiers not supported",
    0xA2: "Wildcard subscriptions not supported",
}


class PacketError(EarmarkError, ValueError):
    """The broker sent bytes that are not a valid MQTT 5 packet where one was due."""


@dataclass(frozen=True)
class Reason:
    """A reason code: `str()` is its name; 0x80 and above are failures."""

    code: int

    @property
    def is_failure(self) -> bool:
        return self.code >= 0x80

    def __str__(self) -> str:
        return REASON_NAMES.get(self.code, f"reason code {self.code:#04x}")


@dataclass(frozen=True)
class Connack:
    session_present: bool
    reason: Reason
    properties: dict[int, object]


# -- writing --------------------------------------------------------------------------------

def varint(n: int) -> bytes:
    """A Variable Byte Integer (section 1.5.5)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _binary(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect(client_id: str, keepalive_s: int, session_expiry_s: int, max_packet_bytes: int, username: str = "",
            password: str = "") -> bytes:
    """CONNECT resuming the session if the broker holds it (Clean Start 0), asking it to keep
    the session `session_expiry_s` after a disconnect and to send no packet larger than
    `max_packet_bytes` (it drops those instead)."""
    flags = (0x80 if username else 0) | (0x40 if password else 0)
    properties = (bytes([SESSION_EXPIRY]) + struct.pack("!I", session_expiry_s)
                  + bytes([MAXIMUM_PACKET_SIZE]) + struct.pack("!I", max_packet_bytes))
    body = (_utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive_s) + varint(len(properties))
            + properties + _utf8(client_id))
    if username:
        body += _utf8(username)
    if password:
        body += _binary(password.encode())
    return _packet(CONNECT << 4, body)


def subscribe(mid: int, topic_filter: str, qos: int) -> bytes:
    return _packet(SUBSCRIBE << 4 | 0x02, struct.pack("!H", mid) + b"\x00" + _utf8(topic_filter) + bytes([qos]))


def unsubscribe(mid: int, topic_filter: str) -> bytes:
    return _packet(UNSUBSCRIBE << 4 | 0x02, struct.pack("!H", mid) + b"\x00" + _utf8(topic_filter))


def publish(mid: int, topic: str, payload: bytes) -> bytes:
    """A QoS 1 PUBLISH (not retained). Set DUP on a copy sent again: `dup(packet)`."""
    return _packet(PUBLISH << 4 | 0x02, _utf8(topic) + struct.pack("!H", mid) + b"\x00" + payload)


def dup(packet: bytes) -> bytes:
    return bytes([packet[0] | 0x08]) + packet[1:]


def puback(mid: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", mid)  # reason Success, no properties: the short form


def disconnect(session_expiry_s: int | None = None) -> bytes:
    """DISCONNECT (normal); with `session_expiry_s`, the session's expiry changed to it (0:
    the broker forgets the session and its queue now)."""
    if session_expiry_s is None:
        return b"\xe0\x00"
    properties = bytes([SESSION_EXPIRY]) + struct.pack("!I", session_expiry_s)
    return _packet(DISCONNECT << 4, b"\x00" + varint(len(properties)) + properties)


# -- reading --------------------------------------------------------------------------------

def frame(buf: bytes | bytearray | memoryview, start: int, end: int,
          max_packet_bytes: int = 268_435_460) -> tuple[int, int, int] | None:
    """The next whole packet in buf[start:end]: (first byte, body start, body end), or None
    while it has not all arrived. PacketError for one larger than `max_packet_bytes`."""
    if end - start < 2:
        return None
    length, multiplier, pos = 0, 1, start + 1
    while True:
        if pos >= end:
            return None
        digit = buf[pos]
        length += (digit & 0x7F) * multiplier
        pos += 1
        if not digit & 0x80:
            break
        multiplier *= 128
        if multiplier > 128 ** 3:
            raise PacketError("a remaining length longer than 4 bytes")
    if pos - start + length > max_packet_bytes:
        raise PacketError(f"a packet of {pos - start + length} bytes, over the {max_packet_bytes} asked for")
    return (buf[start], pos, pos + length) if pos + length <= end else None


def _read_varint(body: bytes | memoryview, pos: int) -> tuple[int, int]:
    value, multiplier = 0, 1
    for count in range(4):
        if pos >= len(body):
            break
        digit = body[pos]
        value += (digit & 0x7F) * multiplier
        pos += 1
        if not digit & 0x80:
            return value, pos
        multiplier *= 128
        if count == 3:
            break
    raise PacketError("a malformed variable byte integer")


def _need(body: bytes | memoryview, pos: int, size: int) -> None:
    if pos + size > len(body):
        raise PacketError("a packet shorter than its fields")


def _read_properties(body: bytes | memoryview, pos: int) -> tuple[dict[int, object], int]:
    length, pos = _read_varint(body, pos)
    end = pos + length
    _need(body, pos, length)
    found: dict[int, object] = {}
    while pos < end:
        ident, pos = _read_varint(body, pos)
        kind = _PROPERTY_TYPES.get(ident)
        value: object
        if kind is None:
            raise PacketError(f"an unknown property {ident:#04x}")
        if kind == _BYTE:
            _need(body, pos, 1)
            value, pos = body[pos], pos + 1
        elif kind == _TWO:
            _need(body, pos, 2)
            value, pos = struct.unpack_from("!H", body, pos)[0], pos + 2
        elif kind == _FOUR:
            _need(body, pos, 4)
            value, pos = struct.unpack_from("!I", body, pos)[0], pos + 4
        elif kind == _VARINT:
            value, pos = _read_varint(body, pos)
        else:
            for _ in range(2 if kind == _PAIR else 1):
                _need(body, pos, 2)
                size = struct.unpack_from("!H", body, pos)[0]
                _need(body, pos + 2, size)
                pos += 2 + size
            value = None  # strings and binary data: nothing here reads them
        found[ident] = value
    if pos != end:
        raise PacketError("properties overrun their length")
    return found, end


def parse_connack(body: bytes | memoryview) -> Connack:
    _need(body, 0, 2)
    properties = _read_properties(body, 2)[0] if len(body) > 2 else {}
    return Connack(bool(body[0] & 0x01), Reason(body[1]), properties)


def parse_publish(first_byte: int, body: memoryview) -> tuple[str, int, int, int]:
    """A PUBLISH's (topic, packet id or 0 at QoS 0, QoS, where its payload starts in body)."""
    qos = (first_byte >> 1) & 0x03
    if qos > 1:
        raise PacketError(f"a PUBLISH at QoS {qos}: the client subscribes at QoS 1 at most")
    _need(body, 0, 2)
    size = struct.unpack_from("!H", body)[0]
    _need(body, 2, size)
    try:
        topic = str(body[2:2 + size], "utf-8")
    except UnicodeDecodeError:
        raise PacketError("a topic that is not UTF-8") from None
    pos, mid = 2 + size, 0
    if qos:
        _need(body, pos, 2)
        mid, pos = struct.unpack_from("!H", body, pos)[0], pos + 2
    length, pos = _read_varint(body, pos)  # its properties: none of them is read
    _need(body, pos, length)
    return topic, mid, qos, pos + length


def parse_ack(body: bytes | memoryview, many: bool) -> tuple[int, list[Reason]]:
    """PUBACK (one reason, Success if left out) or SUBACK/UNSUBACK (`many`: a reason per filter)."""
    _need(body, 0, 2)
    mid = struct.unpack_from("!H", body)[0]
    if not many:
        return mid, [Reason(body[2] if len(body) > 2 else 0)]
    pos = _read_properties(body, 2)[1]
    return mid, [Reason(code) for code in bytes(body[pos:])]


def parse_disconnect(body: bytes | memoryview) -> Reason:
    return Reason(body[0] if len(body) else 0)
