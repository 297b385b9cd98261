"""Benchmark: one owner's export and purge time as the store grows to 1M clips, on SQLite and
PostgreSQL.

For each store size (default 1k, 100k and 1M clips) and backend, a fresh store holds the
measured owner's --clips real clips (signed by a registered device, ingested the normal way,
blobs on disk) and, beside them, other owners' clips as metadata rows only (their blobs are
never read by this owner's export or purge, so small stores of rows stand in for them; 100
owners). Then it times, alternating sizes within each run:

  export  the measured owner's full export (owner-scoped index scan, decrypt, re-verify,
          zip, fsync): `export_owner`
  purge   deleting half of the measured owner's clips as expired (`purge_owner`: bounded
          batches through the owner's index), once per size, after the exports

and prints medians and each size's ratio to the smallest (target <= 1.1 at 1M).
Usage: .venv/bin/python bench/export_scale.py [--sizes 1000,100000,1000000] [--clips 500] [--runs 3]
       [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earmark.cloud.ingest.ingestor import Ingestor  # noqa: E402
from earmark.cloud.owner.export import export_owner  # noqa: E402
from earmark.cloud.owner.retention import purge_owner  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from earmark.wire.timestamps import format_utc  # noqa: E402
from tests.support.cloudkit import SimDevice, enrolled_device, make_store, reopen, tamper  # noqa: E402
from tests.support.pgdb import temporary_database  # noqa: E402

OTHER_OWNERS = 100
PG_FILL = ("INSERT INTO clips SELECT 'o' || %s::text || '-' || g::text, %s, %s, "
           "to_char(timestamp '2025-01-01' + g * interval '1 minute', 'YYYY-MM-DD\"T\"HH24:MI:SS.000\"Z\"'), "
           "1000, 'button', NULL, NULL, 'x', 100, 'blobs/x', '2026-01-01T00:00:00.000000Z', g "
           "FROM generate_series(1, %s) g")
SQLITE_FILL = ("WITH RECURSIVE g(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM g WHERE value < ?) "
               "INSERT INTO clips SELECT 'o' || ? || '-' || value, ?, ?, "
               "strftime('%Y-%m-%dT%H:%M:%S.000Z', '2025-01-01', '+' || value || ' minutes'), "
               "1000, 'button', NULL, NULL, 'x', 100, 'blobs/x', '2026-01-01T00:00:00.000000Z', value FROM g")


def build(folder: Path, database_url: str, size: int, clips: int) -> tuple[Store, str]:
    """A store of `size` clips: the measured owner's `clips` real ones, the rest other owners' rows."""
    store = make_store(folder, database_url)
    device: SimDevice = enrolled_device(store, "Measured")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    envelopes = [device.clip(seconds=1.0, seed=i, captured=start + timedelta(minutes=i)) for i in range(clips)]
    ingestor = Ingestor(store)
    for i in range(0, clips, 64):
        ingestor.handle_batch([(device.topic, e) for e in envelopes[i:i + 64]])
    others = [enrolled_device(store, f"Other{n}") for n in range(OTHER_OWNERS)]
    each = max(0, size - clips) // OTHER_OWNERS
    for n, other in enumerate(others):
        if each:
            if database_url:
                tamper(store, PG_FILL, (n, other.owner_id, other.device_id, each))
            else:
                tamper(store, SQLITE_FILL, (each, n, other.owner_id, other.device_id))
    if database_url:
        tamper(store, "ANALYZE")
    return store, device.owner_id


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cutoff = format_utc(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=args.clips // 2), places=3)
    print(f"measured owner: {args.clips} real 1 s clips; other clips: metadata rows of {OTHER_OWNERS} owners; "
          f"median of {args.runs} alternating runs")
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            stores: dict[int, tuple[Store, str]] = {}
            for size in sizes:
                url = stack.enter_context(temporary_database()) if backend == "postgres" else ""
                started = time.perf_counter()
                stores[size] = build(Path(tmp) / f"s{size}", url, size, args.clips)
                print(f"  {backend}: built the {size:,}-clip store in {time.perf_counter() - started:.0f} s",
                      flush=True)
            exports: dict[int, list[float]] = {s: [] for s in sizes}
            purges: dict[int, list[float]] = {s: [] for s in sizes}
            for run in range(args.runs):
                for size in sizes:
                    store, owner = stores[size]
                    out = Path(tmp) / f"out-{size}-{run}"
                    exports[size].append(timed(lambda store=store, owner=owner, out=out:
                                               export_owner(store, owner, out)))
                    shutil.rmtree(out)
            for size in sizes:  # purge last: it changes the store (half the owner's clips, once per size)
                store, owner = stores[size]
                purges[size].append(timed(lambda store=store, owner=owner: purge_owner(store, owner, cutoff, 1)))
                check = reopen(store)
                assert check.clips.count(owner) == args.clips - args.clips // 2
                check.close()
            for store, _ in stores.values():
                store.close()
        base_e, base_p = statistics.median(exports[sizes[0]]), statistics.median(purges[sizes[0]])
        for size in sizes:
            e, p = statistics.median(exports[size]), statistics.median(purges[size])
            print(f"{backend:<9} {size:>9,} clips: export {e:6.2f} s (x{e / base_e:.2f})   "
                  f"purge of {args.clips // 2} {p:6.3f} s (x{p / base_p:.2f})")


if __name__ == "__main__":
    main()
