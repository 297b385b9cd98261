"""The upgrade of a store from before household keys (issue 34): once an owner sets one,
`earmark-cloud owner reseal` re-seals every clip the server sealed for them to it, then
drops and shreds the server's key for them. Their audio is then in no form any server key
opens, their export still opens with the age command and checks out, and a clip swapped by
someone who holds only the household's public key is caught by whoever holds its identity.
On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from pyrage import x25519

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.reseal import ResealError, reseal_owner
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.resealed import MARK, Resealed, parse, reseal
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope, encode_envelope
from tests.integration.test_sealed_clips import export_opened
from tests.support.cloudkit import EVERY_BLOB_STORE, enrolled_device, make_store

CANARY = b"SERVER-SEALED-BEFORE-THE-KEY-42"


def windows(data: bytes, size: int = 32) -> set[bytes]:
    return {data[i:i + size] for i in range(0, len(data) - size, 997)}


@EVERY_BLOB_STORE
def test_clips_from_before_the_household_key_are_resealed_and_the_server_key_is_shredded(
        store: Store, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    sent = [alice.clip(CANARY, v1=True, seed=0)] + [alice.clip(CANARY, seed=i) for i in (1, 2)]
    for envelope in sent:
        assert Ingestor(store).handle(alice.topic, envelope).status == "stored"
    bob = enrolled_device(store, "Bob")  # another owner, untouched by Alice's upgrade
    assert Ingestor(store).handle(bob.topic, bob.clip(CANARY)).status == "stored"
    with pytest.raises(ResealError, match="no household key"):
        reseal_owner(store, alice.owner_id)

    identity = x25519.Identity.generate()
    store.registry.set_recipient(alice.owner_id, str(identity.to_public()))
    done = reseal_owner(store, alice.owner_id)
    assert (done.resealed, done.already, done.key_dropped) == (3, 0, True)

    rows = store.clips.of_owner(alice.owner_id)
    blobs = [store.blobs.read(row.blob_path) for row in rows]
    assert len(rows) == 3 and all(blob.startswith(MARK) for blob in blobs)
    audio = [bytes(decode_envelope(e).audio) for e in sent]
    for blob in blobs:
        assert CANARY not in blob and not any(w in blob for a in audio for w in windows(a))
    assert store.keys.secrets.get(alice.owner_id) is None and not store.keys.has_server_key(alice.owner_id)
    assert store.keys.secrets.get(bob.owner_id) is not None and store.keys.has_server_key(bob.owner_id)
    again = reseal_owner(store, alice.owner_id)  # a second run finds nothing to do
    assert (again.resealed, again.already, again.key_dropped) == (0, 3, False)

    # The export holds each clip as age ciphertext that the age command opens into the WAV
    # the device signed; verify-export checks it without the key and, with it, whole.
    export = export_opened(store, alice.owner_id, identity, tmp_path)
    with zipfile.ZipFile(export.opened) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("clips/"))
        assert len(names) == 3 and all(n.endswith(".wav.age") for n in names)
        (tmp_path / "clip.wav.age").write_bytes(archive.read(names[0]))
        index = archive.read("index.html").decode()
    assert all(n in index for n in names) and "<audio" not in index  # the page's player opens them
    subprocess.run(["age", "-d", "-i", str(export.key_file), "-o", str(tmp_path / "clip.wav"),
                    str(tmp_path / "clip.wav.age")], check=True)
    assert (tmp_path / "clip.wav").read_bytes() in audio
    assert verify_export(store, export.opened, alice.owner_id) == []
    assert verify_export(store, export.archive, alice.owner_id, identity=export.key_file) == []


def test_a_resealed_clip_swapped_by_someone_with_only_the_public_key_is_caught_with_the_identity(
        store: Store, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    envelope = alice.clip(CANARY, seed=3)
    assert Ingestor(store).handle(alice.topic, envelope).status == "stored"
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    store.registry.set_recipient(alice.owner_id, recipient)
    reseal_owner(store, alice.owner_id)
    # Anyone may seal audio to a public key: an operator puts other audio of the same length
    # under the clip's signed header. The server cannot tell; the household's identity can.
    [row] = store.clips.of_owner(alice.owner_id)
    kept = parse(store.blobs.read(row.blob_path))
    signed = decode_envelope(envelope)
    other = bytes(signed.audio)[:-100] + bytes(100)
    forged = decode_envelope(encode_envelope(replace(signed.header, audio_sha256=hashlib.sha256(other).hexdigest()),
                                             other, alice.key))
    swapped = Resealed(kept.header, kept.header_bytes, kept.plain_audio_bytes, kept.signature,
                       reseal(forged, [recipient]).audio)
    store.blobs.write(row.blob_path, swapped.to_blob())
    export = export_opened(store, alice.owner_id, identity, tmp_path)
    assert verify_export(store, export.opened, alice.owner_id) == []  # the header's signature alone still holds
    [problem] = verify_export(store, export.archive, alice.owner_id, identity=export.key_file)
    assert row.clip_id in problem and "envelope" in problem


def test_the_command_reseals_every_owner_with_a_key_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "cloud"

    def cloud(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "earmark.cloud.cli", *argv, "--data-dir", str(data)],
                              capture_output=True, text=True, timeout=120)

    with make_store(data) as store:
        alice = enrolled_device(store, "Alice")
        assert Ingestor(store).handle(alice.topic, alice.clip(CANARY)).status == "stored"
        store.registry.set_recipient(alice.owner_id, str(x25519.Identity.generate().to_public()))
        bob = enrolled_device(store, "Bob")  # no household key yet: left as he is
    done = cloud("owner", "reseal", "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"{alice.owner_id}: 1 clip(s) re-sealed to the household's key, 0 sealed to it "
                                   "already; the server keeps no key that opens their audio")
    refused = cloud("owner", "reseal", "--owner", bob.owner_id)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "no household key" in refused.stderr
