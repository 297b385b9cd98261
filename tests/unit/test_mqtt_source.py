"""The MQTT ingester's logic with a fake MQTT client (no broker): a message is acked only
after its batch's durable commit, in arrival order, and only on the connection it came in
on; then its device gets its receipt; a refused login stops the ingester with one line; a
retiring ingester leaves its group instead of joining it. The store is a real SQLite one."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.ingest.metrics import Metrics
from earmark.cloud.ingest.mqtt_packets import Reason
from earmark.cloud.ingest.mqtt_source import Arrival, IngestService
from earmark.cloud.settings import load_settings
from earmark.wire.errors import ConfigError
from earmark.wire.topics import receipt_topic, shared_clip_subscription
from tests.support.cloudkit import enrolled_device, make_store


@dataclass
class FakeClient:
    """What mqtt_client.IngestClient offers the ingester, recording what it is asked to do."""

    events: list[tuple[str, Any]] = field(default_factory=list)  # what the ingester did, in order
    on_connect: Any = None
    on_refused: Any = None
    on_disconnect: Any = None
    on_message: Any = None
    on_subscribe: Any = None
    on_connect_fail: Any = None

    def start(self) -> None:
        self.events.append(("start", None))

    def subscribe(self, topic: str, qos: int) -> int:
        self.events.append(("subscribe", topic))
        return len(self.events)

    def unsubscribe(self, topic: str) -> int:
        self.events.append(("unsubscribe", topic))
        return len(self.events)

    def send(self, acks: list[int], publishes: list[tuple[str, bytes]]) -> None:
        self.events.extend(("ack", mid) for mid in acks)
        self.events.extend(("publish", (topic, json.loads(payload))) for topic, payload in publishes)

    def close(self, end_session: bool = False) -> None:
        self.events.append(("close", end_session))


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    store = make_store(tmp_path / "cloud")
    fake = FakeClient()
    settings = load_settings(None, tmp_path / "cloud", {"broker.client_id": "ingest-1"})
    service = IngestService(settings, Ingestor(store), Metrics(), client_factory=lambda _s: fake)
    yield service, fake, store
    store.close()


def connect(service: IngestService, fake: FakeClient) -> None:
    service._on_connect(False)


def test_messages_are_acked_only_after_their_commit_in_order_then_answered(rig: Any) -> None:
    service, fake, store = rig
    connect(service, fake)
    group = store.accounts.share_group()  # the store's own, made once (issue 24 case 5)
    assert group.startswith("earmark-ingest-") and len(group) > 30 and store.accounts.share_group() == group
    assert fake.events[:2] == [("subscribe", shared_clip_subscription(group)),
                               ("unsubscribe", shared_clip_subscription("earmark-ingest"))]  # the known one left
    alice = enrolled_device(store, "Alice")
    arrivals = [Arrival(service.generation, mid, 1, alice.topic, alice.clip(seed=mid), 0.0) for mid in (7, 8)]
    fake.events.clear()
    service._settle(arrivals, Ingestor(store).handle_batch([(a.topic, a.payload) for a in arrivals]))
    assert [c.clip_id for c in store.clips.of_owner(alice.owner_id)]  # committed before anything is acked
    assert [e for e in fake.events if e[0] == "ack"] == [("ack", 7), ("ack", 8)]
    receipts = [e[1] for e in fake.events if e[0] == "publish"]
    assert [topic for topic, _ in receipts] == [receipt_topic(alice.device_id)] * 2
    assert {body["status"] for _, body in receipts} == {"stored"}
    assert fake.events.index(("ack", 8)) < fake.events.index(("publish", receipts[1]))  # ack, then receipt


def test_a_message_from_an_earlier_connection_is_not_acked_but_still_answered(rig: Any) -> None:
    service, fake, store = rig
    connect(service, fake)
    alice = enrolled_device(store, "Alice")
    old = Arrival(service.generation, 9, 1, alice.topic, alice.clip(), 0.0)
    service._on_disconnect("gone")
    connect(service, fake)  # the broker redelivers it on this connection: that copy gets the ack
    fake.events.clear()
    service._settle([old], Ingestor(store).handle_batch([(old.topic, old.payload)]))
    assert [e[0] for e in fake.events] == ["publish"]


def test_a_refused_login_stops_the_ingester_with_one_line(rig: Any) -> None:
    service, _, _ = rig
    service._on_refused(Reason(0x87))  # Not authorized
    assert isinstance(service.fatal, ConfigError) and "refused the login" in str(service.fatal)
    assert "\n" not in str(service.fatal)
    with pytest.raises(ConfigError):
        service.run(threading.Event())  # it leaves at once, with that error


def test_a_retiring_ingester_leaves_the_group_instead_of_joining_it(rig: Any) -> None:
    service, fake, store = rig
    service.retiring = True
    connect(service, fake)
    group = shared_clip_subscription(store.accounts.share_group())
    assert ("unsubscribe", group) in fake.events and ("subscribe", group) not in fake.events
