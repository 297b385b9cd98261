"""Backups and erasure: a store restored from a backup taken before an erasure never yields
the erased owner again, and loses no clip that arrived after the backup. On both databases,
with blobs as files and as database rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import (
    apply_deletion_ledger,
    apply_erasure_ledger,
    delete_clips,
    delete_in_batches,
    erase_owner,
)
from earmark.cloud.owner.export import ExportError, export_owner
from earmark.cloud.owner.retention import purge_expired
from earmark.cloud.store.backup import backup, restore
from earmark.cloud.store.clips import ClipFilter
from earmark.cloud.store.crypto import CryptoError
from earmark.cloud.store.keys import OwnerError
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from earmark.wire.timestamps import format_utc
from tests.support.cloudkit import EVERY_BLOB_STORE, enrolled_device, reopen
from tests.support.pgdb import admin_url_for

pytestmark = EVERY_BLOB_STORE


def test_an_erasure_survives_a_restore_from_a_backup_taken_before_it(store: Store, database_url: str,
                                                                     tmp_path: Path) -> None:
    admin = admin_url_for(database_url) if database_url else ""
    alice, bob = enrolled_device(store, "Alice"), enrolled_device(store, "Bob")
    ingest = Ingestor(store)
    for n in range(2):
        assert ingest.handle(alice.topic, alice.clip(b"ALICE-AUDIO", seed=n)).status == "stored"
    assert ingest.handle(bob.topic, bob.clip(seed=10)).status == "stored"
    backup(store, tmp_path / "backup", admin)
    assert not list((tmp_path / "backup").rglob("master.key")) and not list((tmp_path / "backup").rglob("*.ledger"))

    erase_owner(store, alice.owner_id)
    late = bob.clip(seed=11)  # arrives after the backup
    assert ingest.handle(bob.topic, late).status == "stored"
    store.close()

    restore(store.data_dir, tmp_path / "backup", database_url, admin)
    restored = reopen(store)
    try:
        assert restored.registry.owner(alice.owner_id).erased_at is None  # type: ignore[union-attr]  # the old rows
        # Issue 24 case 4a: the backup, the current master key and the key folder as it is now
        # do not open the erased owner's wrapped key (her secret was shredded), nor her blobs.
        with pytest.raises(CryptoError):
            restored.keys.owner_key(alice.owner_id)
        [row, _] = restored.clips.of_owner(alice.owner_id)
        # (An object store's blobs are not in the backup: hers were deleted from the bucket.)
        with pytest.raises(FileNotFoundError if store.blob_store == "s3" else CryptoError):
            restored.clips.read(alice.owner_id, row)
        assert apply_erasure_ledger(restored) == [alice.owner_id]  # what opening the store for work does first
        with pytest.raises(OwnerError):
            restored.keys.owner_key(alice.owner_id)
        with pytest.raises(ExportError, match="erased"):
            export_owner(restored, alice.owner_id, tmp_path / "out")
        assert restored.clips.count(alice.owner_id) == 0
        assert alice.owner_id not in restored.blobs.owner_folders()
        assert restored.registry.device("alice-pi").revoked_at  # type: ignore[union-attr]
        assert apply_erasure_ledger(restored) == []  # done once, not again
        # Bob loses nothing: the clip that came after the backup is re-indexed from its blob.
        assert restored.sweep().reindexed == 1
        assert restored.clips.count(bob.owner_id) == 2
        assert export_owner(restored, bob.owner_id, tmp_path / "bob").clips == 2
    finally:
        restored.close()


def test_a_deleted_clip_stays_deleted_after_a_restore_from_a_backup_taken_before_it(
        store: Store, database_url: str, tmp_path: Path) -> None:
    """Issue 33 case 4: clips deleted one by one, in bulk, by date range and by retention
    after a backup do not come back when the backup is restored and the store reopened: not
    in the store, not in the owner's export, not by the sweep."""
    admin = admin_url_for(database_url) if database_url else ""
    alice = enrolled_device(store, "Alice")
    ingest = Ingestor(store)
    now = datetime.now(UTC)
    ages = [400, 0, 0, 0, 0, 0, 0]  # days; the first expires under a year's retention
    clips = [alice.clip(seed=n, captured=now - timedelta(days=age, minutes=n)) for n, age in enumerate(ages)]
    ids = [decode_envelope(c).header.clip_id for c in clips]
    assert [ingest.handle(alice.topic, c).status for c in clips] == ["stored"] * len(clips)
    backup(store, tmp_path / "backup", admin)

    kept = ids[6]
    assert delete_clips(store, alice.owner_id, [ids[1]]) == 1  # one, as the portal's delete button does
    assert delete_clips(store, alice.owner_id, ids[2:4]) == 2  # a bulk selection
    span = ClipFilter(since=format_utc(now - timedelta(minutes=5.5), places=3),
                      until=format_utc(now - timedelta(minutes=3.5), places=3))
    assert delete_in_batches(store, alice.owner_id, span, "clips_deleted", {"how": "range"}) == 2  # ids 4, 5
    assert purge_expired(store, 365) == 1  # ids 0
    assert [c.clip_id for c in store.clips.of_owner(alice.owner_id)] == [kept]
    store.close()

    restore(store.data_dir, tmp_path / "backup", database_url, admin)
    restored = reopen(store)
    try:
        assert restored.clips.count(alice.owner_id) == len(ids)  # the backup's rows, before the store is opened
        assert apply_deletion_ledger(restored) == len(ids) - 1  # what opening the store for work does
        restored.sweep()
        assert [c.clip_id for c in restored.clips.of_owner(alice.owner_id)] == [kept]
        assert not any(restored.blobs.exists(restored.clips.blob_path(alice.owner_id, c)) for c in ids[:6])
        result = export_owner(restored, alice.owner_id, tmp_path / "export")
        assert result.clips == 1
        assert apply_deletion_ledger(restored) == 0  # done once, not again
        # The same envelope arriving again (a device resending) is a duplicate, not a new clip.
        assert Ingestor(restored).handle(alice.topic, clips[1]).status == "duplicate"
        assert restored.clips.count(alice.owner_id) == 1
    finally:
        restored.close()
