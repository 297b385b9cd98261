"""Benchmark: from the end of a recording to its receipt on the device, on loopback.

The real path: the device seals a clip and spools it (fsync), its Publisher sends it over
TLS with its own login to a Mosquitto running the generated config, the ingester process
verifies, encrypts and commits it, acks, and publishes the receipt; the time stops when the
Publisher has the receipt and has deleted the spooled copy. Clips are ~3 s of audio (96
KiB), one every 100 ms, wire v2. Prints p50, p95 and max (target p95 < 100 ms).
Usage: .venv/bin/python bench/sync_latency.py [--clips 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from earmark.device.listening.recorder import Recording  # noqa: E402
from earmark.device.sync.chain import Chain  # noqa: E402
from earmark.device.sync.identity import Sealer  # noqa: E402
from earmark.device.sync.publisher import Publisher  # noqa: E402
from earmark.device.sync.spool import Spool  # noqa: E402
from earmark.wire.receipt import Receipt  # noqa: E402
from tests.support.securecloud import SecureCloud  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cloud = SecureCloud(folder)
        cloud.start_broker()
        cloud.start_ingester()
        owner = cloud.store.registry.add_owner("Bench").owner_id
        device, password = cloud.add_device(owner, "bench-pi")
        spool = Spool(folder / "spool", 10**9)
        started: dict[str, float] = {}
        latencies: list[float] = []
        done = threading.Event()

        def on_receipt(receipt: Receipt) -> None:
            if receipt.clip_id in started and receipt.status in ("stored", "duplicate"):
                latencies.append(time.perf_counter() - started.pop(receipt.clip_id))
                if len(latencies) >= args.clips:
                    done.set()

        publisher = Publisher(cloud.device_broker(device.device_id, password), device.device_id, spool,
                              on_receipt=on_receipt)
        publisher.start()
        publisher.connected.wait(10)
        sealer = Sealer(device.device_id, owner, device.key, Chain(None))  # wire v2, as devices send
        rng = np.random.default_rng(0)
        warmup = 20
        try:
            for i in range(args.clips + warmup):
                audio = rng.integers(-3000, 3000, 16000 * 3).astype(np.int16)
                # The recording has just ended: seal, spool durably, tell the publisher.
                t0 = time.perf_counter()
                clip_id, envelope = sealer.seal(Recording(audio, 0, "button", None, None, "end_of_speech"),
                                                datetime.now(UTC))
                if i >= warmup:
                    started[clip_id] = t0
                spool.put(clip_id, envelope)
                sealer.spooled(envelope)
                publisher.notify()
                time.sleep(args.interval)
            done.wait(60)
        finally:
            publisher.stop()
            cloud.close()
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    print(f"{len(ms)} clips of 3 s (96 KiB), one every {args.interval * 1000:.0f} ms, TLS, loopback; "
          "end of recording -> receipt on the device")
    print(f"p50 {statistics.median(ms):.1f} ms   p95 {p95:.1f} ms   max {ms[-1]:.1f} ms   target p95 < 100 ms")


if __name__ == "__main__":
    main()
