"""The owner's clips come from an index range scan on both backends (no scan of other
owners' rows; on SQLite in index order, with no sort): what keeps export and purge flat in
the store's size (issue 16). The plans are the databases' own, on a store with 40 owners'
clips in it."""

from __future__ import annotations

import sqlite3

import psycopg

from earmark.cloud.store.store import Store
from tests.support.cloudkit import enrolled_device, tamper
from tests.support.pgdb import admin_url_for

EXPORT_PAGE = ("SELECT * FROM clips WHERE owner_id = %(p)s AND (captured_at, clip_id) > (%(p)s, %(p)s) "
               "ORDER BY captured_at, clip_id LIMIT 500")
PURGE_BATCH = ("SELECT * FROM clips WHERE owner_id = %(p)s AND captured_at < %(p)s "
               "ORDER BY captured_at, clip_id LIMIT 500")


PG_FILL = ("INSERT INTO clips SELECT 'c-' || %s::text || '-' || g::text, %s, %s, "
           "to_char(timestamp '2026-01-01' + g * interval '1 minute', 'YYYY-MM-DD\"T\"HH24:MI:SS.000\"Z\"'), "
           "1000, 'button', NULL, NULL, 'x', 100, 'blobs/x', '2026-01-01T00:00:00.000000Z', g "
           "FROM generate_series(1, %s) g")
SQLITE_FILL = ("WITH RECURSIVE g(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM g WHERE value < ?) "
               "INSERT INTO clips SELECT 'c-' || ? || '-' || value, ?, ?, "
               "strftime('%Y-%m-%dT%H:%M:%S.000Z', '2026-01-01', '+' || value || ' minutes'), "
               "1000, 'button', NULL, NULL, 'x', 100, 'blobs/x', '2026-01-01T00:00:00.000000Z', value FROM g")


def fill(store: Store, owners: int = 40, clips_each: int = 250) -> str:
    """Metadata rows for many owners (no blobs: plans do not read them); returns one owner."""
    devices = [enrolled_device(store, f"Owner{i}") for i in range(owners)]
    for n, device in enumerate(devices):
        if store.database_url:
            tamper(store, PG_FILL, (n, device.owner_id, device.device_id, clips_each))
        else:
            tamper(store, SQLITE_FILL, (clips_each, n, device.owner_id, device.device_id))
    return devices[0].owner_id


def test_owner_queries_are_index_range_scans_in_index_order(store: Store) -> None:
    owner = fill(store)
    for query in (EXPORT_PAGE, PURGE_BATCH):
        if store.database_url:
            with psycopg.connect(admin_url_for(store.database_url), autocommit=True) as conn:
                conn.execute("ANALYZE clips")
                sql = query.replace("%(p)s", f"'{owner}'", 1).replace("%(p)s", "'2026-06-01'")
                plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql))
            # Only the owner's range of the index is read (a bitmap or plain index scan; a sort,
            # when the planner picks one, is over that owner's rows alone), never the table.
            assert "Index Scan on clips_by_owner" in plan or "Index Scan using clips_by_owner" in plan, plan
            assert f"owner_id = '{owner}'" in plan and "Seq Scan" not in plan, plan
        else:
            db = sqlite3.connect(store.data_dir / "earmark.db")
            db.execute("ANALYZE")
            plan = "\n".join(str(r[-1]) for r in db.execute(
                "EXPLAIN QUERY PLAN " + query.replace("%(p)s", "?"),
                (owner, "2026-06-01", "") if query is EXPORT_PAGE else (owner, "2026-06-01")))
            db.close()
            assert "SEARCH clips USING INDEX clips_by_owner_time (owner_id=?" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the order
