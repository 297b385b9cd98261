"""Benchmark: what one owner's export costs, against plain zip and against the store's size.

1. Speed: MB/s of audio for a full export of one owner's --speed-clips clips (owner-scoped
   index scan, decrypt, re-verify each signature and binding, stream into the zip, fsync,
   rename) against zipping the same WAV bytes as plain files (ZIP_STORED, fsync), in
   alternating runs. Target: at least 0.3 of plain zip's speed.
2. Scale: the same owner's export (--clips real clips) from stores of --sizes clips on each
   backend (bench/scale_store.py builds them), alternating sizes within each run; prints the
   median time and its ratio to the smallest store. Target: at most 1.1 at 1M.

Usage: .venv/bin/python bench/export_bench.py [--speed-clips 1700] [--clips 500]
       [--sizes 1000,100000,1000000] [--backends sqlite,postgres] [--runs 3] [--skip-speed] [--skip-scale]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale_store import build, database  # noqa: E402
from earmark.cloud.owner.export import export_owner  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from earmark.wire.envelope import decode_envelope  # noqa: E402


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def plain_zip(wavs: list[bytes], out: Path) -> None:
    with open(out, "wb") as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            for i, wav in enumerate(wavs):
                zf.writestr(f"clips/{i:05d}.wav", wav)
        f.flush()
        os.fsync(f.fileno())


def speed(folder: Path, clips: int, runs: int) -> None:
    store, owner = build(folder / "speed", "", clips, clips)
    wavs = [bytes(decode_envelope(store.clips.read(owner, row)).audio) for row in store.clips.of_owner(owner)]
    audio_mb = sum(len(w) for w in wavs) / 1e6
    times: dict[str, list[float]] = {"plain": [], "export": []}
    for run in range(runs):
        times["plain"].append(timed(lambda run=run: plain_zip(wavs, folder / f"plain-{run}.zip")))
        times["export"].append(timed(lambda run=run: export_owner(store, owner, folder / f"out-{run}")))
    store.close()
    plain, export = statistics.median(times["plain"]), statistics.median(times["export"])
    print(f"speed: {clips} clips, {audio_mb:.1f} MB of audio, median of {runs} alternating runs")
    print(f"  plain zip of the same WAVs: {audio_mb / plain:7.1f} MB/s ({plain:.2f} s)")
    print(f"  earmark export:             {audio_mb / export:7.1f} MB/s ({export:.2f} s) "
          f"= {plain / export:.2f} of plain zip speed (target >= 0.3)", flush=True)


def scale(folder: Path, clips: int, sizes: list[int], backends: list[str], runs: int) -> None:
    print(f"scale: the measured owner's {clips} clips in stores of {', '.join(f'{s:,}' for s in sizes)} clips; "
          f"median of {runs} alternating runs", flush=True)
    for backend in backends:
        with ExitStack() as stack:
            stores: dict[int, tuple[Store, str]] = {}
            for size in sizes:
                url = stack.enter_context(database(backend))
                started = time.perf_counter()
                stores[size] = build(folder / f"{backend}-{size}", url, size, clips)
                stack.callback(stores[size][0].close)
                print(f"  {backend}: built the {size:,}-clip store in {time.perf_counter() - started:.0f} s",
                      flush=True)
            exports: dict[int, list[float]] = {s: [] for s in sizes}
            for run in range(runs):
                for size, (store, owner) in stores.items():
                    out = folder / f"out-{backend}-{size}-{run}"
                    exports[size].append(timed(lambda s=store, o=owner, out=out: export_owner(s, o, out)))
                    shutil.rmtree(out)
            base = statistics.median(exports[sizes[0]])
            for size in sizes:
                median = statistics.median(exports[size])
                print(f"  {backend:<9} {max(size, clips):>9,} clips: export {median:6.3f} s (x{median / base:.2f}; "
                      f"runs {', '.join(f'{t:.3f}' for t in exports[size])})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed-clips", type=int, default=1700)
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache" if (ROOT / ".cache").is_dir() else None) as tmp:
        if not args.skip_speed:
            speed(Path(tmp), args.speed_clips, args.runs)
        if not args.skip_scale:
            scale(Path(tmp), args.clips, [int(s) for s in args.sizes.split(",")], args.backends.split(","), args.runs)


if __name__ == "__main__":
    main()
