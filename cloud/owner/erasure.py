"""Erasure: `earmark-cloud erase` and `clip delete`.

Erasing an owner destroys their data key first (crypto-shredding): from that commit on,
every sealed blob of theirs is unreadable, wherever a copy of it may be. Then their blobs
and clip rows are deleted, their devices revoked (and their broker logins removed), and a
tombstone stays: the owner row with erased_at set and no name, key or recipient, so a later
export can say the owner was erased, and the ingester refuses clips for them.

Before any of it, the erasure is written to the erasure ledger, outside the database
(store/ledger.py). Opening the store for work applies the ledger, so an erasure interrupted
by a crash completes, and a database restored from a backup taken before the erasure loses
the owner's key and data again before anything can read them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from earmark.cloud.broker import logins
from earmark.cloud.store.blobs import portal_export_dir
from earmark.cloud.store.clips import ClipFilter
from earmark.cloud.store.registry import RegistryError
from earmark.cloud.store.store import Store
from earmark.wire.timestamps import utc_now


@dataclass(frozen=True)
class Erasure:
    owner_id: str
    clips: int
    devices: list[str]
    erased_at: str


def erase_owner(store: Store, owner_id: str) -> Erasure:
    owner = store.registry.owner(owner_id)
    if owner is None:
        raise RegistryError(f"no owner {owner_id}")
    if owner.erased_at:  # again: every step is idempotent, so this completes one that was cut short
        return _erase(store, owner_id, owner.erased_at)
    erased_at = utc_now()
    store.erasures.record(owner_id, erased_at)  # 0. outside the database first: survives a restore, or a crash
    return _erase(store, owner_id, erased_at)


def _erase(store: Store, owner_id: str, erased_at: str) -> Erasure:
    """Every step of an erasure; each is idempotent, so an interrupted one completes."""
    owner = store.registry.owner(owner_id)
    if owner is not None and not owner.erased_at:
        store.registry.destroy_owner_key(owner_id)  # 1. everything sealed with it is now noise
    store.keys.shred_owner(owner_id)  # (again: a copy of the key folder put back since)
    clips = store.clips.delete_all(owner_id)  # 2. blobs, then rows
    devices = [d.device_id for d in store.registry.devices(owner_id)]
    for device in store.registry.devices(owner_id):  # 3. their devices can no longer record for anyone
        if not device.revoked_at:
            store.registry.revoke_device(device.device_id)
        logins.revoke_login(store, device.device_id)  # (the caller brings the broker in step: broker.control)
    quarantined = store.quarantine.purge_owner(owner_id, devices)  # 4. nothing of theirs stays refused-but-kept
    store.portal.forget(owner_id)  # 5. no passkey, session or invite link opens their page
    store.presence.forget(owner_id)  # 6. nor is anything kept about their devices' connections
    shutil.rmtree(portal_export_dir(store.data_dir, owner_id), ignore_errors=True)  # 7. an export the portal prepared
    # 8. what they did and when, and from where: only the record of the erasure remains
    store.audit.record_erasure(owner_id, devices, {"clips": clips, "devices": len(devices), "quarantined": quarantined})
    store.db.scrub()  # 9. nor in the database's own files: its write-ahead log held their rows as written
    return Erasure(owner_id, clips, devices, erased_at)


def apply_erasure_ledger(store: Store) -> list[str]:
    """Make every erasure in the ledger true of this store again: after a restore from a backup
    taken before it, or a crash part-way through it. Run whenever the store is opened for work.
    Returns the owners whose erasure had to be (re)applied."""
    applied = []
    kept = store.keys.secrets.owners()
    for entry in store.erasures.entries():
        owner = store.registry.owner(entry.owner_id)
        if owner is None:
            continue  # not in this database (restored from before the owner was added)
        unrevoked = [d for d in store.registry.devices(entry.owner_id) if not d.revoked_at]
        if (owner.erased_at and not unrevoked and store.clips.count(entry.owner_id) == 0
                and entry.owner_id not in kept):
            continue
        _erase(store, entry.owner_id, entry.erased_at)
        applied.append(entry.owner_id)
    return applied


def apply_deletion_ledger(store: Store) -> int:
    """Delete again every clip the deletion ledger holds that this database still has (after
    a restore from a backup taken before the deletion, or a crash part-way through it); only
    the entries after the database's own mark are looked at. Run whenever the store is opened
    for work. Returns how many clips were deleted again."""
    erased = {entry.owner_id for entry in store.erasures.entries()}
    entries = [e for e in store.deletions.entries(after=store.clips.deletions_applied()) if e.owner_id not in erased]
    return store.clips.redelete(entries)


DELETE_BATCH = 500  # clips per delete transaction


def delete_in_batches(store: Store, owner_id: str, chosen: ClipFilter, event: str,
                      detail: dict[str, object]) -> int:
    """Every clip of the owner's that `chosen` picks, deleted in bounded batches through the
    owner's (owner_id, captured_at) index, each batch one deletion with one `event`: the work
    and each transaction scale with what is deleted, not with the store. Returns how many."""
    total = 0
    while rows := store.clips.chosen(owner_id, chosen, DELETE_BATCH):
        store.clips.delete(owner_id, rows, event, detail)
        total += len(rows)
    return total


def delete_clips(store: Store, owner_id: str, clip_ids: list[str]) -> int:
    """The owner's own choice of their clips (ids of anyone else's are no clips of theirs and
    are passed over), deleted as a single one is: rows, deletion records, one audit event."""
    rows = [row for row in (store.clips.get(owner_id, c) for c in dict.fromkeys(clip_ids)) if row is not None]
    for start in range(0, len(rows), DELETE_BATCH):
        store.clips.delete(owner_id, rows[start:start + DELETE_BATCH], "clips_deleted", {"how": "selected"})
    return len(rows)


def delete_chosen(store: Store, owner_id: str, chosen: ClipFilter) -> int:
    """Every clip of the owner's that `chosen` picks (a date range, a device, or all of them:
    the account stays), in bounded batches, each recorded like any deletion."""
    return delete_in_batches(store, owner_id, chosen, "clips_deleted", {
        "how": "range" if chosen.narrows else "all", "since": chosen.since or None, "until": chosen.until or None,
        "device": chosen.device or None})


def delete_clip(store: Store, owner_id: str, clip_id: str) -> str:
    """Delete one clip of the owner's; returns the device that made it (to be told)."""
    row = store.clips.get(owner_id, clip_id)
    if row is None:
        raise RegistryError(f"owner {owner_id} has no clip {clip_id}")
    store.clips.delete(owner_id, [row], "clip_deleted")
    return row.device_id
