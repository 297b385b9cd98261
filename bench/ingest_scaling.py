"""Benchmark: ingest throughput as ingesters are added, on PostgreSQL, against one on SQLite.

For each configuration (1 ingester on SQLite; 1, 2 and 3 on PostgreSQL) the same N signed
5-second clips are queued in a real Mosquitto for the ingesters' shared subscription while
their persistent sessions are offline (the broker deals them out round-robin). Then the
ingester processes start together (each has imported, opened its store and built its
client before a common go signal) and drain them through the full path: parse, verify,
bind owner, encrypt, fsync'd blob, durable commit, audit event, manual ack, receipt.
Throughput is clips / (last commit - first commit), read from the stored rows, so process
start-up is not counted. Configurations alternate within each run; medians are printed,
with the scaling ratio against 1 PostgreSQL ingester and the ratio to SQLite, and the CPU the
whole machine spent per clip (ingesters, database and broker together) for sizing.

Usage: .venv/bin/python bench/ingest_scaling.py [--clips 600] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, closing
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest_throughput import fresh_session, publish_all  # noqa: E402
from cloud.db import parse_utc  # noqa: E402
from cloud.store import Store  # noqa: E402
from tests.broker import Mosquitto  # noqa: E402

GROUP = "bench-scale"
CONFIGS = (("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3))


def child(spec: dict[str, object]) -> None:
    """One ingester: get everything ready, wait for the go file, then ingest until stopped."""
    from dataclasses import replace

    from cloud.ingest import Ingestor
    from cloud.metrics import Metrics
    from cloud.service import IngestService
    from cloud.settings import load_settings
    from cloud.store import Store

    settings = load_settings(None, Path(str(spec["data_dir"])), url=f"mqtt://127.0.0.1:{spec['port']}",
                             database_url=str(spec["database_url"]) or None)
    settings = replace(settings, broker=replace(settings.broker, client_id=str(spec["client_id"]),
                                                share_group=GROUP))
    store = Store.open(settings)
    service = IngestService(settings, Ingestor(store), Metrics())
    go, stop_file = Path(str(spec["go"])), Path(str(spec["stop"]))
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    while not stop_file.exists():
        time.sleep(0.05)
    stop.set()
    runner.join()
    store.close()


def busy_seconds() -> float:
    """CPU time the whole machine spent busy so far (all processes: ingesters, the
    database, the broker), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_config(broker: Mosquitto, store: Store, url: str, data_dir: Path, ingesters: int,
               envelopes: list[bytes], topic: str) -> tuple[float, float, float]:
    """Returns (clips/s, machine CPU ms per clip, database bytes per clip or 0 for SQLite)."""
    ids = [f"bench-ing-{i}" for i in range(3)]
    for index, client_id in enumerate(ids):  # this configuration's sessions only
        fresh_session(broker.port, client_id, f"$share/{GROUP}/earmark/v1/clips/+" if index < ingesters else None)
    publish_all(broker.port, topic, envelopes)
    go, stop = data_dir / "go", data_dir / "stop"
    procs = []
    for client_id in ids[:ingesters]:
        spec = {"data_dir": str(data_dir), "port": broker.port, "database_url": url, "client_id": client_id,
                "go": str(go), "stop": str(stop)}
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)],
                                      stdout=subprocess.PIPE, text=True))
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    busy0 = busy_seconds()
    go.touch()
    deadline = time.monotonic() + 600
    while store.counts()["clips"] < len(envelopes):
        if time.monotonic() > deadline:
            raise RuntimeError(f"x{ingesters}: only {store.counts()['clips']} of {len(envelopes)} clips stored")
        time.sleep(0.05)
    cpu_ms = (busy_seconds() - busy0) * 1000 / len(envelopes)
    stop.touch()
    for proc in procs:
        proc.wait(60)
    owner = store.registry.owners()[0].owner_id
    stamps = sorted(parse_utc(c.stored_at) for c in store.clips.iter_owner(owner))
    per_clip = 0.0
    if url:  # the clip rows, their indexes and TOAST, and the audit events: what PostgreSQL holds per clip
        size = store.db.query("SELECT pg_total_relation_size('clips') + pg_total_relation_size('audit') AS b")
        per_clip = float(size[0]["b"]) / len(envelopes)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]).total_seconds(), cpu_ms, per_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.cloudkit import SimDevice, make_store
    from tests.pgdb import temporary_database

    key = Ed25519PrivateKey.generate()
    captured = datetime(2026, 1, 1, tzinfo=UTC)
    rates: dict[tuple[str, int], list[float]] = {c: [] for c in CONFIGS}
    cpu: dict[tuple[str, int], list[float]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Mosquitto(folder / "broker").start()
        try:
            for run in range(args.runs):
                for backend, ingesters in CONFIGS:
                    with ExitStack() as stack:
                        url = stack.enter_context(temporary_database()) if backend == "postgres" else ""
                        data_dir = folder / f"{backend}-{ingesters}-{run}"
                        store = stack.enter_context(closing(make_store(data_dir, url)))
                        owner = store.registry.add_owner("Bench").owner_id
                        device = SimDevice("bench-pi", owner, key)
                        store.registry.add_device(owner, device.public_key, device.device_id)
                        # The same audio, sizes and capture times in every configuration.
                        envelopes = [device.clip(seconds=5.0, seed=run * 100_000 + i, captured=captured)
                                     for i in range(args.clips)]
                        rate, cpu_ms, db_bytes = run_config(broker, store, url, data_dir, ingesters, envelopes,
                                                            device.topic)
                    rates[(backend, ingesters)].append(rate)
                    cpu[(backend, ingesters)].append(cpu_ms)
                    print(f"run {run + 1}: {backend:8s} x{ingesters}: {rate:7.1f} clips/s, "
                          f"{cpu_ms:.2f} ms machine CPU per clip"
                          + (f", {db_bytes:.0f} database bytes per clip" if db_bytes else ""), flush=True)
        finally:
            broker.stop()
    report(rates, cpu, args.clips, args.runs)


def report(rates: dict[tuple[str, int], list[float]], cpu: dict[tuple[str, int], list[float]], clips: int,
           runs: int) -> None:
    median = {c: statistics.median(r) for c, r in rates.items()}
    cpu_median = {c: statistics.median(r) for c, r in cpu.items()}
    one = median[("postgres", 1)]
    print(f"\n{clips} clips of 5 s per configuration, {runs} alternating runs, real Mosquitto and PostgreSQL "
          "on loopback, 2 cores shared by broker, database and ingesters")
    for (backend, ingesters), value in median.items():
        scale = f"  scaling vs 1 on PostgreSQL: {value / one:.2f}x" if backend == "postgres" else ""
        print(f"{backend:8s} x{ingesters}: {value:7.1f} clips/s (runs: "
              f"{', '.join(f'{r:.0f}' for r in rates[(backend, ingesters)])}), "
              f"{cpu_median[(backend, ingesters)]:.2f} ms machine CPU per clip{scale}")
    print(f"PostgreSQL x1 / SQLite x1: {one / median[('sqlite', 1)]:.2f}")


if __name__ == "__main__":
    main()
