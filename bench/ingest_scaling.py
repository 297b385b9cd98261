"""Benchmark: ingest throughput as ingesters are added, on PostgreSQL, against one on SQLite,
behind Mosquitto (shared subscription) and behind RabbitMQ (MQTT plugin into a quorum queue).

For each configuration (SQLite with 1 ingester; PostgreSQL with 1, 2 and 3 behind Mosquitto;
PostgreSQL with 1 and 3 behind RabbitMQ) the same N signed 5-second clips are queued first:
in Mosquitto for the ingesters' shared subscription while their persistent sessions are
offline (dealt out round-robin), or published over MQTT 3.1.1 into RabbitMQ's quorum queue.
Then the ingester processes start together (each has imported, opened its store and built
its client before a common go signal) and drain them through the full path: parse, verify,
bind owner, encrypt, fsync'd blob, durable commit, audit event, ack, receipt. Throughput is
clips / (last commit - first commit), read from the stored rows, so process start-up is not
counted. Configurations alternate within each run; medians are printed, with the scaling
ratio against 1 ingester of the same kind, the ratio to SQLite, the CPU the whole machine
spent per clip (ingesters, database and broker together) and PostgreSQL's bytes per clip.

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
from earmark.cloud.store.store import Store  # noqa: E402
from earmark.wire.timestamps import parse_utc  # noqa: E402
from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.rabbit import RabbitVhost  # noqa: E402

GROUP = "bench-scale"
# (store, message source, ingesters)
CONFIGS = (("sqlite", "mqtt", 1), ("postgres", "mqtt", 1), ("postgres", "mqtt", 2), ("postgres", "mqtt", 3),
           ("postgres", "amqp", 1), ("postgres", "amqp", 3))
Config = tuple[str, str, int]


def child(spec: dict[str, object]) -> None:
    """One ingester: get everything ready, wait for the go file, then ingest until stopped."""
    from dataclasses import replace

    from earmark.cloud.ingest.amqp_source import AmqpIngestService
    from earmark.cloud.ingest.ingestor import Ingestor
    from earmark.cloud.ingest.metrics import Metrics
    from earmark.cloud.ingest.mqtt_source import IngestService
    from earmark.cloud.settings import load_settings
    from earmark.cloud.store.store import Store

    settings = load_settings(None, Path(str(spec["data_dir"])), {
        "broker.url": f"mqtt://127.0.0.1:{spec['port']}", "database_url": str(spec["database_url"]),
        "source": str(spec["source"])})
    settings = replace(settings, broker=replace(settings.broker, client_id=str(spec["client_id"]),
                                                share_group=GROUP))
    store = Store.open(settings)
    service: IngestService | AmqpIngestService
    if settings.source == "amqp":
        amqp = spec["amqp"]
        assert isinstance(amqp, dict)
        settings = replace(settings, amqp=replace(settings.amqp, **amqp))
        service = AmqpIngestService(settings, Ingestor(store), Metrics())
    else:
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


def amqp_login(rabbit: RabbitVhost) -> dict[str, str]:
    """The ingester's [amqp] settings for the vhost: TLS, logging in by its certificate (the
    nodes take no password over AMQP)."""
    return {"url": rabbit.amqp_url, "username": rabbit.ingester, "ca": str(rabbit.ca),
            "cert": str(rabbit.ingester_cert), "key": str(rabbit.ingester_key)}


def queue_in_rabbitmq(rabbit: RabbitVhost, data_dir: Path, envelopes: list[bytes], topic: str) -> None:
    """Declare the quorum queue (as the ingester would) and publish the clips into it the way
    devices do: MQTT 3.1.1, QoS 1, through RabbitMQ's MQTT plugin, as the device's login."""
    import paho.mqtt.client as mqtt
    import pika
    from paho.mqtt.enums import CallbackAPIVersion

    from earmark.cloud.ingest.amqp_source import connection_parameters, declare
    from earmark.cloud.settings import load_settings

    settings = load_settings(None, data_dir, {f"amqp.{k}": v for k, v in amqp_login(rabbit).items()})
    connection = pika.BlockingConnection(connection_parameters(settings)[0])
    declare(connection.channel(), "earmark.clips")
    connection.close()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pi", protocol=mqtt.MQTTv311)
    client.username_pw_set(*rabbit.mqtt_login("bench-pi"))
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", int(rabbit.mqtt_url.rsplit(":", 1)[1]))
    client.loop_start()
    for info in [client.publish(topic, e, qos=1) for e in envelopes]:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    while rabbit.queue_depth()[0] < len(envelopes):  # routed and in the queue
        time.sleep(0.1)


def run_config(broker: Mosquitto, rabbit: RabbitVhost, store: Store, url: str, data_dir: Path, source: str,
               ingesters: int, envelopes: list[bytes], topic: str) -> tuple[float, float, float]:
    """Returns (clips/s, machine CPU ms per clip, database bytes per clip or 0 for SQLite)."""
    ids = [f"bench-ing-{i}" for i in range(3)]
    if source == "amqp":
        queue_in_rabbitmq(rabbit, data_dir, envelopes, topic)
    else:
        for index, client_id in enumerate(ids):  # this configuration's sessions only
            fresh_session(broker.port, client_id,
                          f"$share/{GROUP}/earmark/v1/clips/+" if index < ingesters else None)
        publish_all(broker.port, topic, envelopes)
    go, stop = data_dir / "go", data_dir / "stop"
    procs = []
    for client_id in ids[:ingesters]:
        spec = {"data_dir": str(data_dir), "port": broker.port, "database_url": url, "client_id": client_id,
                "go": str(go), "stop": str(stop), "source": source,
                "amqp": amqp_login(rabbit)}
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

    from tests.support.cloudkit import SimDevice, make_store
    from tests.support.pgdb import temporary_database

    key = Ed25519PrivateKey.generate()
    captured = datetime(2026, 1, 1, tzinfo=UTC)
    rates: dict[Config, list[float]] = {c: [] for c in CONFIGS}
    cpu: dict[Config, list[float]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as brokers:
        folder = Path(tmp)
        broker = Mosquitto(folder / "broker").start()
        brokers.callback(broker.stop)
        rabbit = RabbitVhost(["bench-pi"])
        brokers.callback(rabbit.close)
        for run in range(args.runs):
            for config in CONFIGS:
                backend, source, ingesters = config
                with ExitStack() as stack:
                    url = stack.enter_context(temporary_database()) if backend == "postgres" else ""
                    data_dir = folder / f"{backend}-{source}-{ingesters}-{run}"
                    store = stack.enter_context(closing(make_store(data_dir, url)))
                    owner = store.registry.add_owner("Bench").owner_id
                    device = SimDevice("bench-pi", owner, key)
                    store.registry.add_device(owner, device.public_key, device.device_id)
                    # The same audio, sizes and capture times in every configuration.
                    envelopes = [device.clip(seconds=5.0, seed=run * 100_000 + i, captured=captured)
                                 for i in range(args.clips)]
                    rate, cpu_ms, db_bytes = run_config(broker, rabbit, store, url, data_dir, source, ingesters,
                                                        envelopes, device.topic)
                rates[config].append(rate)
                cpu[config].append(cpu_ms)
                print(f"run {run + 1}: {label(config)}: {rate:7.1f} clips/s, {cpu_ms:.2f} ms machine CPU per clip"
                      + (f", {db_bytes:.0f} database bytes per clip" if db_bytes else ""), flush=True)
    report(rates, cpu, args.clips, args.runs)


def label(config: Config) -> str:
    backend, source, ingesters = config
    return f"{backend:8s} {'Mosquitto' if source == 'mqtt' else 'RabbitMQ ':9s} x{ingesters}"


def report(rates: dict[Config, list[float]], cpu: dict[Config, list[float]], clips: int, runs: int) -> None:
    median = {c: statistics.median(r) for c, r in rates.items()}
    cpu_median = {c: statistics.median(r) for c, r in cpu.items()}
    print(f"\n{clips} clips of 5 s per configuration, {runs} alternating runs, real Mosquitto, RabbitMQ "
          "(MQTT plugin into a quorum queue) and PostgreSQL on loopback, 2 cores shared by all of them")
    for config, value in median.items():
        backend, source, _ = config
        one = median[(backend, source, 1)]
        scale = f"  scaling vs 1: {value / one:.2f}x" if backend == "postgres" else ""
        print(f"{label(config)}: {value:7.1f} clips/s (runs: {', '.join(f'{r:.0f}' for r in rates[config])}), "
              f"{cpu_median[config]:.2f} ms machine CPU per clip{scale}")
    print(f"PostgreSQL x1 / SQLite x1 (Mosquitto): "
          f"{median[('postgres', 'mqtt', 1)] / median[('sqlite', 'mqtt', 1)]:.2f}")

if __name__ == "__main__":
    main()
