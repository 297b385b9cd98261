"""Retention: `earmark-cloud purge` deletes every clip captured longer ago than the
configured number of days, owner by owner, each in that owner's scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from earmark.cloud.store.store import Store
from earmark.wire.timestamps import format_utc

PURGE_BATCH = 500  # clips per delete transaction


def purge_expired(store: Store, retention_days: int) -> int:
    """Delete every clip captured more than `retention_days` ago; returns how many."""
    if retention_days <= 0:
        return 0
    return purge_before(store, format_utc(datetime.now(UTC) - timedelta(days=retention_days), places=3),
                        retention_days)


def purge_before(store: Store, cutoff: str, retention_days: int) -> int:
    """Every owner's clips captured before `cutoff`. An owner with nothing expired costs one
    probe of the clips index, so the purge's work follows what expired, not the store's size."""
    return sum(purge_owner(store, owner.owner_id, cutoff, retention_days) for owner in store.registry.owners())


def purge_owner(store: Store, owner_id: str, cutoff: str, retention_days: int) -> int:
    """One owner's clips captured before `cutoff`, deleted in bounded batches through the
    owner's (owner_id, captured_at) index: the work and each transaction scale with what
    expired, not with the store or the owner's whole history."""
    total = 0
    while expired := store.clips.older_than(owner_id, cutoff, PURGE_BATCH):
        store.clips.delete(owner_id, expired, "clips_purged", {"retention_days": retention_days})
        total += len(expired)
    return total
