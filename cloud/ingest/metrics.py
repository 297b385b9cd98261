"""Prometheus metrics and a health endpoint for the ingester, on one small HTTP server:
GET /metrics (Prometheus text format) and GET /healthz (200 when the broker connection and
the store are up, else 503, with a JSON body saying which)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from earmark.wire.errors import from_os_error


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.clips = Counter("earmark_clips", "Clips handled, by outcome", ["status"], registry=self.registry)
        self.rejections = Counter("earmark_rejections", "Rejected clips, by reason", ["reason"],
                                  registry=self.registry)
        self.latency = Histogram("earmark_ingest_seconds", "From message arrival to its ack",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                 registry=self.registry)
        self.not_kept = Counter("earmark_rejections_not_kept", "Rejected messages not kept in quarantine (a "
                                "device over its quarantine quota, or an erased owner's)", registry=self.registry)
        self.store_errors = Counter("earmark_store_errors", "Messages the store could not take (not acked)",
                                    registry=self.registry)
        self.connected = Gauge("earmark_broker_connected", "1 while connected to the broker",
                               registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(metrics: Metrics, health: Callable[[], dict[str, bool]], host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, metrics.render())
            elif self.path == "/healthz":
                state = health()
                body = json.dumps({k: "ok" if v else "down" for k, v in state.items()}).encode()
                self._reply(200 if all(state.values()) else 503, "application/json", body)
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
