"""Benchmark: one page of the owners' portal's recordings list against how many the owner has.

For each backend and owner size, the owner's clips are rows in the store (what the list
reads; no blob is opened for it), among 10,000 rows of another owner. Two ways to get a
page of 25, newest first, are timed in the same run: the baseline reads all of the owner's
rows and slices the page out (what the portal did first), the keyset page
(`Clips.page`) reads 25 rows backwards along the owner's index, from the newest or from
the middle; and everything the page asks the store (the page, its marks, and the owner's
total, a count that still reads the owner's whole index range). Prints the median of
--runs per size and the ratio to the baseline.

Usage: .venv/bin/python bench/portal_page.py [--sizes 100,10000,100000] [--backends sqlite,postgres] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.scale_store import PG_FILL, SQLITE_FILL, database  # noqa: E402
from earmark.cloud.store.clips import ClipRow  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from tests.support.cloudkit import enrolled_device, make_store, tamper  # noqa: E402
from tests.support.pgdb import admin_url_for  # noqa: E402

PAGE = 25
OTHERS = 10_000


def fill(store: Store, round_: int, owner_id: str, device_id: str, count: int) -> None:
    if store.database_url:
        tamper(store, PG_FILL, (round_, 0, owner_id, device_id, round_, count))
    else:
        tamper(store, SQLITE_FILL, (count, round_, 0, owner_id, device_id, round_))


def median_ms(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(backend: str, size: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(backend) as url:
        store = make_store(Path(tmp) / "cloud", url)
        owner, other = enrolled_device(store, "Owner"), enrolled_device(store, "Other")
        fill(store, 0, owner.owner_id, owner.device_id, size)
        fill(store, 1, other.owner_id, other.device_id, OTHERS)
        if url:
            with psycopg.connect(admin_url_for(url), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        else:
            tamper(store, "ANALYZE")
        middle = list(store.clips.iter_owner(owner.owner_id))[size // 2]

        def baseline() -> list[ClipRow]:
            rows = list(store.clips.iter_owner(owner.owner_id))
            rows.reverse()
            return rows[:PAGE]

        assert [c.clip_id for c in baseline()] == [c.clip_id for c in store.clips.page(owner.owner_id, None, PAGE)]
        base = median_ms(baseline, runs)
        first = median_ms(lambda: store.clips.page(owner.owner_id, None, PAGE), runs)
        deep = median_ms(lambda: store.clips.page(owner.owner_id, (middle.captured_at, middle.clip_id), PAGE), runs)

        def served() -> object:  # what the page handler asks the store: the page, its marks, the total
            shown = store.clips.page(owner.owner_id, None, PAGE + 1)
            return store.clips.marks(owner.owner_id, [c.clip_id for c in shown]), store.clips.count(owner.owner_id)

        whole = median_ms(served, runs)
        print(f"  {backend:<9} {size:>7,} clips: read all and slice {base:8.2f} ms; keyset page "
              f"{first:6.2f} ms (x{first / base:.4f}), from the middle {deep:6.2f} ms (x{deep / base:.4f}); "
              f"with its marks and the owner's total {whole:6.2f} ms (x{whole / base:.4f})", flush=True)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"a page of {PAGE} of the owner's recordings, newest first; median of {args.runs} runs")
    for backend in args.backends.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            measure(backend, size, args.runs)


if __name__ == "__main__":
    main()
