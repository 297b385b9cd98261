"""The MQTT message source: the ingest core behind an MQTT 5 shared subscription.

The client's network thread (mqtt_client.py) only queues arriving messages. The main
thread takes what has arrived (up to BATCH_MAX) in arrival order and judges it while the
batch before commits (source.Pipeline); only after a batch's durable commit does it ack
each of its messages (in arrival order) and then publish their receipts, all in one write.
It also reads every device's retained status topic (QoS 0, no ack) and records, between
batches, whether each device is online (store/presence.py: the owner's portal shows it).
An ack is sent only on the connection the message came in on: after a reconnect the broker
redelivers what was not acked, and de-duplication by clip id makes that harmless. If the
store cannot take a message (disk full), it is retried with backoff and never acked
meanwhile. SIGTERM finishes the message in hand, acks it, and leaves.

The client comes from `client_factory` (mqtt_client.IngestClient, unless a test gives its
own): tests/unit/test_mqtt_source.py drives the callbacks with a fake. As a member of the
shared-subscription group it records its state in the store (running, retiring, stopped,
retired) for `earmark-cloud status` and the scale-down procedure.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from earmark.cloud.broker.logins import QUEUE_DEPTH_TOPIC
from earmark.cloud.ingest.ingestor import Ingestor, Outcome
from earmark.cloud.ingest.metrics import Metrics
from earmark.cloud.ingest.mqtt_client import Endpoint, IngestClient, Message
from earmark.cloud.ingest.mqtt_packets import Reason
from earmark.cloud.ingest.source import (
    BATCH_MAX,
    IngestSummary,
    Pipeline,
    Statuses,
    Vitals,
    count,
)
from earmark.cloud.settings import CloudSettings
from earmark.runtime.transport import FailureLog, describe_connect_error, host_port, tls_context
from earmark.wire.errors import ConfigError
from earmark.wire.topics import STATUS_PREFIX, STATUS_SUBSCRIPTION, receipt_topic, shared_clip_subscription

log = logging.getLogger(__name__)
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue for a week of downtime
RETIRE_QUIET_S = 3.0  # retiring: nothing arrived for this long means the queue has drained
# CONNACK reasons no retry can fix: the login itself is wrong.
LOGIN_REFUSED = ("Not authorized", "Bad user name or password", "Client identifier not valid", "Banned")
KNOWN_GROUP = "earmark-ingest"  # the share group of every Earmark before the store had its own


@dataclass(frozen=True)
class Arrival:
    generation: int  # which connection it came in on
    mid: int
    qos: int
    topic: str
    payload: bytes
    arrived: float


def ingest_client(settings: CloudSettings) -> IngestClient:
    """The ingester's real MQTT client: its login, TLS with the CA pinned (runtime/transport.py),
    a session the broker keeps for a week of downtime."""
    b = settings.broker
    tls = tls_context(b.ca, b.client_cert, b.client_key) if b.tls else None
    return IngestClient(Endpoint(*host_port(b.url), b.client_id, b.username,
                                 settings.broker_password() if b.username else "", tls, b.keepalive_s,
                                 SESSION_EXPIRY_S, max_delay_s=30))


class IngestService:
    def __init__(self, settings: CloudSettings, ingestor: Ingestor, metrics: Metrics,
                 client_factory: Callable[[CloudSettings], Any] = ingest_client) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.metrics = metrics
        self.summary = IngestSummary()
        self.vitals = Vitals(metrics)
        self.arrivals: queue.Queue[Arrival] = queue.Queue()
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # ready: the broker has granted the clip subscription
        self.stopping = False
        self.retiring = False  # `ingest --retire`: leave the share group for good after draining
        self.retired = False
        self.depth_mid = -1
        self.status_mid = -1
        self.statuses = Statuses()
        self.fatal: ConfigError | None = None  # set on the network thread; run() raises it
        self.failures = FailureLog(log)
        configured = settings.broker.share_group
        self.group = configured or ingestor.store.accounts.share_group()
        self.group_label = configured or "the store's own"
        if configured == KNOWN_GROUP:
            log.warning("broker.share_group is %r, the name older Earmarks used: any device login that names it "
                        "joins the group and drops the clips it is handed; leave it empty", KNOWN_GROUP)
        self.client = client_factory(settings)
        self.client.on_connect = self._on_connect
        self.client.on_refused = self._on_refused
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail

    # -- the client's callbacks (its network thread) ---------------------------------------

    def _on_connect_fail(self, error: OSError) -> None:
        self.failures.failed(describe_connect_error(error, self.settings.broker.url))

    def _on_refused(self, reason: Reason) -> None:
        b = self.settings.broker
        if str(reason) in LOGIN_REFUSED:
            self.fatal = ConfigError(f"the broker at {b.url} refused the login {b.username or '(anonymous)'!r}: "
                                     f"{reason} (check broker.username and broker.password_file; "
                                     "`earmark-cloud broker add-ingester NAME` makes a login)")
            return
        self.failures.failed(f"the broker at {b.url} refused the connection: {reason}")

    def _on_connect(self, session_present: bool) -> None:
        client = self.client
        self.failures.recovered("connected to the broker")
        self.generation += 1
        self.connected.set()
        self.metrics.connected.set(1)
        if self.retiring:  # no new share; what the session already holds still arrives
            client.unsubscribe(shared_clip_subscription(self.group))
            log.info("retiring: left the share group (%s); draining what was queued for this ingester",
                     self.group_label)
            self.subscribed.set()
            return
        client.subscribe(shared_clip_subscription(self.group), qos=1)
        if self.group != KNOWN_GROUP:  # an Earmark before the store's own group used this one
            client.unsubscribe(shared_clip_subscription(KNOWN_GROUP))
        self.depth_mid = client.subscribe(QUEUE_DEPTH_TOPIC, qos=0)  # the broker's held messages
        self.status_mid = client.subscribe(STATUS_SUBSCRIPTION, qos=0)  # retained: each device's now
        log.info("connected to %s (session %s)", self.settings.broker.url, "resumed" if session_present else "new")

    def _on_subscribe(self, mid: int, reasons: list[Reason]) -> None:
        if mid == self.depth_mid:
            if reasons[0].is_failure:
                log.warning("the broker does not let this login read %s: earmark_queue_depth stays unset "
                            "(run `earmark-cloud broker sync` to update the ACL)", QUEUE_DEPTH_TOPIC)
            return
        if mid == self.status_mid:
            if reasons[0].is_failure:
                log.warning("the broker does not let this login read %s: the portal shows no device as online "
                            "(run `earmark-cloud broker sync` to update the ACL)", STATUS_SUBSCRIPTION)
            return
        if any(reason.is_failure for reason in reasons):
            self.fatal = ConfigError(f"the broker refused the clip subscription ({reasons[0]}): the ingester's "
                                     f"login {self.settings.broker.username!r} needs the ingester ACL "
                                     "(`earmark-cloud broker add-ingester`)")
            return
        self.subscribed.set()
        log.info("subscribed to the clips (share group %s): ready", self.group_label)

    def _on_disconnect(self, reason: str) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.metrics.connected.set(0)
        if not self.stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, message: Message) -> None:
        if message.topic == QUEUE_DEPTH_TOPIC:
            with contextlib.suppress(ValueError):
                self.metrics.queue_depth.set(int(message.payload))
            return
        if message.topic.startswith(STATUS_PREFIX):
            self.statuses.put(message.topic, message.payload)
            return
        self.arrivals.put(Arrival(self.generation, message.mid, message.qos, message.topic, message.payload,
                                  time.monotonic()))

    # -- main thread -----------------------------------------------------------------------

    def health(self) -> dict[str, str]:
        waiting = "not subscribed to the clips yet"
        return self.vitals.health(self.ingestor, "ok" if self.subscribed.is_set() else waiting)

    def describe(self) -> str:
        b = self.settings.broker
        return f"{b.url} as {b.username or 'anonymous'} (share group {self.group_label})"

    def run(self, stop: threading.Event, retire: bool = False) -> None:
        """Until `stop`; with `retire`, until this ingester's queue has drained, then it ends its
        session (expiry 0) so the broker stops keeping a share of the clips for it. Its state
        in the group is noted in the store before and after."""
        b = self.settings.broker
        member = b.username or b.client_id  # the broker makes a login its client id
        accounts = self.ingestor.store.accounts
        accounts.note_ingester(member, "retiring" if retire else "running", self.group_label)
        try:
            self._run(stop, retire)
        finally:
            accounts.note_ingester(member, "retired" if self.retired else "stopped", self.group_label)

    def _run(self, stop: threading.Event, retire: bool) -> None:
        self.retiring = retire
        quiet_since = time.monotonic()
        announced = False
        pipeline: Pipeline[list[Arrival]] = Pipeline(self.ingestor, stop, self._settle, self.vitals)
        self.client.start()
        try:
            while not stop.is_set() and self.fatal is None:
                self.vitals.alive()
                if self.subscribed.is_set() and not announced:
                    self.vitals.notifier.ready()
                    announced = True
                try:
                    batch = [self.arrivals.get(timeout=0.2)]
                except queue.Empty:
                    self.statuses.record(self.ingestor)  # nothing is committing now
                    self.summary.flush()
                    if retire and self.subscribed.is_set() and time.monotonic() - quiet_since > RETIRE_QUIET_S:
                        self._leave_for_good()
                        return
                    continue
                quiet_since = time.monotonic()
                while len(batch) < BATCH_MAX:
                    try:
                        batch.append(self.arrivals.get_nowait())
                    except queue.Empty:
                        break
                pipeline.submit(batch, [(a.topic, a.payload) for a in batch])
                if self.arrivals.empty():  # nothing to overlap with: settle now, not after a next batch
                    pipeline.drain()
                    self.statuses.record(self.ingestor)
        finally:
            pipeline.close()
            self.vitals.notifier.stopping()
            self.summary.flush(force=True)
            self.stopping = True
            # Unless retired, the session stays: its share of clips waits for this ingester.
            self.client.close(end_session=self.retired)
            log.info("ingester stopped; %d unacked message(s) will be redelivered", self.arrivals.qsize())
        if self.fatal is not None:
            raise self.fatal

    def _leave_for_good(self) -> None:
        """End the session: the broker forgets its subscription and queue (MQTT 5 lets a
        DISCONNECT lower the session expiry to 0)."""
        self.stopping = self.retired = True  # (the client ends the session as it closes: see _run)
        log.info("retired: this ingester's session is gone; the group's other members take every clip")

    def _settle(self, batch: list[Arrival], outcomes: list[Outcome]) -> None:
        """After the batch's durable commit: ack each message on the connection it came in on
        (after a reconnect the broker redelivers it anyway), count it, answer its device: the
        batch's acks, then its receipts, sent together."""
        acks, receipts = [], []
        for arrival, outcome in zip(batch, outcomes, strict=True):
            if arrival.qos > 0 and arrival.generation == self.generation and self.connected.is_set():
                acks.append(arrival.mid)
            count(self.metrics, outcome, arrival.arrived, self.summary)
            receipt = outcome.receipt()
            if receipt is not None and outcome.device_id is not None:
                receipts.append((receipt_topic(outcome.device_id), receipt.encode()))
        self.client.send(acks, receipts)
