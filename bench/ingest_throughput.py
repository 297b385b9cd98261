"""Benchmark: ingest throughput through a real Mosquitto, against a plain paho subscriber.

For each run, N signed 5-second clips (~160 KB each; sealed to the household's key, as paired
devices send them, or with --plain as a household without a key gets them) are queued in the broker for a
consumer whose persistent session is offline; then the consumer starts in a fresh process
and is timed from its connect to its N-th message handled:

  baseline  a plain paho-mqtt subscriber (QoS 1, automatic acks) that discards each message
  ingester  the real IngestService: parse, verify, bind owner, durable blob (files, database
            rows or S3 objects) and SQLite commit, audit event, ack, receipt

Runs alternate (baseline, ingester, ...); it prints clips/s for both, their ratio (goal
>= 0.5) and the ingester's CPU ms per clip (goal <= 0.7), also by thread.
Usage: .venv/bin/python bench/ingest_throughput.py [--clips 300] [--blob-store files|database|s3]
With EARMARK_BENCH_PROFILE=1 (and `pip install yappi`), each ingester run prints yappi's CPU
profile of all its threads to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.s3 import S3Server  # noqa: E402

GROUP = "bench"


def session_properties() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    return props


def consumer_client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def fresh_session(port: int, client_id: str, topic: str | None) -> None:
    """Start the consumer's session anew: subscribed to `topic` and kept while it is offline
    (so messages queue for it), or, with no topic, gone (so nothing queues for it)."""
    client = consumer_client(client_id)
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()
    props = session_properties()
    if topic is None:
        props.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    if topic is not None:
        client.subscribe(topic, qos=1)
        done.wait(10)
    client.disconnect()
    client.loop_stop()


def publish_all(port: int, topic: str, envelopes: list[bytes]) -> None:
    client = consumer_client("bench-publisher")
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, e, qos=1) for e in envelopes]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each of this process's live threads (the scheduler's nanoseconds, not
    /proc's 10 ms ticks, which a dozen threads would round away), by the kind of thread (its
    Python name up to the first "-" or "_": the MQTT network thread, the main loop, the
    committer, the object-store writers)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            on_cpu_ns = int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue  # ended meanwhile
        kind = names.get(int(task.name), "other").replace("_", "-").split("-")[0]
        out[kind] = out.get(kind, 0.0) + on_cpu_ns / 1e9
    return out


def child_baseline(port: int, count: int) -> dict[str, float]:
    seen = 0
    connected, finished = threading.Event(), threading.Event()
    marks: dict[str, float] = {}

    def on_connect(*_: object) -> None:
        times = os.times()
        marks["t0"], marks["user0"], marks["sys0"] = time.monotonic(), times.user, times.system
        connected.set()

    def on_message(*_: object) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            times = os.times()
            marks["t1"], marks["user1"], marks["sys1"] = time.monotonic(), times.user, times.system
            finished.set()

    client = consumer_client("bench-baseline")
    client.on_connect, client.on_message = on_connect, on_message
    client.connect("127.0.0.1", port, clean_start=False, properties=session_properties())
    client.loop_start()
    finished.wait(600)
    client.disconnect()
    client.loop_stop()
    sys_s = marks["sys1"] - marks["sys0"]
    return {"seconds": marks["t1"] - marks["t0"], "cpu_s": marks["user1"] - marks["user0"] + sys_s, "sys_s": sys_s}


def child_ingester(port: int, count: int, data_dir: Path, owner_id: str,
                   store_flags: dict[str, object]) -> dict[str, float]:
    from earmark.cloud.ingest.ingestor import Ingestor
    from earmark.cloud.ingest.metrics import Metrics
    from earmark.cloud.ingest.mqtt_source import IngestService
    from earmark.cloud.settings import load_settings
    from earmark.cloud.store.store import Store

    settings = load_settings(None, data_dir, {"broker.url": f"mqtt://127.0.0.1:{port}", **store_flags})
    settings = type(settings)(**{**settings.__dict__, "broker": type(settings.broker)(
        **{**settings.broker.__dict__, "client_id": "bench-ingester", "share_group": GROUP})})
    store = Store.open(settings)
    metrics = Metrics()
    service = IngestService(settings, Ingestor(store), metrics)
    stop = threading.Event()
    profile = os.environ.get("EARMARK_BENCH_PROFILE")  # yappi's CPU profile of every thread, to stderr
    if profile:
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    service.connected.wait(30)
    t0, times0, threads0 = time.monotonic(), os.times(), thread_cpu()
    # The ingester's own count of clips stored, acked and answered, read from its counter's
    # value alone: asking the store, or collecting the whole registry (get_sample_value) every
    # 5 ms, would put the bench's own work into the ingester's CPU figure.
    stored = metrics.clips.labels(status="stored")
    while stored._value.get() < count:
        time.sleep(0.005)
    t1, times1, threads1 = time.monotonic(), os.times(), thread_cpu()
    stop.set()
    runner.join()
    if profile:
        yappi.stop()
        yappi.get_thread_stats().print_all(out=sys.stderr)
        yappi.get_func_stats().sort("tsub").print_all(out=sys.stderr, columns={
            0: ("name", 90), 1: ("ncall", 8), 2: ("tsub", 8), 3: ("ttot", 8), 4: ("tavg", 8)})
    requests = dict(getattr(store.blobs, "requests", {}))  # an object store's, by kind
    return {"seconds": t1 - t0, "cpu_s": (times1.user - times0.user) + (times1.system - times0.system),
            "sys_s": times1.system - times0.system, "puts": requests.get("PUT", 0),
            "other_requests": sum(n for kind, n in requests.items() if kind != "PUT"),
            **{f"thread:{kind}": cpu - threads0.get(kind, 0.0) for kind, cpu in threads1.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="wire v2 clips of a household without a key, "
                                                             "instead of v3 clips sealed to its key")
    parser.add_argument("--blob-store", choices=("files", "database", "s3"), default="files",
                        help="where the ingester puts the blobs (s3: a real S3 server, rclone serve s3, on loopback)")
    parser.add_argument("--conditional-writes", action="store_true",
                        help="s3: one PUT per clip with If-None-Match, as on AWS, R2, MinIO and Ceph (this server "
                             "ignores the condition, which no clip of the bench needs: the cost is what is measured); "
                             "without it, a HEAD before each PUT, as for a server that ignores it")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        if spec["mode"] == "baseline":
            result = child_baseline(spec["port"], spec["count"])
        else:
            result = child_ingester(spec["port"], spec["count"], Path(spec["data_dir"]), spec["owner_id"],
                                    spec["store_flags"])
        print(json.dumps(result))
        return

    from earmark.cloud.settings import default_master_key_path
    from tests.support.cloudkit import SimDevice, make_store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Mosquitto(folder / "broker").start()
        s3 = S3Server.start(folder / "s3") if args.blob_store == "s3" else None
        template = folder / "template"
        store = make_store(template, blob_store=args.blob_store, s3=s3.bucket() if s3 else None)
        owner = store.registry.add_owner("Bench")
        device = SimDevice("bench-pi", owner.owner_id)
        store.registry.add_device(owner.owner_id, device.public_key, device.device_id)
        sealed_to: tuple[str, ...] = ()
        if not args.plain:  # as paired devices send: the audio sealed to the household's key
            sealed_to = ("age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q",)
            store.registry.set_recipient(owner.owner_id, sealed_to[0])
        store.close()
        size = len(device.clip(seconds=5.0, sealed_to=sealed_to))
        subscriptions = {"baseline": ("bench-baseline", "earmark/v1/clips/+"),
                         "ingester": ("bench-ingester", f"$share/{GROUP}/earmark/v1/clips/+")}
        results: dict[str, list[dict[str, float]]] = {"baseline": [], "ingester": []}
        try:
            for run in range(args.runs):
                for mode in ("baseline", "ingester"):
                    envelopes = [device.clip(seconds=5.0, seed=run * 100_000 + i, sealed_to=sealed_to)
                                 for i in range(args.clips)]
                    spec: dict[str, object] = {"mode": mode, "port": broker.port, "count": args.clips,
                                               "owner_id": owner.owner_id}
                    if mode == "ingester":
                        flags: dict[str, object] = {"blob_store": args.blob_store}
                        if s3 is not None:  # a fresh bucket per run, as the store is fresh
                            bucket = s3.bucket()
                            flags |= {"s3.endpoint_url": bucket.endpoint_url, "s3.bucket": bucket.bucket,
                                      "s3.region": bucket.region, "s3.conditional_writes": args.conditional_writes}
                        spec["store_flags"] = flags
                        data_dir = folder / f"store-{run}"
                        shutil.copytree(template, data_dir)
                        shutil.copytree(default_master_key_path(template).parent,
                                        default_master_key_path(data_dir).parent)
                        spec["data_dir"] = str(data_dir)
                    for other, (client_id, topic) in subscriptions.items():
                        fresh_session(broker.port, client_id, topic if other == mode else None)
                    publish_all(broker.port, device.topic, envelopes)
                    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                         stdout=subprocess.PIPE, text=True, check=True)
                    results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            broker.stop()
            if s3 is not None:
                s3.stop()

    def rate(r: dict[str, float]) -> float:
        return args.clips / r["seconds"]

    base = statistics.median(rate(r) for r in results["baseline"])
    ing = statistics.median(rate(r) for r in results["ingester"])
    cpu = {m: statistics.median(r["cpu_s"] for r in rs) * 1000 / args.clips for m, rs in results.items()}
    sys_cpu = {m: statistics.median(r["sys_s"] for r in rs) * 1000 / args.clips for m, rs in results.items()}
    kinds = sorted({k for r in results["ingester"] for k in r if k.startswith("thread:")})
    by_thread = {k[7:]: statistics.median(r.get(k, 0.0) for r in results["ingester"]) * 1000 / args.clips
                 for k in kinds}
    ratios = [rate(i) / rate(b) for b, i in zip(results["baseline"], results["ingester"], strict=True)]
    print(f"{args.clips} {'plain' if args.plain else 'sealed'} clips of 5 s ({size / 1024:.0f} KiB each) per run, "
          f"{args.runs} alternating runs, fresh consumer process per run, real Mosquitto on loopback, "
          f"blob store: {args.blob_store}")
    print(f"plain paho subscriber (discard): {base:8.1f} clips/s   CPU {cpu['baseline']:.2f} ms/clip "
          f"(of which kernel {sys_cpu['baseline']:.2f})")
    print(f"earmark ingester (full path):    {ing:8.1f} clips/s   CPU {cpu['ingester']:.2f} ms/clip "
          f"(of which kernel {sys_cpu['ingester']:.2f})")
    print("  by thread (ms/clip): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(by_thread.items(),
                                                                             key=lambda kv: -kv[1])))
    print(f"ratio ingester/baseline: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); goal >= 0.5")
    if args.blob_store == "s3":
        runs = results["ingester"]
        heads = ("none: conditional PUTs, as on AWS, R2, MinIO" if args.conditional_writes else
                 "HEADs: a server that ignores If-None-Match; none on AWS, R2, MinIO (--conditional-writes)")
        print(f"object-store requests per clip: {sum(r['puts'] for r in runs) / (args.clips * len(runs)):.2f} PUT, "
              f"{sum(r['other_requests'] for r in runs) / (args.clips * len(runs)):.2f} other ({heads}); "
              "the S3 server's own CPU is not in the figure")


if __name__ == "__main__":
    main()
