"""Prometheus metrics and health endpoints for the ingester, on one small HTTP server:

  GET /metrics  Prometheus text format: clips by outcome, rejections by reason (every reason
                present from the start, at 0), arrival-to-ack and store-commit latency
                histograms, the time of the last stored clip, messages the broker or queue
                holds, build info, and the process's CPU, memory and file descriptors
  GET /livez    200 while the ingester's main loop is turning (a liveness probe: restart if not)
  GET /readyz   200 when the broker connection and the store are up, else 503 with a JSON body
                saying which (a readiness probe: stop sending traffic, do not restart)
  GET /healthz  the same as /readyz (kept for existing probes)

Under systemd (Type=notify) the ingester also says READY=1 once ready and WATCHDOG=1 as
its loop turns (systemd.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from earmark.cloud.ingest.ingestor import REJECTION_REASONS
from earmark.runtime.command import version
from earmark.wire.errors import from_os_error

STUCK_AFTER_S = 60.0  # a main loop that has not turned for this long is not alive
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.clips = Counter("earmark_clips", "Clips handled, by outcome", ["status"], registry=self.registry)
        self.rejections = Counter("earmark_rejections", "Rejected clips, by reason", ["reason"],
                                  registry=self.registry)
        for status in ("stored", "duplicate", "rejected"):  # present at 0, so rate() and alerts work at once
            self.clips.labels(status)
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason)
        self.latency = Histogram("earmark_ingest_seconds", "From message arrival to its ack",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.commit = Histogram("earmark_commit_seconds", "Judging and durably committing one batch",
                                buckets=LATENCY_BUCKETS, registry=self.registry)
        self.last_stored = Gauge("earmark_last_stored_timestamp_seconds", "When the last clip was stored (Unix time)",
                                 registry=self.registry)
        self.not_kept = Counter("earmark_rejections_not_kept", "Rejected messages not kept in quarantine (a "
                                "device over its quarantine quota, or an erased owner's)", registry=self.registry)
        self.store_errors = Counter("earmark_store_errors", "Messages the store could not take (not acked)",
                                    registry=self.registry)
        self.connected = Gauge("earmark_broker_connected", "1 while connected to the broker",
                               registry=self.registry)
        self.store_ready = Gauge("earmark_store_ready", "1 while the store takes clips; 0 while it cannot (a full "
                                 "disk, a lost database): nothing is acked meanwhile", registry=self.registry)
        self.store_ready.set(1)
        self.queue_depth = Gauge("earmark_queue_depth", "Messages waiting: the broker's held messages ($SYS) "
                                 "or the quorum queue's ready messages; the alarm to watch (deploy/SCALING.md)",
                                 registry=self.registry)
        build = Gauge("earmark_build_info", "The running version", ["version"], registry=self.registry)
        build.labels(version()).set(1)
        ProcessCollector(registry=self.registry)
        self.registry.register(PLATFORM_COLLECTOR)
        self.beat = time.monotonic()  # the main loop's last turn

    def heartbeat(self) -> None:
        self.beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.beat < STUCK_AFTER_S

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(metrics: Metrics, health: Callable[[], dict[str, str]], host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, metrics.render())
            elif self.path == "/livez":
                alive = metrics.alive()
                self._reply(200 if alive else 503, "application/json",
                            json.dumps({"loop": "ok" if alive else "stuck"}).encode())
            elif self.path in ("/readyz", "/healthz"):
                state = health()  # each part: "ok", or why it is not
                self._reply(200 if all(v == "ok" for v in state.values()) else 503, "application/json",
                            json.dumps(state).encode())
            else:
                self._reply(404, "text/plain", b"not found\n")

        def _reply(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass  # scrapes every few seconds would drown the log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:  # in use now may be free after a restart; a bad address is a set-up error
        raise from_os_error(exc, f"cannot serve /metrics on {host}:{port}") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
