"""Retention: `earmark-cloud purge` deletes every clip captured longer ago than the
configured number of days, owner by owner, each in that owner's scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from earmark.cloud.store.store import Store
from earmark.wire.timestamps import format_utc


def purge_expired(store: Store, retention_days: int) -> int:
    """Delete every clip captured more than `retention_days` ago; returns how many."""
    if retention_days <= 0:
        return 0
    cutoff = format_utc(datetime.now(UTC) - timedelta(days=retention_days), places=3)
    total = 0
    for owner in store.registry.owners():
        expired = [r for r in store.clips.iter_owner(owner.owner_id) if r.captured_at < cutoff]
        if expired:
            store.clips.delete(owner.owner_id, expired, "clips_purged", {"retention_days": retention_days})
            total += len(expired)
    return total
