"""Blobs in an S3-compatible object store (blob_store = "s3"), on a real S3 server (rclone's
serve s3): `init` checks the bucket in one line, an unreachable store pauses ingest (nothing
acked, nothing quarantined) and each waiting clip lands once when it is back, a clip is one
PUT and one GET, erasure deletes the owner's whole prefix, and the sweep and `check` account
for objects as for files. (Export, erasure, backup and restore, retention and the
completeness proof run on every blob store in test_export.py, test_backup_restore.py,
test_owner_inventory.py and test_ingest.py.)"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import erase_owner
from earmark.cloud.owner.export import ExportError, export_owner
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.database import StoreUnavailable
from earmark.cloud.store.s3blobs import S3Blobs
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import enrolled_device, tamper
from tests.support.s3 import S3Server

pytestmark = pytest.mark.parametrize("blob_store", ["s3"], indirect=True)
ROOT = Path(__file__).resolve().parents[2]


def test_a_clip_is_one_put_and_one_get_and_the_owner_id_is_in_every_key(
        store: Store, s3_server: S3Server, tmp_path: Path) -> None:
    assert isinstance(store.blobs, S3Blobs)
    store.blobs.settings = replace(store.blobs.settings, conditional_writes=True)  # as on AWS, R2, MinIO
    alice = enrolled_device(store, "Alice")
    store.blobs.requests.clear()
    outcomes = Ingestor(store).handle_batch([(alice.topic, alice.clip(b"ALICE-AUDIO", seed=n)) for n in range(5)])
    assert [o.status for o in outcomes] == ["stored"] * 5
    assert store.blobs.requests == {"PUT": 5}
    store.blobs.requests.clear()
    result = export_owner(store, alice.owner_id, tmp_path / "out")
    assert result.clips == 5 and store.blobs.requests.get("GET") == 5
    assert verify_export(store, result.path, alice.owner_id) == []
    objects = s3_server.objects(store.s3)  # type: ignore[arg-type]
    assert len(objects) == 5 and all(f"/blobs/{alice.owner_id}/" in str(p) for p in objects)
    assert not any(b"ALICE-AUDIO" in p.read_bytes() for p in objects)


def test_erasure_deletes_the_owners_prefix_and_nobody_elses(store: Store, s3_server: S3Server) -> None:
    alice, bob = enrolled_device(store, "Alice"), enrolled_device(store, "Bob")
    Ingestor(store).handle_batch([(alice.topic, alice.clip(seed=n)) for n in range(3)]
                                 + [(bob.topic, bob.clip(seed=10))])
    store.blobs.set_aside(f"blobs/{alice.owner_id}/{store.clips.of_owner(alice.owner_id)[0].clip_id}.bin")
    erase_owner(store, alice.owner_id)
    left = [str(p) for p in s3_server.objects(store.s3)]  # type: ignore[arg-type]
    assert not [k for k in left if alice.owner_id in k] and len([k for k in left if bob.owner_id in k]) == 1
    assert alice.owner_id not in store.blobs.owner_folders() and bob.owner_id in store.blobs.owner_folders()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # (PostgreSQL's grace: strays an hour old)
def test_the_sweep_and_check_account_for_objects(store: Store, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    ingest = Ingestor(store)
    kept, lost, crashed = (alice.clip(seed=n) for n in range(3))
    for envelope in (kept, lost):
        assert ingest.handle(alice.topic, envelope).status == "stored"
    header = decode_envelope(crashed).header  # a crash between the object's PUT and the row's commit
    store.clips.put(alice.owner_id, decode_envelope(crashed), crashed)
    tamper(store, "DELETE FROM clips WHERE clip_id = ?", (header.clip_id,))
    lost_id = decode_envelope(lost).header.clip_id  # an object lost behind the store's back
    store.blobs.remove(store.clips.blob_path(alice.owner_id, lost_id))
    store.blobs.write(f"blobs/{alice.owner_id}/stray.bin", b"not a blob")
    with pytest.raises(ExportError, match=lost_id):
        export_owner(store, alice.owner_id, tmp_path / "out")  # fails closed, naming the clip
    found = store.check(repair=True)
    assert (found.rows_without_blobs, found.blobs_without_rows) == (1, 2)
    assert found.swept is not None and (found.swept.reindexed, found.swept.set_aside) == (1, 1)
    assert store.blobs.exists(f"set-aside/blobs/{alice.owner_id}/stray.bin")
    assert export_owner(store, alice.owner_id, tmp_path / "again").clips == 2


def test_an_unreachable_object_store_pauses_ingest_and_each_waiting_clip_lands_once(
        store: Store, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    server = S3Server.start(tmp_path / "s3")  # a server of its own, to take away
    bucket = server.bucket()
    other = Store(store.data_dir, store.master_key_path, database_url=store.database_url, blob_store="s3", s3=bucket)
    try:
        ingest = Ingestor(other)
        first = alice.clip(seed=1)
        assert ingest.handle(alice.topic, first).status == "stored"
        server.stop()
        waiting = alice.clip(seed=2)
        with pytest.raises(StoreUnavailable, match="does not answer") as failed:
            ingest.handle(alice.topic, waiting)
        assert "\n" not in str(failed.value) and "earmarktestsecret" not in str(failed.value)
        assert other.quarantine.all() == [] and other.clips.count(alice.owner_id) == 1  # nothing acked or kept aside
        back = S3Server.start(tmp_path / "s3", port=server.port)
        try:
            assert ingest.handle(alice.topic, waiting).status == "stored"  # redelivered: stored once
            assert ingest.handle(alice.topic, waiting).status == "duplicate"
            assert other.clips.count(alice.owner_id) == 2
        finally:
            back.stop()
    finally:
        other.close()


def test_init_says_in_one_line_what_is_wrong_with_the_bucket(s3_server: S3Server, tmp_path: Path,
                                                           blob_store: str) -> None:
    def init(bucket: str) -> subprocess.CompletedProcess[str]:
        data = tmp_path / bucket
        data.mkdir()
        (data / "cloud.toml").write_text(f'blob_store = "s3"\n[s3]\nendpoint_url = "{s3_server.url}"\n'
                                         f'bucket = "{bucket}"\nregion = "us-east-1"\nconditional_writes = false\n')
        return subprocess.run([sys.executable, "-m", "earmark.cloud.cli", "init", "--data-dir", str(data)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    missing = init("no-such-bucket")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "cannot write in s3://no-such-bucket" in missing.stderr and "NoSuchBucket" in missing.stderr
    good = init(s3_server.bucket().bucket)
    assert good.returncode == 0, good.stderr
