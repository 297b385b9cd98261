"""The publisher's logic with a fake MQTT client and a hand-turned clock (no broker, no
network thread): oldest first, at most `in_flight` awaiting receipts, a resend when a
receipt is overdue, only a receipt deletes a clip, a rejection moves it aside, junk and
stale receipts change nothing, and the will and the last status say `offline`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from earmark.device.settings import BrokerSettings
from earmark.device.sync.publisher import Publisher
from earmark.device.sync.spool import Spool
from earmark.wire.receipt import Receipt
from earmark.wire.topics import clip_topic, receipt_topic, status_topic

DEVICE = "kitchen-pi"
IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(5)]


@dataclass
class Sent:
    rc: int = mqtt.MQTT_ERR_SUCCESS

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None


@dataclass
class FakeClient:
    """What the publisher asks of paho's client, recorded."""

    published: list[tuple[str, bytes, int, bool]] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    will: tuple[str, bytes] | None = None
    refuse: bool = False  # publish() answers "not connected"
    disconnected: bool = False
    on_connect: Any = None
    on_connect_fail: Any = None
    on_disconnect: Any = None
    on_message: Any = None

    def will_set(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.will = (topic, payload)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Sent:
        if self.refuse:
            return Sent(mqtt.MQTT_ERR_NO_CONN)
        self.published.append((topic, payload, qos, retain))
        return Sent()

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.subscribed.append(topic)

    def socket(self) -> None:
        return None

    def disconnect(self) -> None:
        self.disconnected = True

    def loop_stop(self) -> None:
        return None

    def clips(self) -> list[bytes]:
        return [payload for topic, payload, _, _ in self.published if topic == clip_topic(DEVICE)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path: Path) -> tuple[Publisher, FakeClient, Spool, Clock, list[Receipt]]:
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    for clip_id in IDS:
        spool.put(clip_id, f"envelope {clip_id}".encode())
    fake, clock, receipts = FakeClient(), Clock(), []
    publisher = Publisher(BrokerSettings(url="mqtt://broker:1883", in_flight=2, receipt_timeout_s=30), DEVICE,
                          spool, on_receipt=receipts.append, client_factory=lambda _s, _id: fake, clock=clock)
    fake.on_connect(fake, None, SimpleNamespace(session_present=False), SimpleNamespace(is_failure=False), None)
    return publisher, fake, spool, clock, receipts


def answer(fake: FakeClient, clip_id: str, status: str, reason: str = "") -> None:
    payload = json.dumps({"clip_id": clip_id, "status": status, "reason": reason}).encode()
    fake.on_message(fake, None, SimpleNamespace(topic=receipt_topic(DEVICE), payload=payload))


def test_clips_go_oldest_first_with_at_most_in_flight_awaiting_receipts(rig: Any) -> None:
    publisher, fake, spool, _clock, _ = rig
    assert fake.subscribed == [receipt_topic(DEVICE)] and publisher.connected.is_set()
    publisher.publish_due()
    assert fake.clips() == [f"envelope {i}".encode() for i in IDS[:2]]
    assert all(qos == 1 and not retain for t, _, qos, retain in fake.published if t == clip_topic(DEVICE))
    publisher.publish_due()  # nothing new until a receipt comes
    assert len(fake.clips()) == 2
    answer(fake, IDS[0], "stored")
    publisher.publish_due()
    assert fake.clips()[2:] == [f"envelope {IDS[2]}".encode()]
    assert [c.clip_id for c in spool.clips()] == IDS[1:]


def test_a_clip_whose_receipt_is_overdue_is_sent_again_and_only_a_receipt_deletes_it(rig: Any) -> None:
    publisher, fake, spool, clock, receipts = rig
    publisher.publish_due()
    clock.now += 29
    publisher.publish_due()
    assert len(fake.clips()) == 2  # not yet due
    clock.now += 2
    publisher.publish_due()
    assert fake.clips()[2:] == [f"envelope {i}".encode() for i in IDS[:2]]  # the same two, again
    assert len(spool.clips()) == len(IDS)  # nothing left the spool without a receipt
    answer(fake, IDS[0], "duplicate")  # the first send was stored after all
    answer(fake, IDS[0], "stored")  # the answer to the resend: the clip is already gone
    assert [r.status for r in receipts] == ["duplicate"] and IDS[0] not in [c.clip_id for c in spool.clips()]


def test_within_one_connection_resends_back_off_and_overdue_clips_keep_their_room_in_the_window(rig: Any) -> None:
    """Issue 39 case 1: every 30 s without receipts (an ingester down) each device sent its
    in-flight clips again, and new ones beside them, and the broker kept every copy."""
    publisher, fake, _spool, clock, _ = rig
    publisher.publish_due()
    sent = {30: 4, 59: 4, 91: 6, 150: 6, 211: 8}  # after 30 s, then 60, then 120: doubling
    start = clock.now
    for at, total in sent.items():
        clock.now = start + at
        publisher.publish_due()
        assert len(fake.clips()) == total, f"at {at} s"
    assert set(fake.clips()) == {f"envelope {i}".encode() for i in IDS[:2]}  # never a third clip beside them
    fake.on_disconnect(fake, None, None, "gone", None)
    fake.on_connect(fake, None, SimpleNamespace(session_present=True), SimpleNamespace(is_failure=False), None)
    publisher.publish_due()  # a new connection: at once
    assert len(fake.clips()) == 10 and set(fake.clips()[8:]) == {f"envelope {i}".encode() for i in IDS[:2]}


def test_a_rejected_clip_is_moved_aside_with_its_reason(rig: Any) -> None:
    publisher, fake, spool, _, receipts = rig
    publisher.publish_due()
    answer(fake, IDS[1], "rejected", "bad_signature")
    assert IDS[1] not in [c.clip_id for c in spool.clips()]
    assert publisher.rejected == 1 and receipts[-1].reason == "bad_signature"
    kept = list(spool.rejected_dir.iterdir())
    assert any(IDS[1] in p.name for p in kept) and "bad_signature" in "".join(
        p.read_text() for p in kept if p.suffix != ".clip")


def test_junk_receipts_change_nothing(rig: Any) -> None:
    publisher, fake, spool, _, receipts = rig
    publisher.publish_due()
    for junk in (b"not json", b"[]", b'{"clip_id": 1}', json.dumps({"clip_id": "x", "status": "eaten"}).encode()):
        fake.on_message(fake, None, SimpleNamespace(topic=receipt_topic(DEVICE), payload=junk))
    answer(fake, "00000000-0000-4000-8000-999999999999", "stored")  # not ours any more (or ever)
    assert len(spool.clips()) == len(IDS) and publisher.rejected == 0
    assert [r.clip_id for r in receipts] == []


def test_nothing_is_sent_while_disconnected_or_when_the_client_refuses(rig: Any) -> None:
    publisher, fake, _spool, _clock, _ = rig
    fake.on_disconnect(fake, None, None, "gone", None)
    publisher.publish_due()
    assert fake.clips() == []
    fake.on_connect(fake, None, SimpleNamespace(session_present=True), SimpleNamespace(is_failure=False), None)
    fake.refuse = True
    publisher.publish_due()
    assert fake.clips() == [] and publisher.sent == 0
    fake.refuse = False
    publisher.publish_due()  # the next pass sends them
    assert len(fake.clips()) == 2


def test_the_will_and_the_last_word_are_offline(rig: Any) -> None:
    publisher, fake, _, _, _ = rig
    assert fake.will == (status_topic(DEVICE), b"offline")
    publisher.stop()
    assert fake.published[-1][:2] == (status_topic(DEVICE), b"offline") and fake.published[-1][3]
    assert fake.disconnected


def test_a_message_on_another_topic_or_too_large_is_not_acted_on(rig: Any) -> None:
    """Issue 33 case 1: a forged `stored` receipt for a clip the device holds, delivered on
    another device's receipt topic or its status topic (RabbitMQ routed an attacker's CC/BCC
    keys there), or padded past a receipt's size, deletes nothing."""
    publisher, fake, spool, _, receipts = rig
    publisher.publish_due()
    forged = json.dumps({"clip_id": IDS[0], "status": "stored", "reason": ""}).encode()
    for topic, payload in ((receipt_topic("victim-pi"), forged), (status_topic(DEVICE), forged),
                           ("earmark/v1/receipts/#", forged), (receipt_topic(DEVICE), forged + b" " * 50_000_000)):
        fake.on_message(fake, None, SimpleNamespace(topic=topic, payload=payload))
    assert [c.clip_id for c in spool.clips()] == IDS and receipts == []
    answer(fake, IDS[0], "stored")  # the real one, on its own topic, still works
    assert [c.clip_id for c in spool.clips()] == IDS[1:]


def test_household_marks_are_followed_only_on_the_devices_own_marks_topic_and_only_when_asked_for(
        tmp_path: Path) -> None:
    """The publisher subscribes to its marks topic only with an `on_marks` to hand them to; a
    marks message on another device's topic, a malformed one, or the empty payload a revoked
    login leaves, reaches nobody; a well-formed one on its own topic does, whole."""
    from earmark.wire.marks import MarksMessage
    from earmark.wire.topics import marks_topic

    spool = Spool(tmp_path / "spool", 1024 * 1024)
    got: list[MarksMessage] = []
    fakes = []
    for on_marks in (None, got.append):
        fake = FakeClient()
        Publisher(BrokerSettings(url="mqtt://broker:1883"), DEVICE, spool,
                  client_factory=lambda _s, _id, fake=fake: fake, on_marks=on_marks)
        fake.on_connect(fake, None, SimpleNamespace(session_present=False), SimpleNamespace(is_failure=False), None)
        fakes.append(fake)
    deaf, listening = fakes
    assert marks_topic(DEVICE) not in deaf.subscribed and marks_topic(DEVICE) in listening.subscribed
    good = MarksMessage((IDS[0],), (IDS[1],))
    for fake in fakes:
        for topic, payload in ((marks_topic("victim-pi"), good.encode()), (marks_topic(DEVICE), b"{not json"),
                               (marks_topic(DEVICE), b""), (receipt_topic(DEVICE), good.encode())):
            fake.on_message(fake, None, SimpleNamespace(topic=topic, payload=payload))
    deaf.on_message(deaf, None, SimpleNamespace(topic=marks_topic(DEVICE), payload=good.encode()))
    assert got == []
    listening.on_message(listening, None, SimpleNamespace(topic=marks_topic(DEVICE), payload=good.encode()))
    assert got == [good]
