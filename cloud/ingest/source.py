"""What every message source (MQTT shared subscription, RabbitMQ quorum queue) has in common:
the `MessageSource` protocol the CLI runs, and the one way a batch is judged, retried while
the store cannot take it, and counted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from earmark.cloud.ingest.ingestor import Ingestor, Outcome
from earmark.cloud.ingest.metrics import Metrics
from earmark.cloud.store.database import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH_MAX = 64  # messages judged and committed together (one durable commit per batch)


class MessageSource(Protocol):
    """Where clips come from. `run` takes messages until `stop` is set, hands each batch to the
    ingest core, and acknowledges a message only after the store's durable commit."""

    def health(self) -> dict[str, bool]: ...

    def run(self, stop: threading.Event) -> None: ...


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

    def attempt() -> list[Outcome]:
        started = time.monotonic()
        outcomes = ingestor.handle_batch(messages)
        metrics.commit.observe(time.monotonic() - started)
        return outcomes

    return retrying(attempt, StoreError, stop, 0.5, report)


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


def store_health(ingestor: Ingestor) -> bool:
    try:
        ingestor.store.db.ping()
        return True
    except Exception:  # any failure means "not healthy"; the detail is in the log
        return False
