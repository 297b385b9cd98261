"""The ingester's MQTT 5 packets, byte for byte against the specification's layouts, and what
the reader does with bytes a broker should never send: a PacketError, never another
exception (the client drops that connection on a PacketError and carries on)."""

from __future__ import annotations

import contextlib
import struct

import pytest

from earmark.cloud.ingest import mqtt_packets as packets
from earmark.cloud.ingest.mqtt_packets import PacketError, Reason


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_variable_byte_integers_are_the_specifications_examples(value: int, encoded: bytes) -> None:
    assert packets.varint(value) == encoded  # MQTT 5.0, section 1.5.5, table 1-1
    assert packets.frame(b"\x30" + encoded + bytes(value), 0, 1 + len(encoded) + value) == (
        0x30, 1 + len(encoded), 1 + len(encoded) + value)


def test_connect_resumes_the_session_with_the_login_expiry_and_packet_bound() -> None:
    packet = packets.connect("ingest-1", 30, 604_800, 2_000_000, "ingester", "s3cret")
    body = (b"\x00\x04MQTT\x05" + bytes([0xC0]) + b"\x00\x1e"  # version 5; user name and password; Clean Start 0
            + b"\x0a\x11" + struct.pack("!I", 604_800) + b"\x27" + struct.pack("!I", 2_000_000)
            + b"\x00\x08ingest-1" + b"\x00\x08ingester" + b"\x00\x06s3cret")
    assert packet == b"\x10" + packets.varint(len(body)) + body
    anonymous = packets.connect("ingest-1", 30, 0, 2_000_000)
    assert anonymous[10] == 0x00  # no login flags, no will, Clean Start 0


def test_acks_publishes_and_subscriptions_are_laid_out_as_specified() -> None:
    assert packets.puback(0x1234) == b"\x40\x02\x12\x34"
    receipt = packets.publish(7, "earmark/v1/receipts/pi", b'{"s":1}')
    assert receipt == b"\x32" + bytes([2 + 22 + 2 + 1 + 7]) + b"\x00\x16earmark/v1/receipts/pi\x00\x07\x00" + b'{"s":1}'
    assert packets.dup(receipt)[0] == 0x3A and packets.dup(receipt)[1:] == receipt[1:]
    assert packets.subscribe(3, "a/+", 1) == b"\x82\x09\x00\x03\x00\x00\x03a/+\x01"
    assert packets.unsubscribe(4, "a/+") == b"\xa2\x08\x00\x04\x00\x00\x03a/+"
    assert packets.disconnect() == b"\xe0\x00"
    assert packets.disconnect(0) == b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"  # the session ends now


def test_a_publish_is_read_past_any_properties() -> None:
    properties = b"\x02\x00\x00\x00\x3c" + b"\x26\x00\x01k\x00\x01v"  # message expiry, a user property
    body = b"\x00\x03a/b" + b"\x00\x09" + packets.varint(len(properties)) + properties + b"payload"
    assert packets.parse_publish(0x32, memoryview(body)) == ("a/b", 9, 1, len(body) - 7)
    assert packets.parse_publish(0x30, memoryview(b"\x00\x03a/b\x00xyz")) == ("a/b", 0, 0, 6)  # QoS 0: no id


def test_connack_suback_and_puback_reasons() -> None:
    connack = packets.parse_connack(b"\x01\x00\x09\x21\x00\x14\x13\x00\x3c\x22\x00\x0a")
    assert connack.session_present and not connack.reason.is_failure
    assert connack.properties == {0x21: 20, 0x13: 60, 0x22: 10}
    refused = packets.parse_connack(b"\x00\x86\x00")
    assert refused.reason.is_failure and str(refused.reason) == "Bad user name or password"
    assert packets.parse_ack(b"\x00\x05\x00\x01\x87", many=True) == (5, [Reason(0x01), Reason(0x87)])
    assert packets.parse_ack(b"\x00\x05", many=False) == (5, [Reason(0)])  # the short PUBACK: Success
    assert str(Reason(0x9E)) == "Shared subscriptions not supported" and str(Reason(0xFE)) == "reason code 0xfe"


@pytest.mark.parametrize("parse", [
    lambda b: packets.parse_connack(b),
    lambda b: packets.parse_publish(0x32, memoryview(b)),
    lambda b: packets.parse_ack(b, many=True),
    lambda b: packets.parse_ack(b, many=False),
    lambda b: packets.parse_disconnect(b),
], ids=["connack", "publish", "suback", "puback", "disconnect"])
def test_every_truncation_and_corruption_is_a_packet_error_or_parses(parse: object) -> None:
    assert callable(parse)
    wholes = [b"\x01\x00\x09\x21\x00\x14\x13\x00\x3c\x22\x00\x0a",
              b"\x00\x03a/b\x00\x09\x0c\x02\x00\x00\x00\x3c\x26\x00\x01k\x00\x01vpayload",
              b"\x00\x05\x03\x1f\x00\x00\x01\x87", b"\x00\x03\xff\xff"]
    for whole in wholes:
        variants = [whole[:n] for n in range(len(whole))] + [
            whole[:i] + bytes([b]) + whole[i + 1:] for i in range(len(whole)) for b in (0x00, 0x7F, 0x80, 0xFF)]
        for variant in variants:
            with contextlib.suppress(PacketError):
                parse(variant)


def test_framing_refuses_an_endless_length_and_a_packet_over_the_bound() -> None:
    assert packets.frame(b"\x30\x80\x80", 0, 3) is None  # more length to come
    with pytest.raises(PacketError, match="longer than 4 bytes"):
        packets.frame(b"\x30\xff\xff\xff\xff\x01", 0, 6)
    with pytest.raises(PacketError, match="over the 100 asked for"):
        packets.frame(b"\x30\x80\x01", 0, 3, max_packet_bytes=100)
    with pytest.raises(PacketError, match="QoS 2"):
        packets.parse_publish(0x34, memoryview(b"\x00\x01a\x00\x01\x00"))
