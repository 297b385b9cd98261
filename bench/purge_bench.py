"""Benchmark: the retention purge against the store's size.

For each backend and store size (bench/scale_store.py builds them: the measured owner's
--clips real clips among other owners' rows, all captured later than the measured owner's),
the store-wide purge runs with a cutoff halfway through the measured owner's clips: that
owner's older half is deleted (bounded batches through the owner's part of the clips index,
each batch one transaction with its deletion record), and every other owner has nothing
expired. Each store is built afresh for each run, since a purge changes it. Prints the
median time per size and its ratio to the smallest store. Target: at most 1.1 at 1M.

Usage: .venv/bin/python bench/purge_bench.py [--clips 500] [--sizes 1000,100000,1000000]
       [--backends sqlite,postgres] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale_store import START, build, database  # noqa: E402
from earmark.cloud.owner.retention import purge_before  # noqa: E402
from earmark.wire.timestamps import format_utc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cutoff = format_utc(START + timedelta(minutes=args.clips // 2), places=3)
    print(f"purge of the measured owner's older {args.clips // 2} of {args.clips} clips; median of {args.runs} runs")
    for backend in args.backends.split(","):
        times: dict[int, list[float]] = {s: [] for s in sizes}
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.runs):
                for size in sizes:
                    with database(backend) as url:
                        store, owner = build(Path(tmp) / f"{size}-{run}", url, size, args.clips)
                        started = time.perf_counter()
                        purged = purge_before(store, cutoff, 30)
                        times[size].append(time.perf_counter() - started)
                        assert purged == args.clips // 2 and store.clips.count(owner) == args.clips - purged
                        store.close()
        base = statistics.median(times[sizes[0]])
        for size in sizes:
            median = statistics.median(times[size])
            print(f"  {backend:<9} {max(size, args.clips):>9,} clips: purge {median:6.3f} s (x{median / base:.2f}; "
                  f"runs {', '.join(f'{t:.3f}' for t in times[size])})", flush=True)


if __name__ == "__main__":
    main()
