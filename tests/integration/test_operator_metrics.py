"""What an operator can alert on (issue 13 case 9): /metrics with queue depth, commit
latency, the last stored clip, build info, process figures and every rejection reason from
the start; /livez apart from /readyz; and systemd's notify protocol (READY=1, WATCHDOG=1)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.broker import free_port
from tests.support.securecloud import Client, SecureCloud
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def value(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def ingester_under_systemd(cloud: SecureCloud, tmp_path: Path, watchdog_s: float,
                           timeout: float) -> tuple[subprocess.Popen[bytes], socket.socket, int, Path]:
    """`earmark-cloud ingest` as systemd's Type=notify unit runs it, with a watchdog of
    `watchdog_s`: (the process, the notify socket it talks to, its metrics port, its log)."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(timeout)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}
    log = tmp_path / "ingest.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir",
                                 str(cloud.data_dir), "--metrics-port", str(port)], cwd=ROOT, env=env,
                                stderr=out, stdout=subprocess.DEVNULL)
    return proc, notify, port, log


def test_metrics_health_and_systemd_notify(tmp_path: Path) -> None:
    cloud = SecureCloud(tmp_path)
    cloud.start_broker()
    proc, notify, port, _ = ingester_under_systemd(cloud, tmp_path, watchdog_s=1.0, timeout=0.2)
    said: list[str] = []

    def heard(what: str) -> bool:
        with contextlib.suppress(TimeoutError):
            said.append(notify.recv(4096).decode())
        return any(what in s for s in said)

    try:
        wait_until(lambda: heard("READY=1"), 30, "READY=1 from the ingester")
        owner = cloud.store.registry.add_owner("Alice").owner_id
        device, password = cloud.add_device(owner, "metric-pi")
        sender = Client(cloud, "metric-pi", password)
        assert sender.wait()
        for seed in range(3):
            sender.client.publish(device.topic, device.clip(seed=seed), qos=1).wait_for_publish(5)
        sender.client.publish(device.topic, b"not an envelope", qos=1).wait_for_publish(5)
        wait_until(lambda: len(cloud.clips(owner)) == 3, 20, "the clips to be stored")
        wait_until(lambda: heard("WATCHDOG=1"), 10, "a watchdog ping")

        status, metrics = get(port, "/metrics")
        assert status == 200
        assert 'earmark_build_info{version="' in metrics
        assert value(metrics, "process_resident_memory_bytes") > 0
        assert 'earmark_rejections_total{reason="oversize"} 0.0' in metrics  # present before any happens
        assert 'earmark_rejections_total{reason="malformed"} 1.0' in metrics
        assert value(metrics, "earmark_commit_seconds_count") >= 1
        assert value(metrics, "earmark_last_stored_timestamp_seconds") > 1.7e9
        wait_until(lambda: "earmark_queue_depth " in get(port, "/metrics")[1]
                   and value(get(port, "/metrics")[1], "earmark_queue_depth") >= 0, 15, "the queue depth")
        assert get(port, "/livez") == (200, json.dumps({"loop": "ok"}))
        ready, body = get(port, "/readyz")
        assert ready == 200 and json.loads(body) == {"broker": "ok", "store": "ok"}

        cloud.stop_broker()  # not ready, but alive: a liveness probe must not restart it for this
        wait_until(lambda: get(port, "/readyz")[0] == 503, 15, "readiness to drop")
        assert get(port, "/livez")[0] == 200
        sender.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert heard("STOPPING=1") or wait_until(lambda: heard("STOPPING=1"), 5, "STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
        cloud.close()
