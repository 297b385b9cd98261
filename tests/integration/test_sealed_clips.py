"""Zero-access recordings, the cloud's side (issue 34): a clip its device sealed to the
household's age key (wire v3) is verified, stored and exported as ciphertext that only the
household's identity opens; clips sealed to a key the household does not hold, or to one it
retired, and plain clips from a household that has a key, are refused with a reason and
change nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyrage
import pytest
from pyrage import x25519

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.export import export_owner
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.clips import HOUSEHOLD_SEALED
from earmark.cloud.store.database import StoreError
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import SimDevice, enrolled_device, reopen

CANARY = b"HOUSEHOLD-ONLY-CANARY-0123456789"


def household(store: Store, device: SimDevice) -> x25519.Identity:
    identity = x25519.Identity.generate()
    store.registry.set_recipient(device.owner_id, str(identity.to_public()))
    return identity


@dataclass(frozen=True)
class OpenedExport:
    archive: Path  # as export wrote it: encrypted to the household's key as a whole
    opened: Path  # the zip inside it
    key_file: Path  # the household's identity, as `age-keygen` writes one


def export_opened(store: Store, owner_id: str, identity: x25519.Identity, folder: Path) -> OpenedExport:
    """The owner's export, and what the household does with it: its key in a file, and the
    archive opened with that key."""
    result = export_owner(store, owner_id, folder / "out")
    key_file = folder / "household-key.txt"
    key_file.write_text(f"{identity}\n")
    opened = folder / "export.zip"
    pyrage.decrypt_file(str(result.path), str(opened), [identity])
    return OpenedExport(result.path, opened, key_file)


def test_a_sealed_clip_is_stored_and_exported_as_ciphertext_only_the_household_opens(
        store: Store, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    identity = household(store, alice)
    recipients = tuple(store.registry.household_recipients(alice.owner_id))
    envelope = alice.clip(CANARY, sealed_to=recipients)
    assert CANARY not in envelope and decode_envelope(envelope).header.version == 3
    assert Ingestor(store).handle(alice.topic, envelope).status == "stored"
    [row] = store.clips.of_owner(alice.owner_id)
    assert store.clips.read(alice.owner_id, row) == envelope  # the server's own layer opens: ciphertext inside
    # The export (encrypted to the household's key as a whole, as every export to a known key
    # is) holds the clip itself as age ciphertext, beside the signed header that names it.
    export = export_opened(store, alice.owner_id, identity, tmp_path)
    with zipfile.ZipFile(export.opened) as archive:
        [name] = [n for n in archive.namelist() if n.startswith("clips/")]
        sealed = archive.read(name)
        index = archive.read("index.html").decode()
    assert name.endswith(".wav.age") and CANARY not in sealed and name in index and "<audio" not in index
    wav = pyrage.decrypt(sealed, [identity])
    assert wav.startswith(b"RIFF") and CANARY in wav
    assert verify_export(store, export.opened, alice.owner_id) == []  # checked on the ciphertext, without the key
    assert verify_export(store, export.archive, alice.owner_id, identity=export.key_file) == []


def test_clips_sealed_to_a_key_the_household_does_not_hold_or_retired_or_not_sealed_are_refused(
        store: Store) -> None:
    alice = enrolled_device(store, "Alice")
    first = household(store, alice)
    stranger = str(x25519.Identity.generate().to_public())
    ingest = Ingestor(store)
    refused = {
        "a stranger's key": (alice.clip(seed=1, sealed_to=(stranger,)), "unknown_recipient"),
        "a plain clip": (alice.clip(seed=2), "not_sealed"),
    }
    household(store, alice)  # a rotation: the first key is retired
    refused["the retired key"] = (alice.clip(seed=3, sealed_to=(str(first.to_public()),)), "unknown_recipient")
    for what, (envelope, reason) in refused.items():
        outcome = ingest.handle(alice.topic, envelope)
        assert (outcome.status, outcome.reason) == ("rejected", reason), what
    assert store.clips.count(alice.owner_id) == 0
    current = tuple(store.registry.household_recipients(alice.owner_id))
    assert len(current) == 1 and current != (str(first.to_public()),)
    assert ingest.handle(alice.topic, alice.clip(seed=4, sealed_to=current)).status == "stored"


def test_a_household_without_a_key_still_gets_plain_clips(store: Store) -> None:
    bob = enrolled_device(store, "Bob")
    assert store.registry.household_recipients(bob.owner_id) == []
    assert Ingestor(store).handle(bob.topic, bob.clip()).status == "stored"
    sealed = bob.clip(seed=1, sealed_to=(str(x25519.Identity.generate().to_public()),))
    assert Ingestor(store).handle(bob.topic, sealed).reason == "unknown_recipient"


def test_an_archive_of_sealed_clips_opens_with_the_age_command_and_with_its_own_page(
        store: Store, tmp_path: Path) -> None:
    """The owner's side of an export: `age -d -i` turns each .wav.age into its WAV, and the
    archive's index.html, opened from disk, plays it once given the household's key file."""
    alice = enrolled_device(store, "Alice")
    identity = household(store, alice)
    envelope = alice.clip(CANARY, seconds=1.5, sealed_to=tuple(store.registry.household_recipients(alice.owner_id)))
    assert Ingestor(store).handle(alice.topic, envelope).status == "stored"
    result = export_owner(store, alice.owner_id, tmp_path / "out")
    key_file = tmp_path / "owner" / "household-key.txt"
    key_file.parent.mkdir()
    key_file.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    opened = tmp_path / "owner" / "archive"
    with zipfile.ZipFile(io.BytesIO(pyrage.decrypt(result.path.read_bytes(), [identity]))) as archive:
        archive.extractall(opened)
    [sealed] = (opened / "clips").glob("*.wav.age")
    if shutil.which("age"):  # apt's age (deploy/setup.sh installs it)
        wav = subprocess.run(["age", "-d", "-i", str(key_file), str(sealed)], capture_output=True, check=True).stdout
        assert wav.startswith(b"RIFF") and CANARY in wav
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (deploy/setup.sh installs it)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto((opened / "index.html").as_uri())
        page.wait_for_selector("#open-sealed:not([hidden])")
        page.set_input_files("#key-file", str(key_file))
        page.set_input_files("#sealed-files", str(sealed))
        page.wait_for_selector("audio[data-decoded-bytes]", timeout=20_000)
        decoded = page.get_attribute("audio[data-decoded-bytes]", "data-decoded-bytes")
        browser.close()
    assert decoded == str(44 + int(1.5 * 16000) * 2)


def test_the_archive_page_opens_clips_with_the_recovery_code_through_a_rotation(
        store: Store, tmp_path: Path) -> None:
    """A household that made its key in the portal and kept only the recovery code: the
    archive's index.html, opened from disk, takes the code, opens the household key wrapped in
    the page, and through the wrap a rotation left, the older key a clip was sealed to. A wrong
    code is told, and opens nothing."""
    from pyrage import passphrase

    from earmark.cloud.store.household import NewMember

    alice = enrolled_device(store, "Alice")
    first, member = x25519.Identity.generate(), x25519.Identity.generate()
    old_code, code = "ABCDE-FGHJK-LMNPQ-RSTUV-WXYZ2-34567", "QRSTU-VWXYZ-23456-789AB-CDEFG-HJKLM"

    def new_member() -> NewMember:
        return NewMember(str(member.to_public()), passphrase.encrypt(str(member).encode(), "stand-in for a passkey"),
                         pyrage.encrypt(str(first).encode(), [member.to_public()]))

    store.household.create(alice.owner_id, str(first.to_public()), passphrase.encrypt(str(first).encode(), old_code),
                           new_member())
    envelope = alice.clip(CANARY, seconds=1.0, sealed_to=(str(first.to_public()),))
    assert Ingestor(store).handle(alice.topic, envelope).status == "stored"
    second = x25519.Identity.generate()
    [join] = store.household.joins(alice.owner_id)
    store.household.rotate(alice.owner_id, str(second.to_public()), passphrase.encrypt(str(second).encode(), code),
                           pyrage.encrypt(str(first).encode(), [second.to_public()]),
                           {join.join_id: pyrage.encrypt(str(second).encode(), [member.to_public()])})
    result = export_owner(store, alice.owner_id, tmp_path / "out")  # encrypted to the new key as a whole
    opened = tmp_path / "archive"
    with zipfile.ZipFile(io.BytesIO(pyrage.decrypt(result.path.read_bytes(), [second]))) as archive:
        archive.extractall(opened)
    [sealed] = (opened / "clips").glob("*.wav.age")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto((opened / "index.html").as_uri())
        page.wait_for_selector("#by-code:not([hidden])")
        page.fill("#recovery-code", old_code)  # the code from before the rotation: it opens nothing now
        page.set_input_files("#sealed-files", str(sealed))
        page.wait_for_function("document.getElementById('opened').textContent.includes('recovery code')")
        assert page.locator("audio[data-decoded-bytes]").count() == 0
        page.fill("#recovery-code", code.lower())  # typed as people type it
        page.click("#by-code button")
        page.wait_for_selector("audio[data-decoded-bytes]", timeout=20_000)
        decoded = page.get_attribute("audio[data-decoded-bytes]", "data-decoded-bytes")
        page.screenshot(path=str(tmp_path / "archive-recovery-code.png"), full_page=True)
        browser.close()
    assert decoded == str(44 + 16000 * 2)
    key_file = tmp_path / "household-key.txt"
    key_file.write_text(f"{second}\n")
    assert verify_export(store, result.path, alice.owner_id, identity=key_file) == []  # the page is the rebuilt one


def test_an_ingest_host_without_the_owner_keys_folder_stores_and_exports_sealed_clips(
        store: Store, tmp_path: Path) -> None:
    """A household's sealed clips need no key of the owner's to be stored, read back or
    exported: an ingest host without the owner-keys/ folder takes them (a plain clip, from a
    household without a key, it cannot take: a one-line set-up error, nothing acked or lost).
    A crash between a sealed blob and its row is re-indexed by the sweep, from the clip's own
    header and signature."""
    alice, bob = enrolled_device(store, "Alice"), enrolled_device(store, "Bob")
    identity = household(store, alice)
    key_file = tmp_path / "household-key.txt"
    key_file.write_text(f"{identity}\n")
    sealed_to = tuple(store.registry.household_recipients(alice.owner_id))
    folder = store.keys.secrets.folder
    moved = tmp_path / "owner-keys-elsewhere"
    folder.rename(moved)  # this host keeps no owner's secret
    try:
        host = reopen(store)
        ingest = Ingestor(host)
        envelopes = [alice.clip(CANARY, seed=n, sealed_to=sealed_to) for n in range(2)]
        assert [ingest.handle(alice.topic, e).status for e in envelopes] == ["stored", "stored"]
        with pytest.raises(StoreError, match="owner-keys folder"):  # a set-up error: not acked, not quarantined
            ingest.handle(bob.topic, bob.clip())
        rows = host.clips.of_owner(alice.owner_id)
        assert sorted(host.clips.read(alice.owner_id, r) for r in rows) == sorted(envelopes)
        # The crash: a sealed blob landed, its row did not.
        late = alice.clip(CANARY, seed=9, sealed_to=sealed_to)
        clip_id = decode_envelope(late).header.clip_id
        host.blobs.write(host.clips.blob_path(alice.owner_id, clip_id), HOUSEHOLD_SEALED + late)
        assert reopen(host).sweep().reindexed == 1
        assert host.clips.count(alice.owner_id) == 3
        result = export_owner(host, alice.owner_id, tmp_path / "out")
        assert result.clips == 3 and verify_export(host, result.path, alice.owner_id, identity=key_file) == []
        host.close()
    finally:
        moved.rename(folder)
