"""Erasure that leaves nothing (issue 24, cases 3, 4b and 7; 4a is in test_backup_restore):
an export the portal prepared goes with its owner, whichever process erases them; a
quarantined copy of an erased owner's payload neither opens nor stays, also after a crash
between its blob and its row; and the audit log keeps the record of the erasure, not the
owner's sign-in addresses, devices, clips and times. On both backends."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import erase_owner
from earmark.cloud.portal.exports import build
from earmark.cloud.portal.state import PortalState
from earmark.cloud.settings import PortalSettings
from earmark.cloud.store.crypto import CryptoError
from earmark.cloud.store.quarantine import QuarantineRow
from earmark.cloud.store.store import Store
from tests.support.cloudkit import SimDevice, enrolled_device, make_store, reopen, tamper


def with_clips(store: Store, name: str, count: int) -> SimDevice:
    device = enrolled_device(store, name)
    outcomes = Ingestor(store).handle_batch([(device.topic, device.clip(seed=n, seconds=0.25)) for n in range(count)])
    assert {o.status for o in outcomes} == {"stored"}
    return device


def prepared(state: PortalState, owner_id: str) -> Path:
    job = state.exports.start(owner_id, lambda job: build(state, owner_id, job), 0)
    deadline = time.monotonic() + 60
    while job.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.path is not None and job.path.is_file(), job.error
    return job.path


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_erase_in_another_process_removes_the_export_the_portal_prepared(store: Store) -> None:
    """Case 3: the zip of four recordings stayed on disk, unencrypted, after `erase`."""
    alice, bob = with_clips(store, "Alice", 4), with_clips(store, "Bob", 1)
    state = PortalState(store, replace(PortalSettings(), public_url="http://localhost:8"))
    try:
        alices, bobs = prepared(state, alice.owner_id), prepared(state, bob.owner_id)
        other = reopen(store)  # `earmark-cloud erase` is another process, with a Store of its own
        try:
            erase_owner(other, alice.owner_id)
        finally:
            other.close()
        assert not alices.exists()
        assert files_under(store.data_dir / "portal-exports") == [bobs]  # Bob's waits for him
        assert state.exports.get(alice.owner_id) is None  # and the portal forgets Alice's link
        assert state.exports.get(bob.owner_id) is not None
    finally:
        state.exports.close()
    assert files_under(store.data_dir / "portal-exports") == []


def quarantined(store: Store, device: SimDevice, payload: bytes) -> tuple[QuarantineRow, bytes]:
    """A refused payload from the device, kept: (its row, its sealed blob as a backup has it)."""
    qid, new = store.quarantine.put(device.topic, "malformed", "test", payload, device_id=device.device_id)
    row = store.quarantine.get(qid or "")
    assert new and row is not None and store.quarantine.payload(row) == payload
    return row, (store.data_dir / row.blob_path).read_bytes()


def test_a_quarantined_copy_of_an_erased_owners_payload_neither_opens_nor_stays(store: Store) -> None:
    """Case 4b: sealed under the quarantine key alone, which erasure keeps, a copy opened
    after the erasure; one whose row went and whose blob a crash left was set aside by the
    sweep, not deleted, and a second `erase` did not remove it."""
    alice, bob = enrolled_device(store, "Alice"), enrolled_device(store, "Bob")
    kept, sealed = quarantined(store, alice, b"ALICE-SAID-THIS" * 20)
    crashed, _ = quarantined(store, alice, b"ALICE-SAID-THAT" * 20)
    bobs, _ = quarantined(store, bob, b"BOB-SAID-THIS" * 20)

    # An erasure cut short after the row of one item went and before its blob did:
    tamper(store, "DELETE FROM quarantine WHERE quarantine_id = ?", (crashed.quarantine_id,))
    erase_owner(store, alice.owner_id)
    erase_owner(store, alice.owner_id)  # and again, as a person would after the crash
    swept = store.sweep()
    assert (store.data_dir / kept.blob_path).exists() is False
    assert (store.data_dir / crashed.blob_path).exists() is False
    assert swept.set_aside == 0 and files_under(store.data_dir / "set-aside") == []
    assert [q.quarantine_id for q in store.quarantine.all()] == [bobs.quarantine_id]

    # A copy of the sealed blob (a backup of the blob folder) with the master key and the key folder:
    (store.data_dir / kept.blob_path).write_bytes(sealed)
    with pytest.raises(CryptoError):
        store.quarantine.payload(kept)
    assert store.quarantine.payload(bobs) == b"BOB-SAID-THIS" * 20  # Bob's still opens


def audit_rows(store: Store) -> list[dict[str, object]]:
    names = ("seq", "at", "event", "owner_id", "device_id", "clip_id", "detail")
    return [dict(zip(names, row, strict=True))
            for row in tamper(store, f"SELECT {', '.join(names)} FROM audit ORDER BY seq")]


def test_after_an_erasure_the_audit_log_keeps_only_the_record_of_it(store: Store) -> None:
    """Case 7: 20 rows stayed, e.g. portal_signed_in {"client": "198.51.100.77"}."""
    alice, bob = with_clips(store, "Alice", 3), with_clips(store, "Bob", 2)
    for owner, client in ((alice.owner_id, "198.51.100.77"), (bob.owner_id, "203.0.113.9")):
        store.audit.record("portal_signed_in", owner_id=owner, detail={"client": client})
    store.quarantine.put(alice.topic, "malformed", "test", b"junk", device_id=alice.device_id)
    store.accounts.put(alice.device_id, "device", "$7$hash")  # a broker login: an event of no owner
    alice_clips = [c.clip_id for c in store.clips.of_owner(alice.owner_id)]
    before = audit_rows(store)
    bobs_before = [r for r in before if r["owner_id"] == bob.owner_id or bob.device_id in json.dumps(r)]

    erase_owner(store, alice.owner_id)

    after = audit_rows(store)
    assert [r["seq"] for r in after[:len(before)]] == [r["seq"] for r in before]  # nothing removed
    text = json.dumps([r for r in after if r["event"] != "owner_erased"])
    for trace in ("198.51.100.77", alice.device_id, alice.topic, *alice_clips):
        assert trace not in text, trace
    alices = [r for r in after if r["owner_id"] == alice.owner_id]
    assert len(alices) >= 6 and {r["event"] for r in alices} == {"redacted", "owner_erased"}
    [record] = [r for r in alices if r["event"] == "owner_erased"]
    assert json.loads(str(record["detail"])) == {"clips": 3, "devices": 1, "quarantined": 1}
    assert all(r["at"] == "" and r["detail"] == "" for r in alices if r["event"] == "redacted")
    assert [r for r in after if r["seq"] in {b["seq"] for b in bobs_before}] == bobs_before  # Bob's untouched
    assert store.audit.verify() == []  # the chain still holds, redacted events by their links
    erase_owner(store, alice.owner_id)  # again: nothing more to do, one record
    assert [r["event"] for r in audit_rows(store)].count("owner_erased") == 1

    # Redacting someone who was not erased is tampering, and verify says so.
    [bobs_sign_in] = [r["seq"] for r in after if r["owner_id"] == bob.owner_id and r["event"] == "portal_signed_in"]
    tamper(store, "UPDATE audit SET event = 'redacted', detail = '' WHERE seq = ?", (bobs_sign_in,))
    assert [p.seq for p in store.audit.verify()] == [bobs_sign_in]


def test_the_stores_files_and_an_encrypted_export_are_the_users_alone_whatever_the_umask(
        tmp_path: Path) -> None:
    """Case 13: without systemd's UMask, earmark.db, its -wal and -shm and audit.head were
    0644, and so were age-encrypted exports (plain zips were 0600)."""
    import os
    import stat

    from pyrage import x25519

    from earmark.cloud.owner.export import export_owner
    from tests.support.cloudkit import make_store

    old = os.umask(0o022)
    try:
        store = make_store(tmp_path / "cloud")
        alice = with_clips(store, "Alice", 1)
        store.registry.set_recipient(alice.owner_id, str(x25519.Identity.generate().to_public()))
        exported = export_owner(store, alice.owner_id, tmp_path / "out").path
        files = [store.data_dir / name for name in ("earmark.db", "earmark.db-wal", "earmark.db-shm", "audit.head")]
        assert all(f.exists() for f in files)
        for file in [*files, exported]:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        store.close()
        for file in files[:3]:  # a store made before this, opened again, is put right
            if file.exists():
                file.chmod(0o644)
        reopen(store).close()
        assert {stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()} == {0o600}
    finally:
        os.umask(old)


def test_an_erased_owners_name_and_recipient_are_gone_from_the_database_files_while_it_is_open(
        tmp_path: Path) -> None:
    """Issue 33 case 6: right after erase_owner returns, with the store still open (as a
    running portal or ingester holds it), neither the owner's name nor their age recipient is
    in any of SQLite's files: not the database, not its write-ahead log. (SQLite's own files:
    PostgreSQL's dead rows and WAL are VACUUM's, deploy/SCALING.md.)"""
    store = make_store(tmp_path / "cloud")
    name = "Zebulon Quixotic-Marchbanks"
    owner = store.registry.add_owner(name).owner_id
    recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
    store.registry.set_recipient(owner, recipient)
    with_clips(store, "Other", 1)  # someone else keeps writing to the same files
    files = [store.data_dir / "earmark.db", store.data_dir / "earmark.db-wal"]
    assert any(name.encode() in f.read_bytes() for f in files if f.exists())  # the check can see it

    erase_owner(store, owner)
    for path in files:
        data = path.read_bytes() if path.exists() else b""
        assert name.encode() not in data, path.name
        assert recipient.encode() not in data, path.name
    store.close()
