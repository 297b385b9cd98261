"""Stores of a given size for the scale benchmarks (export_bench.py, purge_bench.py).

A store of `size` clips on SQLite or PostgreSQL holds one measured owner's `clips` real
clips (1 s each, signed by a registered device, ingested the normal way, blobs on disk) and
other owners' clips as metadata rows only: their blobs are never read by the measured
owner's export or purge, so rows stand in for them. The measured owner's clips arrive in
ten rounds between other owners' rows, so they are spread through the table as a real
owner's are after months of use, not stored side by side. Finally the database is analysed
and (PostgreSQL) vacuumed, as autovacuum would have done on a live server.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from earmark.cloud.ingest.ingestor import Ingestor  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from tests.support.cloudkit import SimDevice, enrolled_device, make_store, tamper  # noqa: E402
from tests.support.pgdb import admin_url_for, temporary_database  # noqa: E402

OTHER_OWNERS = 100
ROUNDS = 10
START = datetime(2026, 1, 1, tzinfo=UTC)  # the measured owner's first capture; one clip a minute
# Other owners' rows are captured from 2026-06-01 on: after the measured owner's clips, so a
# purge with a cutoff among the measured owner's clips finds nothing else expired.
PG_FILL = ("INSERT INTO clips SELECT 'o' || %s::text || '-' || %s::text || '-' || g::text, %s, %s, "
           "to_char(timestamp '2026-06-01' + (%s * 100000 + g) * interval '1 minute', "
           "'YYYY-MM-DD\"T\"HH24:MI:SS.000\"Z\"'), "
           "1000, 'button', NULL, NULL, 'x', 100, 'blobs/x', '2026-01-01T00:00:00.000000Z', g "
           "FROM generate_series(1, %s) g")
SQLITE_FILL = ("WITH RECURSIVE g(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM g WHERE value < ?) "
               "INSERT INTO clips SELECT 'o' || ? || '-' || ? || '-' || value, ?, ?, "
               "strftime('%Y-%m-%dT%H:%M:%S.000Z', '2026-06-01', '+' || (? * 100000 + value) || ' minutes'), "
               "1000, 'button', NULL, NULL, 'x', 100, 'blobs/x', '2026-01-01T00:00:00.000000Z', value FROM g")


def database(backend: str) -> AbstractContextManager[str]:
    """The database URL for a store on `backend` ("" for SQLite), dropped afterwards."""
    return temporary_database() if backend == "postgres" else nullcontext("")


def build(folder: Path, database_url: str, size: int, clips: int) -> tuple[Store, str]:
    """A store of `size` clips (see the module docstring); returns it and the measured owner."""
    store = make_store(folder, database_url)
    device: SimDevice = enrolled_device(store, "Measured")
    others = [enrolled_device(store, f"Other{n}") for n in range(OTHER_OWNERS)]
    envelopes = [device.clip(seconds=1.0, seed=i, captured=START + timedelta(minutes=i)) for i in range(clips)]
    each = max(0, size - clips) // (OTHER_OWNERS * ROUNDS)
    ingestor = Ingestor(store)
    for round_ in range(ROUNDS):
        share = envelopes[round_ * clips // ROUNDS:(round_ + 1) * clips // ROUNDS]
        for i in range(0, len(share), 64):
            ingestor.handle_batch([(device.topic, e) for e in share[i:i + 64]])
        for n, other in enumerate(others):
            if not each:
                break
            if database_url:
                tamper(store, PG_FILL, (round_, n, other.owner_id, other.device_id, round_, each))
            else:
                tamper(store, SQLITE_FILL, (each, round_, n, other.owner_id, other.device_id, round_))
    if database_url:
        with psycopg.connect(admin_url_for(database_url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    else:
        tamper(store, "ANALYZE")
    return store, device.owner_id
