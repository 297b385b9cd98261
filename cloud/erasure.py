"""Erasure and retention: `earmark-cloud erase`, `clip delete` and `purge`.

Erasing an owner destroys their data key first (crypto-shredding): from that commit on,
every sealed blob of theirs is unreadable, wherever a copy of it may be. Then their blobs
and clip rows are deleted, their devices revoked (and their broker logins removed), and a
tombstone stays: the owner row with erased_at set and no name, key or recipient, so a later
export can say the owner was erased, and the ingester refuses clips for them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloud.db import utc_now
from cloud.registry import RegistryError
from cloud.store import Store


@dataclass(frozen=True)
class Erasure:
    owner_id: str
    clips: int
    devices: list[str]
    erased_at: str


def erase_owner(store: Store, owner_id: str) -> Erasure:
    from cloud import broker

    owner = store.registry.owner(owner_id)
    if owner is None:
        raise RegistryError(f"no owner {owner_id}")
    if owner.erased_at:
        raise RegistryError(f"owner {owner_id} was already erased on {owner.erased_at}")
    now = utc_now()
    with store.write() as cur:  # 1. the key goes first: everything sealed with it is now noise
        cur.scope(owner_id)
        cur.execute("UPDATE owners SET wrapped_key = NULL, erased_at = ?, display_name = '', age_recipient = NULL "
                    "WHERE owner_id = ?", (now, owner_id))
        store.audit.append(cur, "owner_key_destroyed", owner_id=owner_id)
    store.forget_owner_key(owner_id)
    shutil.rmtree(store.data_dir / "blobs" / owner_id, ignore_errors=True)  # 2. blobs, then rows
    with store.write() as cur:
        cur.scope(owner_id)
        clips = cur.execute("DELETE FROM clips WHERE owner_id = ?", (owner_id,)).rowcount
        store.audit.append(cur, "owner_clips_deleted", owner_id=owner_id, detail={"clips": clips})
    devices = [d.device_id for d in store.registry.devices(owner_id)]
    for device_id in devices:  # 3. their devices can no longer record for anyone
        store.registry.revoke_device(device_id)
        broker.revoke_login(store, device_id)
    with store.write() as cur:
        store.audit.append(cur, "owner_erased", owner_id=owner_id, detail={"clips": clips, "devices": devices})
    return Erasure(owner_id, clips, devices, now)


def delete_clip(store: Store, owner_id: str, clip_id: str) -> None:
    rows = [r for r in store.clips.iter_owner(owner_id) if r.clip_id == clip_id]
    if not rows:
        raise RegistryError(f"owner {owner_id} has no clip {clip_id}")
    _delete(store, owner_id, [rows[0].clip_id], [rows[0].blob_path], "clip_deleted")


def purge_expired(store: Store, retention_days: int) -> int:
    """Delete every clip captured more than `retention_days` ago, owner by owner."""
    if retention_days <= 0:
        return 0
    cutoff = (datetime.now(UTC) - timedelta(days=retention_days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    total = 0
    for owner in store.registry.owners():
        expired = [r for r in store.clips.iter_owner(owner.owner_id) if r.captured_at < cutoff[:23] + "Z"]
        if expired:
            _delete(store, owner.owner_id, [r.clip_id for r in expired], [r.blob_path for r in expired],
                    "clips_purged", {"retention_days": retention_days})
            total += len(expired)
    return total


def _delete(store: Store, owner_id: str, clip_ids: list[str], blob_paths: list[str], event: str,
            detail: dict[str, object] | None = None) -> None:
    with store.write() as cur:  # rows first: a crash after this leaves only blobs, which sweep removes
        cur.scope(owner_id)
        for clip_id in clip_ids:
            cur.execute("DELETE FROM clips WHERE owner_id = ? AND clip_id = ?", (owner_id, clip_id))
        store.audit.append(cur, event, owner_id=owner_id, clip_id=clip_ids[0] if len(clip_ids) == 1 else None,
                           detail={"clips": len(clip_ids), **(detail or {})})
    for path in blob_paths:
        (store.data_dir / path).unlink(missing_ok=True)
