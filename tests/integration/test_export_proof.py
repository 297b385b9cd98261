"""Archives that prove themselves (issue 24, cases 1, 2 and 8): every forgery a third review
made by editing an archive alone, re-rendering its README, index and CSV so they agree, and
every place a stranger's recording was hidden in a zip, now fail verify-export, with the
store and offline; an untouched archive verifies both ways, also after the signing key was
rotated; and a chain end of 2**53 costs verify-export no memory."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyrage import encrypt, x25519

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner import archive
from earmark.cloud.owner.export import export_owner
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import SimDevice, enrolled_device

Edit = Callable[[dict[str, Any], list[dict[str, Any]]], None]


def stored(store: Store, device: SimDevice, count: int) -> list[bytes]:
    envelopes = [device.clip(seed=n, seconds=0.25) for n in range(count)]
    outcomes = Ingestor(store).handle_batch([(device.topic, e) for e in envelopes])
    assert {o.status for o in outcomes} == {"stored"}
    return envelopes


@pytest.fixture
def alice(store: Store) -> SimDevice:
    device = enrolled_device(store, "Alice")
    stored(store, device, 6)
    return device


def info(name: str, stamp: str) -> zipfile.ZipInfo:
    """The entry header export writes (owner/archive.py), so only the content differs."""
    make = getattr(archive, "entry_info", None)
    return make(name, stamp) if make else zipfile.ZipInfo(name)


def forge(good: Path, out: Path, edit: Edit) -> Path:
    """`good` with its manifest and devices.json edited as `edit` says, clips the manifest no
    longer lists left out, README, index.html and clips.csv rendered again to match, and the
    original signature.json kept (a forger has no signing key)."""
    with zipfile.ZipFile(good) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(files["manifest.json"])
    devices = json.loads(files["devices.json"])
    edit(manifest, devices)
    manifest["clip_count"] = len(manifest["clips"])
    owner, created, clips = manifest["owner_id"], manifest["created_at"], manifest["clips"]
    rendered = {
        "manifest.json": json.dumps(manifest).encode(), "devices.json": json.dumps(devices, indent=2).encode(),
        "README.txt": archive.render_readme(owner, created, len(clips)),
        "index.html": b"".join(archive.render_index(clips, owner, created, len(clips))),
        "clips.csv": b"".join(archive.render_csv(clips)),
    }
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for clip in clips:
            zf.writestr(info(clip["file"], clip["captured_at"]), files[clip["file"]])
        for name in ("manifest.json", "clips.csv", "devices.json", "README.txt", "index.html", "signature.json"):
            if name in rendered or name in files:
                zf.writestr(info(name, created), rendered.get(name, files.get(name, b"")))
    return out


def drop_first(manifest: dict[str, Any], devices: list[dict[str, Any]]) -> None:
    manifest["clips"].pop(0)


EDITS: dict[str, Edit] = {
    "a clip removed, audit_seq 0": lambda m, d: (drop_first(m, d), m.update(audit_seq=0)),
    "a clip removed, audit_seq deleted": lambda m, d: (drop_first(m, d), m.pop("audit_seq")),
    "the last clip removed, chain_end lowered": lambda m, d: (m["clips"].pop(), d[0].update(
        chain_end=d[0]["chain_end"] - 1)),
    "the last clip removed, chain_end null": lambda m, d: (m["clips"].pop(), d[0].update(chain_end=None)),
    "every clip removed": lambda m, d: m.update(clips=[]),
    "revoked_at edited": lambda m, d: d[0].update(revoked_at="2020-01-01T00:00:00Z"),
    "bound_to_you edited": lambda m, d: d[0].update(bound_to_you=[]),
    "created_at edited": lambda m, d: m.update(created_at="2020-01-01T00:00:00.000Z"),
    "export_id edited": lambda m, d: m.update(export_id="00000000-0000-4000-8000-000000000000"),
    "a mark added": lambda m, d: m["clips"][0].update(mark="not_meant"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_archive_edited_and_re_rendered_does_not_verify(store: Store, alice: SimDevice, tmp_path: Path,
                                                           edit: str) -> None:
    good = export_owner(store, alice.owner_id, tmp_path / "out").path
    assert verify_export(store, good, alice.owner_id) == []
    bad = forge(good, tmp_path / "forged.zip", EDITS[edit])
    problems = verify_export(store, bad, alice.owner_id)
    assert any("changed after the archive was signed" in p for p in problems), problems
    key = store.keys.export_keys()[0]["key"]
    offline = verify_export(None, bad, alice.owner_id, keys=[str(key)])
    assert any("changed after the archive was signed" in p for p in offline), offline


def test_a_forgery_encrypted_to_the_owners_age_key_does_not_verify(store: Store, alice: SimDevice,
                                                                    tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    (tmp_path / "alice.key").write_text(f"{identity}\n")
    good = export_owner(store, alice.owner_id, tmp_path / "out", recipient=None).path
    bad = forge(good, tmp_path / "forged.zip", EDITS["every clip removed"])
    sealed = tmp_path / "forged.zip.age"
    sealed.write_bytes(encrypt(bad.read_bytes(), [identity.to_public()]))  # age gives no authenticity
    problems = verify_export(store, sealed, alice.owner_id, tmp_path / "alice.key")
    assert any("changed after the archive was signed" in p for p in problems), problems


def test_an_archive_without_a_signature_or_with_a_strangers_is_refused(store: Store, alice: SimDevice,
                                                                      tmp_path: Path) -> None:
    good = export_owner(store, alice.owner_id, tmp_path / "out").path
    with zipfile.ZipFile(good) as zf, zipfile.ZipFile(tmp_path / "unsigned.zip", "w") as out:
        for item in zf.infolist():
            if item.filename != "signature.json":
                out.writestr(item, zf.read(item))
    assert "not signed" in verify_export(store, tmp_path / "unsigned.zip", alice.owner_id)[0]
    from nacl.signing import SigningKey

    from earmark.cloud.owner.signing import key_text, seal

    with zipfile.ZipFile(good) as zf:
        signed = json.loads(zf.read("signature.json"))["signed"]
    mine = SigningKey.generate()
    forged = seal(mine, alice.owner_id, signed["export_id"], signed["created_at"], signed["files"])
    resigned = tmp_path / "resigned.zip"
    with zipfile.ZipFile(good) as zf:
        entries = {i.filename: (i, zf.read(i)) for i in zf.infolist()}
    entries["signature.json"] = (entries["signature.json"][0], forged)
    with zipfile.ZipFile(resigned, "w") as zf:
        for item, data in entries.values():
            zf.writestr(item, data)
    assert verify_export(store, resigned, alice.owner_id) == [
        "the archive is signed by a key this store never used"]
    assert verify_export(None, resigned, alice.owner_id, keys=[key_text(mine.verify_key)]) == [], \
        "offline, it is the key given that is trusted"
    assert verify_export(None, good, alice.owner_id, keys=[key_text(mine.verify_key)]) == [
        "the archive is signed by a key this store never used"]


def test_an_untouched_archive_verifies_offline_and_after_the_key_is_rotated(store: Store, alice: SimDevice,
                                                                           tmp_path: Path) -> None:
    from earmark.cloud.owner.signing import known_keys, rotate

    good = export_owner(store, alice.owner_id, tmp_path / "out").path
    first = known_keys(store)[0].key
    assert verify_export(None, good, alice.owner_id, keys=[first]) == []
    rotate(store)
    keys = known_keys(store)
    assert keys[0].key == first and keys[0].retired and keys[1].retired is None
    assert verify_export(store, good, alice.owner_id) == []  # signed by a retired key of this store
    newer = export_owner(store, alice.owner_id, tmp_path / "out2").path
    assert verify_export(store, newer, alice.owner_id) == []
    assert verify_export(None, newer, alice.owner_id, keys=[first]) == [
        "the archive is signed by a key this store never used"]


def test_an_archive_the_store_did_not_record_is_named(store: Store, alice: SimDevice, tmp_path: Path) -> None:
    """Signed, intact, but not the file the store's export_completed event names."""
    good = export_owner(store, alice.owner_id, tmp_path / "out").path
    from tests.support.cloudkit import tamper  # the audit log is append-only for the store: edit it directly

    tamper(store, "UPDATE audit SET detail = replace(detail, 'sha256', 'was') WHERE event = 'export_completed'")
    problems = verify_export(store, good, alice.owner_id)
    assert any("not the archive the store made" in p for p in problems), problems


def stranger_wav(store: Store, tmp_path: Path) -> bytes:
    bob = enrolled_device(store, "Bob")
    stored(store, bob, 1)
    with zipfile.ZipFile(export_owner(store, bob.owner_id, tmp_path / "bob").path) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith(".wav")))


def in_comment(zip_bytes: bytes, wav: bytes) -> bytes:
    buffer = io.BytesIO(zip_bytes)
    with zipfile.ZipFile(buffer, "a") as zf:
        zf.comment = wav[:65535]
    return buffer.getvalue()


def unlisted_entry(zip_bytes: bytes, wav: bytes) -> bytes:
    """A local file entry, before the central directory, that the directory does not list."""
    extra = io.BytesIO()
    with zipfile.ZipFile(extra, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("clips/stranger.wav", wav)
    local = extra.getvalue()[: struct.unpack("<I", extra.getvalue()[-6:-2])[0]]  # up to its central directory
    end = zip_bytes.rindex(b"PK\x05\x06")
    directory_at = struct.unpack("<I", zip_bytes[end + 16:end + 20])[0]
    moved = zip_bytes[end:end + 16] + struct.pack("<I", directory_at + len(local)) + zip_bytes[end + 20:]
    return zip_bytes[:directory_at] + local + zip_bytes[directory_at:end] + moved


HIDING: dict[str, Callable[[bytes, bytes], bytes]] = {
    "in the zip comment": in_comment,
    "before the zip": lambda z, wav: wav + z,
    "as a local entry the central directory does not list": unlisted_entry,
}


@pytest.mark.parametrize("where", list(HIDING))
def test_a_strangers_recording_hidden_in_the_file_is_found(store: Store, alice: SimDevice, tmp_path: Path,
                                                           where: str) -> None:
    good = export_owner(store, alice.owner_id, tmp_path / "out").path
    wav = stranger_wav(store, tmp_path)
    bad = tmp_path / "smuggled.zip"
    bad.write_bytes(HIDING[where](good.read_bytes(), wav))
    with zipfile.ZipFile(bad) as zf:
        assert zf.namelist() == zipfile.ZipFile(good).namelist(), "the zip still reads as the same entries"
    problems = verify_export(store, bad, alice.owner_id)
    assert any("holds more than its entries" in p for p in problems), problems


def test_a_chain_that_jumps_to_2_53_is_one_gap_not_a_list(store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Jump")
    first = device.clip(seed=1)
    far = device.resign(device.clip(seed=2), seq=2**53)
    outcomes = Ingestor(store).handle_batch([(device.topic, e) for e in (first, far)])
    assert [o.status for o in outcomes] == ["stored", "stored"]
    assert decode_envelope(far).header.seq == 2**53
    problems = verify_export(store, export_owner(store, device.owner_id, tmp_path / "out").path, device.owner_id)
    assert any(f"clip(s) at 2-{2**53 - 1} of its chain" in p for p in problems), problems
