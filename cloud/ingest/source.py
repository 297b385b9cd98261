"""What every message source (MQTT shared subscription, RabbitMQ quorum queue) has in common:
the `MessageSource` protocol the CLI runs, and the one way batches are judged, committed,
retried while the store cannot take them, settled (acked, answered) and counted."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

from earmark.cloud.ingest.ingestor import Ingestor, Judged, Outcome
from earmark.cloud.ingest.metrics import Metrics
from earmark.cloud.ingest.systemd import Notifier
from earmark.cloud.settings import CloudSettings
from earmark.cloud.store.database import StoreFailure
from earmark.wire.topics import TopicError, device_from_status_topic

log = logging.getLogger(__name__)
T = TypeVar("T")
B = TypeVar("B")  # a source's own record of a batch (what it needs to ack it)
BATCH_MAX = 64  # messages judged and committed together (one durable commit per batch)


class MessageSource(Protocol):
    """Where clips come from. `run` takes messages until `stop` is set (or, with `retire`, until
    this ingester has left its group for good, where the source has one), hands each batch to
    the ingest core, and acknowledges a message only after the store's durable commit."""

    def health(self) -> dict[str, str]:
        """Each part the ingester needs ("broker", "store") and "ok", or why it is not."""

    def describe(self) -> str:
        """Where it takes clips from, for the log."""

    def run(self, stop: threading.Event, retire: bool = False) -> None: ...


def open_source(settings: CloudSettings, ingestor: Ingestor, metrics: Metrics) -> MessageSource:
    """The source the settings name (`source`: mqtt or amqp)."""
    if settings.source == "amqp":
        from earmark.cloud.ingest.amqp_source import AmqpIngestService

        return AmqpIngestService(settings, ingestor, metrics)
    from earmark.cloud.ingest.mqtt_source import IngestService

    return IngestService(settings, ingestor, metrics)


STORE_RETRY_MAX_S = 4.0  # a store that can take clips again (room on the disk) is back within this
MIN_FREE_BYTES = 4 * 1024 * 1024  # room for a few clips' blobs; less is a full disk to readiness


def retrying(action: Callable[[], T], error: type[Exception], stop: threading.Event, first_delay: float,
             on_error: Callable[[Exception, float], None], max_delay: float = 30.0,
             tick: Callable[[], None] = lambda: None) -> T | None:
    """`action()`, tried again with doubling delays (at most `max_delay`) while it raises
    `error`; `on_error(exc, delay)` reports each failure, and `tick()` runs at least once a
    second while it waits (the process is alive: it is waiting on purpose). None if asked
    to stop first."""
    delay = first_delay
    while True:
        try:
            return action()
        except error as exc:
            on_error(exc, delay)
            until = time.monotonic() + delay
            while (left := until - time.monotonic()) > 0:
                tick()
                if stop.wait(min(left, 1.0)):
                    return None
            delay = min(delay * 2, max_delay)


class StoreCondition:
    """Whether the store took the last batch it was given: readiness, which a full disk or
    a lost database takes away at once and the next stored batch gives back. Liveness is
    not this: an ingester waiting for room is alive and must not be restarted."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.reason = ""  # why the last attempt failed; "" while the store takes clips
        self._logged = (0.0, "")

    def failed(self, exc: Exception, size: int) -> None:
        self.reason = str(exc)[:300]
        self.metrics.store_ready.set(0)
        self.metrics.store_errors.inc(size)
        now = time.monotonic()
        if self.reason != self._logged[1] or now - self._logged[0] >= 60:  # once, then a minute apart
            self._logged = (now, self.reason)
            log.error("store cannot take %d message(s), retrying every %.0f s or sooner (not acked): %s", size,
                      STORE_RETRY_MAX_S, exc)

    def stored(self) -> None:
        if self.reason:
            log.info("the store takes clips again")
        self.reason = ""
        self.metrics.store_ready.set(1)


class Vitals:
    """What a message source tells of itself: that it is alive (the liveness heartbeat and
    systemd's watchdog, from its loop or from a retry's wait: waiting for the store on purpose
    is progress), and whether it is ready (the broker, and the store as the last batch found it)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.notifier = Notifier()
        self.condition = StoreCondition(metrics)

    def alive(self) -> None:
        self.metrics.heartbeat()
        self.notifier.watchdog()

    def health(self, ingestor: Ingestor, broker: str) -> dict[str, str]:
        """`broker`: "ok", or why the source takes no messages yet; the store likewise."""
        return {"broker": broker, "store": self._store(ingestor)}

    def _store(self, ingestor: Ingestor) -> str:
        if self.condition.reason:
            return self.condition.reason
        try:
            ingestor.store.db.ping()
        except Exception as exc:  # any failure means "not ready"; the detail is in the log
            return f"the database does not answer: {type(exc).__name__}"
        free = shutil.disk_usage(ingestor.store.data_dir).free
        if free < MIN_FREE_BYTES:
            return f"the store's disk is full ({free // 1024} KiB free)"
        return "ok"


class Pipeline(Generic[B]):
    """Judges a batch while the batch before it commits. A commit is mostly waiting on the
    disk (blob fsyncs, then the database's), so the committer thread's wait and the next
    batch's checks overlap. Batches are settled (`settle(batch, outcomes)`: acks, receipts)
    strictly in order, each only after its own durable commit, on the thread that calls
    `submit` or `drain`. A source drains whenever nothing more is waiting, so a lone clip is
    never held back for a next batch.

    While the store cannot take a batch (disk full, database gone) its phase is retried with
    backoff and nothing is settled; if `stop` is set meanwhile, the batch is never settled
    (never acked), so the broker delivers it again."""

    def __init__(self, ingestor: Ingestor, stop: threading.Event, settle: Callable[[B, list[Outcome]], None],
                 vitals: Vitals) -> None:
        self.ingestor, self.stop, self.settle = ingestor, stop, settle
        self.vitals = vitals  # the store's condition, and the heartbeat and watchdog while a retry waits
        self.metrics = vitals.metrics
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-commit")
        self._pending: tuple[B, Future[list[Outcome] | None]] | None = None

    def submit(self, batch: B, messages: list[tuple[str, bytes]]) -> None:
        """Judge this batch, settle the one before (once its commit is done), start this one's commit."""
        judged = self._retried(lambda: self.ingestor.judge(messages), len(messages))
        self.drain()
        if judged is not None:
            self._pending = (batch, self._committer.submit(self._commit, judged))

    def drain(self) -> None:
        """Wait for the batch in commit, if any, and settle it."""
        if self._pending is None:
            return
        batch, commit = self._pending
        self._pending = None
        outcomes = commit.result()
        if outcomes is not None:
            self.settle(batch, outcomes)

    def close(self) -> None:
        self.drain()
        self._committer.shutdown()

    def _commit(self, judged: Judged) -> list[Outcome] | None:
        started = time.monotonic()
        outcomes = self._retried(lambda: self.ingestor.commit(judged), len(judged.outcomes))
        self.metrics.commit.observe(time.monotonic() - started)
        return outcomes

    def _retried(self, phase: Callable[[], T], size: int) -> T | None:
        condition = self.vitals.condition
        result = retrying(phase, StoreFailure, self.stop, 0.5, lambda exc, _delay: condition.failed(exc, size),
                          STORE_RETRY_MAX_S, self.vitals.alive)
        if result is not None:
            condition.stored()
        return result


class Statuses:
    """Devices' status messages (earmark/v1/status/<id>: online JSON, or `offline`), kept
    newest-only per device as they arrive (any thread), recorded into the store's presence
    rows by the source's main thread when no batch is committing. Presence is a best
    effort: a store error is logged, and the device's next status is recorded instead."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: dict[str, bytes] = {}

    def put(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self._newest[topic] = payload

    def record(self, ingestor: Ingestor) -> None:
        with self._lock:
            newest, self._newest = self._newest, {}
        for topic, payload in newest.items():
            try:
                ingestor.store.presence.record(device_from_status_topic(topic), payload)
            except TopicError:
                log.warning("ignored a status on %r: not a device's status topic", topic[:120])
            except StoreFailure as exc:
                log.warning("could not record a device's status: %s", exc)


class IngestSummary:
    """One INFO line per interval instead of one per clip: how many were stored, duplicates
    and rejected (by reason) since the last line. Quiet while nothing arrives."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._since = time.monotonic()
        self._counts: dict[str, int] = {}

    def add(self, outcome: Outcome) -> None:
        key = outcome.status if outcome.status != "rejected" else f"rejected ({outcome.reason})"
        self._counts[key] = self._counts.get(key, 0) + 1
        self.flush()

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._counts and (force or now - self._since >= self.every_s):
            parts = ", ".join(f"{n} {what}" for what, n in sorted(self._counts.items()))
            log.info("in the last %.0f s: %s", now - self._since, parts)
            self._counts = {}
            self._since = now
        elif not self._counts:
            self._since = now


def count(metrics: Metrics, outcome: Outcome, arrived: float, summary: IngestSummary | None = None) -> None:
    if summary is not None:
        summary.add(outcome)
    metrics.latency.observe(time.monotonic() - arrived)
    metrics.clips.labels(outcome.status).inc()
    if outcome.status == "stored":
        metrics.last_stored.set(time.time())
    if outcome.status == "rejected":
        metrics.rejections.labels(outcome.reason).inc()
        if not outcome.kept:
            metrics.not_kept.inc()


