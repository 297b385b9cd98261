"""Retention: `earmark-cloud purge` deletes every clip captured longer ago than the
configured number of days, or than the owner's own auto-delete where it is shorter (the
portal: 3 or 18 months), owner by owner, each in that owner's scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from earmark.cloud.owner.erasure import delete_in_batches
from earmark.cloud.store.clips import ClipFilter
from earmark.cloud.store.store import Store
from earmark.wire.timestamps import format_utc

OWNER_CHOICES = {0: "the service's retention", 90: "3 months", 540: "18 months"}  # the portal's auto-delete


def effective_days(service_days: int, own_days: int | None) -> int:
    """How long an owner's clips are kept: the shorter of the service's retention and the
    owner's own choice (0: kept until deleted)."""
    chosen = [d for d in (service_days, own_days or 0) if d > 0]
    return min(chosen) if chosen else 0


def purge_expired(store: Store, retention_days: int, purged: list[str] | None = None) -> int:
    """Delete every clip captured longer ago than its owner's retention (`retention_days`, the
    service's; an owner's own auto-delete where shorter); returns how many, and appends to
    `purged` each owner some were deleted of. An owner with nothing expired costs one probe
    of the clips index, so the purge's work follows what expired, not the store's size."""
    now, total = datetime.now(UTC), 0
    for owner in store.registry.owners():
        days = effective_days(retention_days, store.registry.retention(owner.owner_id))
        if days and (count := purge_owner(store, owner.owner_id, format_utc(now - timedelta(days=days), places=3),
                                          days)):
            total += count
            if purged is not None:
                purged.append(owner.owner_id)
    return total


def purge_owner(store: Store, owner_id: str, cutoff: str, retention_days: int) -> int:
    """One owner's clips captured before `cutoff` (erasure.py: delete_in_batches)."""
    return delete_in_batches(store, owner_id, ClipFilter(until=cutoff), "clips_purged",
                             {"retention_days": retention_days})
