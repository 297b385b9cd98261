"""Export and erasure against adversaries, on SQLite and on PostgreSQL under the service
role, with blobs as files and as database rows: many owners, tampered rows and blobs,
rebinding, edited archives. An export holds all of its owner's clips and nothing of anyone
else's, or it does not exist."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import delete_clip, erase_owner
from earmark.cloud.owner.export import ExportError, export_owner
from earmark.cloud.owner.retention import purge_expired
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.database import StoreError
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import EVERY_BLOB_STORE, SimDevice, enrolled_device, reopen, tamper

pytestmark = EVERY_BLOB_STORE


def owner_with_device(store: Store, name: str) -> tuple[str, SimDevice]:
    device = enrolled_device(store, name)
    return device.owner_id, device


def ingest(store: Store, device: SimDevice, count: int, canary: bytes = b"", start: int = 0) -> list[str]:
    envelopes = [device.clip(canary=canary, seed=start + i, seconds=0.25) for i in range(count)]
    outcomes = Ingestor(store).handle_batch([(device.topic, e) for e in envelopes])
    assert {o.status for o in outcomes} == {"stored"}
    return [decode_envelope(e).header.clip_id for e in envelopes]


def archive_clip_ids(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        return {c["clip_id"] for c in json.loads(zf.read("manifest.json"))["clips"]}


def no_leftovers(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def test_twenty_owners_each_get_exactly_their_own_clips(store: Store, tmp_path: Path) -> None:
    owners = {}
    for n in range(20):
        owner, device = owner_with_device(store, f"Owner{n:02d}")
        canary = f"CANARY-{n:02d}-{owner[:8]}".encode()
        owners[owner] = (canary, set(ingest(store, device, 1 + n % 4, canary, start=n * 10)))
    archives = {o: export_owner(store, o, tmp_path / "out").path for o in owners}
    for owner, path in archives.items():
        assert archive_clip_ids(path) == owners[owner][1]
        assert verify_export(store, path, owner) == []
        data = path.read_bytes()
        assert owners[owner][0] in data
        for other, (canary, _) in owners.items():
            if other != owner:
                assert canary not in data, f"{other}'s audio is in {owner}'s archive"
    ids = [archive_clip_ids(p) for p in archives.values()]
    assert sum(len(i) for i in ids) == len(set().union(*ids))  # pairwise disjoint
    assert sum(e["event"] == "export_completed" for e in store.audit.events(500)) == 20


@pytest.fixture
def alice_bob(store: Store) -> tuple[tuple[str, SimDevice, list[str]], tuple[str, SimDevice, list[str]]]:
    alice, a = owner_with_device(store, "Alice")
    bob, b = owner_with_device(store, "Bob")
    return (alice, a, ingest(store, a, 3, b"ALICE-AUDIO")), (bob, b, ingest(store, b, 3, b"BOB-AUDIO", start=50))


def assert_aborts(store: Store, owner: str, out: Path, clip_id: str, check: str) -> None:
    with pytest.raises(ExportError) as caught:
        export_owner(store, owner, out)
    assert caught.value.clip_id == clip_id and caught.value.check == check
    assert clip_id in str(caught.value)
    assert no_leftovers(out), "an aborted export left files behind"
    event = store.audit.events()[0]
    assert event["event"] == "export_aborted" and json.loads(event["detail"])["clip_id"] == clip_id
    others = [o.owner_id for o in store.registry.owners() if o.owner_id != owner]
    leaked = [o for o in others if o in str(caught.value) or o in event["detail"]]
    assert leaked == [], "an export's error or audit event named another owner"


def test_a_row_relabelled_to_another_owner_aborts_that_owners_export(
        store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (_alice, _, a_ids), (bob, _, _) = alice_bob
    tamper(store, "UPDATE clips SET owner_id = ? WHERE clip_id = ?", (bob, a_ids[0]))
    assert_aborts(store, bob, tmp_path / "out", a_ids[0], "blob_prefix")


def test_a_blob_copied_under_another_owners_clip_aborts(store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (alice, _, a_ids), (bob, _, b_ids) = alice_bob
    store.blobs.write(store.clips.blob_path(bob, b_ids[1]), store.blobs.read(store.clips.blob_path(alice, a_ids[0])))
    assert_aborts(store, bob, tmp_path / "out", b_ids[1], "blob_key")


def test_a_row_pointing_at_another_owners_blob_aborts(store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (alice, _, a_ids), (bob, _, b_ids) = alice_bob
    tamper(store, "UPDATE clips SET blob_path = ? WHERE clip_id = ?",
           (store.clips.blob_path(alice, a_ids[0]), b_ids[0]))
    assert_aborts(store, bob, tmp_path / "out", b_ids[0], "blob_prefix")
    tamper(store, "UPDATE clips SET blob_path = ? WHERE clip_id = ?",
           (f"blobs/{bob}/../{alice}/{a_ids[0]}.bin", b_ids[0]))
    assert_aborts(store, bob, tmp_path / "out", b_ids[0], "blob_prefix")


def test_a_row_whose_hash_was_edited_aborts(store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (alice, _, a_ids), _ = alice_bob
    tamper(store, "UPDATE clips SET envelope_sha256 = ? WHERE clip_id = ?", ("0" * 64, a_ids[2]))
    assert_aborts(store, alice, tmp_path / "out", a_ids[2], "hash")


def test_a_device_moved_by_an_older_earmark_keeps_its_earlier_clips_in_their_owners_export(
        store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (alice, a, a_ids), (bob, _, b_ids) = alice_bob
    # What `device rebind` used to do (it no longer exists): close Alice's binding, open Bob's.
    moved_at = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    tamper(store, "UPDATE bindings SET unbound_at = ? WHERE device_id = ?", (moved_at, a.device_id))
    tamper(store, "INSERT INTO bindings VALUES (?, ?, ?, NULL)", (a.device_id, bob, moved_at))
    later = SimDevice(a.device_id, bob, a.key).clip(seed=99, captured=datetime.now(UTC) + timedelta(seconds=2))
    assert Ingestor(store).handle(a.topic, later).reason == "rebound_device"  # one key, one owner
    alice_archive = export_owner(store, alice, tmp_path / "a").path
    bob_archive = export_owner(store, bob, tmp_path / "b").path
    assert archive_clip_ids(alice_archive) == set(a_ids) and archive_clip_ids(bob_archive) == set(b_ids)
    assert b"ALICE-AUDIO" not in bob_archive.read_bytes()
    assert verify_export(store, alice_archive, alice) == [] and verify_export(store, bob_archive, bob) == []
    # A row moved to Bob whose clip was captured while the device was Alice's is refused:
    tamper(store, "UPDATE clips SET owner_id = ?, blob_path = ? WHERE clip_id = ?",
           (bob, store.clips.blob_path(bob, a_ids[0]), a_ids[0]))
    store.blobs.write(store.clips.blob_path(bob, a_ids[0]), store.blobs.read(store.clips.blob_path(alice, a_ids[0])))
    assert_aborts(store, bob, tmp_path / "c", a_ids[0], "blob_key")


def test_a_binding_that_says_another_owner_aborts_without_naming_them(
        store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (alice, a, _), (bob, _, _) = alice_bob
    first = store.clips.of_owner(alice)[0].clip_id  # the export checks clips in capture order
    tamper(store, "UPDATE bindings SET owner_id = ? WHERE device_id = ?", (bob, a.device_id))
    assert_aborts(store, alice, tmp_path / "out", first, "binding")


def edit_archive(source: Path, target: Path, change: str) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        manifest = json.loads(zin.read("manifest.json"))
        files = [c["file"] for c in manifest["clips"]]
        for item in zin.infolist():
            data = zin.read(item.filename)
            if change == "swap" and item.filename == files[0]:
                data = zin.read(files[1])
            if change == "manifest" and item.filename == "manifest.json":
                manifest["clips"][0]["captured_at"] = "2020-01-01T00:00:00.000Z"
                manifest["clips"][0]["envelope_header"] = manifest["clips"][0]["envelope_header"].replace(
                    manifest["owner_id"], "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b")
                data = json.dumps(manifest).encode()
            if change == "readme" and item.filename == "README.txt":
                data = zin.read(files[0])  # a recording where the README should be
            if change == "index" and item.filename == "index.html":
                data = data.replace(files[0].encode(), b"https://elsewhere.example/other-person.wav")
            if change == "csv" and item.filename == "clips.csv":
                data += b"f00dfeed-0000-4000-8000-000000000000,kitchen-pi,2020-01-01T00:00:00.000Z,1.0,button,,x,y\r\n"
            if change == "traversal":
                if item.filename == files[0]:
                    item = zipfile.ZipInfo("../../x.wav")
                if item.filename == "manifest.json":
                    manifest["clips"][0]["file"] = "../../x.wav"
                    data = json.dumps(manifest).encode()
            if change == "unparsable" and item.filename == "manifest.json":
                data = b'{"owner_id": "'
            if change == "mark" and item.filename == "manifest.json":  # a mark nobody made
                manifest["clips"][0]["mark"] = "<script>"
                data = json.dumps(manifest).encode()
            if change == "unmark" and item.filename == "manifest.json":  # the owner's mark taken out
                manifest["clips"][0].pop("mark", None)
                data = json.dumps(manifest).encode()
            if change == "shapeless" and item.filename == "manifest.json":
                data = json.dumps({**manifest, "clips": [{"clip_id": 7}]}).encode()
            zout.writestr(item, data)
        if change == "add":
            zout.writestr("clips/extra.wav", b"RIFF....")


@pytest.mark.parametrize(("change", "needle"), [
    ("add", "not in the manifest"), ("swap", "SHA-256"), ("manifest", "signed header names"),
    ("readme", "README.txt is not what the manifest says"), ("index", "index.html is not what the manifest says"),
    ("csv", "clips.csv is not what the manifest says"), ("traversal", "file name is not the one"),
    ("unparsable", "manifest.json is malformed"), ("shapeless", "manifest.json is malformed: clip entry 0"),
    ("mark", "mark '<script>' is not one Earmark makes"), ("unmark", "index.html is not what the manifest says"),
])
def test_verify_export_catches_an_edited_archive(store: Store, alice_bob: tuple, tmp_path: Path,
                                                 change: str, needle: str) -> None:
    (alice, _, _), _ = alice_bob
    assert store.clips.mark(alice, store.clips.of_owner(alice)[0].clip_id, "not_meant")  # in the archive too
    good = export_owner(store, alice, tmp_path / "out").path
    bad = tmp_path / "edited.zip"
    edit_archive(good, bad, change)
    problems = verify_export(store, bad, alice)
    assert problems and any(needle in p for p in problems), problems
    assert verify_export(store, good, alice) == []


def test_an_archive_for_the_owners_age_key_opens_only_with_it(store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (alice, _, _a_ids), (_bob, _, _) = alice_bob
    identity = x25519.Identity.generate()
    (tmp_path / "alice.key").write_text(str(identity) + "\n")
    store.registry.set_recipient(alice, str(identity.to_public()))
    result = export_owner(store, alice, tmp_path / "out")  # the registered recipient is the default
    assert result.encrypted and result.path.name.endswith(".zip.age")
    assert b"ALICE-AUDIO" not in result.path.read_bytes() and not zipfile.is_zipfile(result.path)
    assert verify_export(store, result.path, alice, tmp_path / "alice.key") == []
    stranger = x25519.Identity.generate()
    (tmp_path / "stranger.key").write_text(str(stranger) + "\n")
    assert "does not decrypt" in verify_export(store, result.path, alice, tmp_path / "stranger.key")[0]
    assert "encrypted" in verify_export(store, result.path, alice)[0]


def test_erasure_shreds_the_key_first_and_leaves_a_tombstone(store: Store, alice_bob: tuple, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from earmark.cloud.store.keys import OwnerError

    (alice, a, a_ids), (bob, _b, b_ids) = alice_bob
    kept_copy = store.blobs.read(store.clips.blob_path(alice, a_ids[0]))
    [row] = [r for r in store.clips.of_owner(alice) if r.clip_id == a_ids[0]]
    delete_all, deleting = store.clips.delete_all, []

    def key_gone_first(owner_id: str) -> int:
        with pytest.raises(OwnerError):
            store.keys.owner_key(owner_id)
        deleting.append(owner_id)
        return delete_all(owner_id)

    monkeypatch.setattr(store.clips, "delete_all", key_gone_first)
    erasure = erase_owner(store, alice)
    assert deleting == [alice]
    assert erasure.clips == 3 and erasure.devices == [a.device_id]
    assert store.clips.of_owner(alice) == [] and alice not in store.blobs.owner_folders()
    owner = store.registry.owner(alice)
    assert owner is not None and owner.erased_at and owner.display_name == ""
    assert store.registry.device(a.device_id).revoked_at  # type: ignore[union-attr]
    # A copy of a blob made before erasure (a backup, say) no longer opens with anything.
    store.blobs.write(row.blob_path, kept_copy)
    with pytest.raises(OwnerError):
        store.clips.read(alice, row)
    with pytest.raises(ExportError, match="was erased"):
        export_owner(store, alice, tmp_path / "out")
    assert Ingestor(store).handle(a.topic, a.clip(seed=77)).reason == "revoked_device"
    assert store.audit.events(1)[0]["event"] == "owner_erased"  # her earlier events are redacted (issue 24 case 7)
    assert archive_clip_ids(export_owner(store, bob, tmp_path / "b").path) == set(b_ids)
    assert store.audit.verify() == []


def test_an_ingester_holding_a_cached_key_cannot_store_for_an_erased_owner(store: Store, tmp_path: Path) -> None:
    owner, device = owner_with_device(store, "Carol")
    running = reopen(store)  # another process's view
    ingest(running, device, 1)  # its key cache now holds Carol's key
    envelope = device.clip(seed=5)
    ingestor = Ingestor(running)
    erase_owner(store, owner)  # meanwhile, the CLI erases Carol; her device stays registered here:
    tamper(store, "UPDATE devices SET revoked_at = NULL WHERE device_id = ?", (device.device_id,))
    outcome = ingestor.handle(device.topic, envelope)
    assert (outcome.status, outcome.reason) == ("rejected", "owner_erased")
    assert running.clips.count(owner) == 0 and owner not in store.blobs.owner_folders()


def test_deleting_one_clip_and_purging_by_retention(store: Store, tmp_path: Path) -> None:
    owner, device = owner_with_device(store, "Dan")
    ids = ingest(store, device, 3)
    old = device.clip(seed=40, captured=datetime.now(UTC) - timedelta(days=40))
    Ingestor(store).handle(device.topic, old)
    delete_clip(store, owner, ids[0])
    assert ids[0] not in {c.clip_id for c in store.clips.of_owner(owner)}
    assert not store.blobs.exists(store.clips.blob_path(owner, ids[0]))
    with pytest.raises(Exception, match="has no clip"):
        delete_clip(store, owner, ids[0])
    purged: list[str] = []
    assert purge_expired(store, 30, purged) == 1 and purged == [owner]  # whose devices are told (broker/marks.py)
    assert {c.clip_id for c in store.clips.of_owner(owner)} == set(ids[1:])
    old_id = decode_envelope(old).header.clip_id
    since = (datetime.now(UTC) - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(store.clips.for_device(owner, device.device_id, since)[1]) == {ids[0], old_id}  # the device's message
    assert not store.blobs.exists(store.clips.blob_path(owner, old_id))
    assert all(store.blobs.exists(store.clips.blob_path(owner, i)) for i in ids[1:])
    assert purge_expired(store, 0) == 0
    assert archive_clip_ids(export_owner(store, owner, tmp_path / "out").path) == set(ids[1:])


def test_an_export_reads_one_snapshot_with_only_its_owner_in_scope(
        store: Store, alice_bob: tuple, tmp_path: Path) -> None:
    (alice, a, a_ids), (bob, _, _) = alice_bob
    meanwhile = reopen(store)  # an ingester in another process, storing while the export runs
    late: list[str] = []
    paged = store.clips.iter_owner
    store.clips.iter_owner = lambda owner_id, page=500: paged(owner_id, page=1)  # type: ignore[method-assign]

    def progress(done: int, total: int) -> None:
        if done == 1:
            late.extend(ingest(meanwhile, a, 2, start=90))
            with pytest.raises(StoreError, match="inside owner"):
                store.clips.count(bob)  # the export's snapshot has only Alice in scope

    result = export_owner(store, alice, tmp_path / "out", progress=progress)
    meanwhile.close()
    assert len(late) == 2 and store.clips.count(alice) == 5
    assert result.clips == 3 and archive_clip_ids(result.path) == set(a_ids)  # as of its start
    assert verify_export(store, result.path, alice) == []


def test_after_erasure_nothing_in_the_audit_log_or_quarantine_recovers_the_person(
        store: Store, tmp_path: Path) -> None:
    from pyrage import x25519 as age

    owner = store.registry.add_owner("Zelda Quartermaine").owner_id
    device = SimDevice("zelda-pi", owner)
    store.registry.add_device(owner, device.public_key, device.device_id)
    recipient = str(age.Identity.generate().to_public())
    ingest(store, device, 2, b"ZELDA-SAYS")  # plain clips, from before her household had a key
    store.registry.set_recipient(owner, recipient)
    forged = device.resign(device.clip(b"ZELDA-SAYS", seed=9), key=Ed25519PrivateKey.generate())
    assert Ingestor(store).handle(device.topic, forged).reason == "bad_signature"
    erase_owner(store, owner)
    chain = json.dumps(list(store.audit.chain()))
    assert "Zelda" not in chain and recipient not in chain
    assert store.quarantine.all() == []
    assert not any(b"ZELDA-SAYS" in p.read_bytes() for p in store.data_dir.rglob("*") if p.is_file())
    assert store.audit.verify() == []
