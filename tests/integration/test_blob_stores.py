"""Blobs as rows of the database (blob_store = "database"): ingesters on different hosts,
each with a data dir of its own, share them through the database; the start-up sweep and
`check` account for them as for files. (Export, erasure, backup and restore, retention and the
completeness proof run on both blob stores in test_export.py, test_backup_restore.py and
test_owner_inventory.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.export import ExportError, export_owner
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import enrolled_device, tamper

pytestmark = pytest.mark.parametrize("blob_store", ["database"], indirect=True)


def test_hosts_with_data_dirs_of_their_own_share_the_blobs_through_the_database(
        store: Store, database_url: str, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    # Another host: its own data dir, the same database and the same keys.
    other = Store(tmp_path / "other-host", store.master_key_path, create=True, database_url=database_url,
                  blob_store="database") if database_url else None
    ingesting = other or store
    outcomes = Ingestor(ingesting).handle_batch([(alice.topic, alice.clip(b"ALICE-AUDIO", seed=n)) for n in range(3)])
    assert [o.status for o in outcomes] == ["stored"] * 3
    assert not [p for p in ingesting.data_dir.rglob("*.bin")]  # no blob file on the ingesting host
    result = export_owner(store, alice.owner_id, tmp_path / "out")
    assert result.clips == 3 and verify_export(store, result.path, alice.owner_id) == []
    sealed = tamper(store, "SELECT sealed FROM clip_blobs")
    assert len(sealed) == 3 and not any(b"ALICE-AUDIO" in bytes(s) for (s,) in sealed)
    if other:
        other.close()


def test_the_sweep_and_check_account_for_blob_rows(store: Store, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    ingest = Ingestor(store)
    kept, lost, crashed = (alice.clip(seed=n) for n in range(3))
    for envelope in (kept, lost):
        assert ingest.handle(alice.topic, envelope).status == "stored"
    # A crash between the blob's commit and the row's: the blob row waits for the sweep.
    header = decode_envelope(crashed).header
    store.clips.put(alice.owner_id, decode_envelope(crashed), crashed)
    tamper(store, "DELETE FROM clips WHERE clip_id = ?", (header.clip_id,))
    # A blob lost behind the store's back (a bad restore), and a row nothing accounts for.
    lost_id = decode_envelope(lost).header.clip_id
    tamper(store, "DELETE FROM clip_blobs WHERE path = ?", (store.clips.blob_path(alice.owner_id, lost_id),))
    store.blobs.write(f"blobs/{alice.owner_id}/stray.bin", b"not a blob")
    with pytest.raises(ExportError, match=lost_id):
        export_owner(store, alice.owner_id, tmp_path / "out")  # fails closed, naming the clip
    tamper(store, "UPDATE clip_blobs SET written_at = written_at - 7200")  # past PostgreSQL's grace period
    found = store.check(repair=True)
    assert (found.rows_without_blobs, found.blobs_without_rows) == (1, 2)
    assert found.swept is not None and (found.swept.reindexed, found.swept.set_aside) == (1, 1)
    assert [p for p, _ in store.blobs.files_under(f"set-aside/blobs/{alice.owner_id}")] == [
        f"set-aside/blobs/{alice.owner_id}/stray.bin"]
    result = export_owner(store, alice.owner_id, tmp_path / "out2")
    assert result.clips == 2 and verify_export(store, result.path, alice.owner_id) == []
    assert store.check().rows_without_blobs == 0 and store.check().blobs_without_rows == 0
