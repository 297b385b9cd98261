"""Benchmark: exporting one owner's 1,700 clips.

1. Throughput: MB/s of audio for the full export (owner-scoped query, decrypt, re-verify
   each signature and binding, hash, stream into the zip, fsync, rename) against zipping the
   same WAV bytes as plain files (ZIP_STORED, fsync) in the same run.
2. Isolation cost: the same owner exported from a store with 10 owners and from one with
   1,000 owners (every other owner with clips of their own), alternating runs; prints both
   times and the ratio (target <= 1.25).
Usage: .venv/bin/python bench/export_bench.py [--clips 1700] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earmark.cloud.ingest.ingestor import Ingestor  # noqa: E402
from earmark.cloud.owner.export import export_owner  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from earmark.wire.envelope import decode_envelope  # noqa: E402
from tests.support.cloudkit import SimDevice, make_store  # noqa: E402


def build_store(folder: Path, owners: int, target_clips: int, other_clips: int) -> tuple[Store, str]:
    store = make_store(folder)
    ingestor = Ingestor(store)
    target = store.registry.add_owner("Target").owner_id
    device = SimDevice("target-pi", target)
    store.registry.add_device(target, device.public_key, device.device_id)
    batch: list[tuple[str, bytes]] = []

    def flush() -> None:
        if batch:
            ingestor.handle_batch(batch)
            batch.clear()

    for i in range(target_clips):
        batch.append((device.topic, device.clip(seed=i, seconds=1.0)))
        if len(batch) == 64:
            flush()
    for n in range(owners - 1):
        owner = store.registry.add_owner(f"Other {n}").owner_id
        other = SimDevice(f"other-{n}", owner)
        store.registry.add_device(owner, other.public_key, other.device_id)
        for i in range(other_clips):
            batch.append((other.topic, other.clip(seed=10_000 + n * 100 + i, seconds=0.25)))
            if len(batch) == 64:
                flush()
    flush()
    return store, target


def plain_zip(wavs: list[bytes], out: Path) -> None:
    with open(out, "wb") as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            for i, wav in enumerate(wavs):
                zf.writestr(f"clips/{i:05d}.wav", wav)
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1700)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache" if (ROOT / ".cache").is_dir() else None) as tmp:
        folder = Path(tmp)
        t = time.monotonic()
        small, small_owner = build_store(folder / "ten", 10, args.clips, 20)
        large, large_owner = build_store(folder / "thousand", 1000, args.clips, 5)
        print(f"built stores in {time.monotonic() - t:.0f} s: {small.counts()['clips']} clips / 10 owners, "
              f"{large.counts()['clips']} clips / 1000 owners")
        wavs = [decode_envelope(small.clips.read(small_owner, row)).audio for row in small.clips.of_owner(small_owner)]
        audio_mb = sum(len(w) for w in wavs) / 1e6
        times: dict[str, list[float]] = {"plain": [], "ten": [], "thousand": []}
        for run in range(args.runs):
            start = time.perf_counter()
            plain_zip(wavs, folder / f"plain-{run}.zip")
            times["plain"].append(time.perf_counter() - start)
            for name, store, owner in (("ten", small, small_owner), ("thousand", large, large_owner)):
                start = time.perf_counter()
                result = export_owner(store, owner, folder / f"out-{name}-{run}")
                times[name].append(time.perf_counter() - start)
                assert result.clips == args.clips
        med = {k: statistics.median(v) for k, v in times.items()}
        ratios = [b / a for a, b in zip(times["ten"], times["thousand"], strict=True)]
    print(f"{args.clips} clips, {audio_mb:.1f} MB of audio; {args.runs} alternating runs")
    print(f"plain zip of the same WAVs:  {audio_mb / med['plain']:7.1f} MB/s  ({med['plain']:.2f} s)")
    print(f"earmark export (10 owners):  {audio_mb / med['ten']:7.1f} MB/s  ({med['ten']:.2f} s)  "
          f"= {med['plain'] / med['ten']:.2f} of plain zip speed")
    print(f"earmark export (1000 owners): {audio_mb / med['thousand']:6.1f} MB/s  ({med['thousand']:.2f} s)")
    print(f"1000-owner / 10-owner time: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target <= 1.25")


if __name__ == "__main__":
    main()
