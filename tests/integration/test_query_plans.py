"""The owner's clips come from the index alone on both backends: a range of the covering
(owner_id, captured_at, clip_id, …) index, in index order, reading no table page and no
other owner's entries. That is what keeps export and purge flat in the store's size
(issue 16). The plans are the databases' own for the store's own queries, asked the way
the store asks them (on PostgreSQL as the service role, inside the owner's scope), on a
store holding 40 owners' clips."""

from __future__ import annotations

import psycopg
import pytest

from earmark.cloud.store.clips import OWNER_CHOSEN, OWNER_PAGE, ClipFilter
from earmark.cloud.store.store import Store
from tests.support.cloudkit import enrolled_device, tamper
from tests.support.pgdb import admin_url_for

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
    if store.database_url:  # what autovacuum does on a live server: statistics, and the visibility map
        with psycopg.connect(admin_url_for(store.database_url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE clips")
    else:
        tamper(store, "ANALYZE")
    return devices[0].owner_id


EXPIRED_WHERE, EXPIRED_PARAMS = ClipFilter(until="2026-01-02").sql()  # what purge asks, a batch at a time


@pytest.mark.parametrize(("query", "params"), [(OWNER_PAGE, {"at": "", "clip_id": "", "limit": 500}),
                                               (OWNER_CHOSEN.format(where=EXPIRED_WHERE),
                                                {**EXPIRED_PARAMS, "limit": 500})],
                         ids=["export page", "purge batch"])
def test_an_owners_clips_come_from_the_index_alone(store: Store, query: str, params: dict[str, object]) -> None:
    owner = fill(store)
    if store.database_url:
        rows = store.db.query("EXPLAIN " + query, {"owner_id": owner, **params}, owner=owner)
        plan = "\n".join(str(r["QUERY PLAN"]) for r in rows)
        assert "Index Only Scan using clips_by_owner_time on clips" in plan, plan
        assert f"Index Cond: ((owner_id = '{owner}'::text) AND (" in plan, plan
        assert "One-Time Filter: (current_setting('earmark.owner_id'" in plan, plan  # row-level security, once
        assert "Sort" not in plan and "Seq Scan" not in plan and "Heap" not in plan, plan
    else:
        rows = store.db.query("EXPLAIN QUERY PLAN " + query, {"owner_id": owner, **params}, owner=owner)
        plan = "\n".join(str(r["detail"]) for r in rows)
        assert "SEARCH clips USING COVERING INDEX clips_by_owner_time (owner_id=?" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the order
