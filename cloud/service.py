"""`earmark-cloud ingest`: the ingest core behind an MQTT 5 shared subscription.

paho-mqtt's network thread only queues arriving messages. The main thread takes what has
arrived (up to BATCH_MAX) in arrival order, runs the ingest core on it as one group commit,
and only after the store's durable commit acks each message (manual ack, in arrival order)
and then publishes its receipt.
An ack is sent only on the connection the message came in on: after a reconnect the broker
redelivers what was not acked, and de-duplication by clip id makes that harmless. If the
store cannot take a message (disk full), it is retried with backoff and never acked
meanwhile. SIGTERM finishes the message in hand, acks it, and leaves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt

from cloud.db import StoreError
from cloud.ingest import Ingestor, Outcome
from cloud.metrics import Metrics
from cloud.settings import CloudSettings
from earmark_wire.topics import receipt_topic, shared_clip_subscription
from earmark_wire.transport import connect_async, make_client, send_immediately

log = logging.getLogger(__name__)
T = TypeVar("T")
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue for a week of downtime
BATCH_MAX = 64  # messages judged and committed together (one durable commit per batch)


@dataclass(frozen=True)
class Arrival:
    generation: int  # which connection it came in on
    mid: int
    qos: int
    topic: str
    payload: bytes
    arrived: float


class IngestService:
    def __init__(self, settings: CloudSettings, ingestor: Ingestor, metrics: Metrics) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.metrics = metrics
        self.arrivals: queue.Queue[Arrival] = queue.Queue()
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # ready: the broker has granted the clip subscription
        self.stopping = False
        b = settings.broker
        self.client = make_client(b.client_id, b.url, b.username, settings.broker_password() if b.username else "",
                                  b.ca, b.client_cert, b.client_key, manual_ack=True, max_reconnect_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        send_immediately(client)
        self.generation += 1
        self.connected.set()
        self.metrics.connected.set(1)
        client.subscribe(shared_clip_subscription(self.settings.broker.share_group), qos=1)
        log.info("connected to %s (session %s)", self.settings.broker.url,
                 "resumed" if flags.session_present else "new")

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("the broker refused the clip subscription (%s): check the ingester's ACL", reasons)
            return
        self.subscribed.set()
        log.info("subscribed to %s: ready", shared_clip_subscription(self.settings.broker.share_group))

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.metrics.connected.set(0)
        if not self.stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.arrivals.put(Arrival(self.generation, message.mid, message.qos, message.topic,
                                  bytes(message.payload), time.monotonic()))

    # -- main thread -----------------------------------------------------------------------

    def health(self) -> dict[str, bool]:
        return {"broker": self.subscribed.is_set(), "store": store_health(self.ingestor)}

    def run(self, stop: threading.Event) -> None:
        connect_async(self.client, self.settings.broker.url, self.settings.broker.keepalive_s, SESSION_EXPIRY_S)
        try:
            while not stop.is_set():
                try:
                    batch = [self.arrivals.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while len(batch) < BATCH_MAX:
                    try:
                        batch.append(self.arrivals.get_nowait())
                    except queue.Empty:
                        break
                self._process(batch, stop)
        finally:
            self.stopping = True
            self.client.disconnect()
            self.client.loop_stop()
            log.info("ingester stopped; %d unacked message(s) will be redelivered", self.arrivals.qsize())

    def _process(self, batch: list[Arrival], stop: threading.Event) -> None:
        outcomes = judge(self.ingestor, self.metrics, [(a.topic, a.payload) for a in batch], stop)
        if outcomes is None:
            return
        for arrival, outcome in zip(batch, outcomes, strict=True):
            if arrival.qos > 0 and arrival.generation == self.generation and self.connected.is_set():
                self.client.ack(arrival.mid, arrival.qos)
            count(self.metrics, outcome, arrival.arrived)
            receipt = outcome.receipt()
            if receipt is not None and outcome.device_id is not None:
                self.client.publish(receipt_topic(outcome.device_id), receipt.encode(), qos=1)


# -- shared by every message source (this one and cloud/amqp_source.py) ----------------------

def retrying(action: Callable[[], T], error: type[Exception], stop: threading.Event, first_delay: float,
             on_error: Callable[[Exception, float], None]) -> T | None:
    """`action()`, tried again with doubling delays (at most 30 s) while it raises `error`;
    `on_error(exc, delay)` reports each failure. None if asked to stop first."""
    delay = first_delay
    while True:
        try:
            return action()
        except error as exc:
            on_error(exc, delay)
            if stop.wait(delay):
                return None
            delay = min(delay * 2, 30)


def judge(ingestor: Ingestor, metrics: Metrics, messages: list[tuple[str, bytes]],
          stop: threading.Event) -> list[Outcome] | None:
    """The ingest core on one batch, retried with backoff while the store cannot take it
    (disk full, database gone): nothing is acked meanwhile. None if asked to stop first."""

    def report(exc: Exception, delay: float) -> None:
        metrics.store_errors.inc(len(messages))
        log.error("store cannot take %d message(s), will retry in %.0f s (not acked): %s",
                  len(messages), delay, exc)

    return retrying(lambda: ingestor.handle_batch(messages), StoreError, stop, 0.5, report)


def count(metrics: Metrics, outcome: Outcome, arrived: float) -> None:
    metrics.latency.observe(time.monotonic() - arrived)
    metrics.clips.labels(outcome.status).inc()
    if outcome.status == "rejected":
        metrics.rejections.labels(outcome.reason).inc()


def store_health(ingestor: Ingestor) -> bool:
    try:
        ingestor.store.db.query("SELECT 1")
        return True
    except Exception:  # any failure means "not healthy"; the detail is in the log
        return False
