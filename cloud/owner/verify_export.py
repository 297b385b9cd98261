"""`earmark-cloud verify-export`: check a finished archive on its own.

Opens the archive (decrypting it first with the owner's age identity if it is encrypted)
and checks: the manifest names this owner; every file in the archive is listed and every
listed file is there; each WAV matches its SHA-256; each clip's header and signature, put
back together with the WAV, form a valid envelope that names this owner and verifies with
the device's registered key; and the device was bound to this owner at capture time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from earmark.cloud.owner.export import FIXED_FILES, MANIFEST
from earmark.cloud.store.store import Store
from earmark.wire.envelope import EnvelopeError, decode_envelope, parse_public_key, reassemble


def verify_export(store: Store, archive: Path, owner_id: str, identity: Path | None = None) -> list[str]:
    """Every problem found (empty when the archive holds exactly what it should)."""
    if archive.name.endswith(".age"):
        if identity is None:
            return [f"{archive.name} is encrypted: give the owner's age identity with --identity"]
        import pyrage
        from pyrage import x25519

        with tempfile.TemporaryDirectory() as scratch:
            plain = Path(scratch) / "archive.zip"
            try:
                key = x25519.Identity.from_str(_identity_line(identity))
                pyrage.decrypt_file(str(archive), str(plain), [key])
            except Exception as exc:  # pyrage's errors carry no common base class
                return [f"the archive does not decrypt with {identity.name}: {exc}"]
            return _verify_zip(store, plain, owner_id)
    return _verify_zip(store, archive, owner_id)


def _identity_line(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("AGE-SECRET-KEY-"):
            return line.strip()
    raise ValueError(f"{path} holds no AGE-SECRET-KEY line")


def _verify_zip(store: Store, path: Path, owner_id: str) -> list[str]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"not a readable zip archive: {exc}"]
    with zf:
        names = zf.namelist()
        if len(names) != len(set(names)):
            return ["the archive holds two files of the same name"]
        try:
            manifest = json.loads(zf.read(MANIFEST))
        except (KeyError, ValueError) as exc:
            return [f"manifest.json is missing or not JSON: {exc}"]
        problems: list[str] = []
        if manifest.get("owner_id") != owner_id:
            problems.append(f"the manifest is for owner {manifest.get('owner_id')}, not {owner_id}")
        clips = manifest.get("clips", [])
        if manifest.get("clip_count") != len(clips):
            problems.append("the manifest's clip_count does not match its clip list")
        listed = {c.get("file") for c in clips}
        for name in sorted(set(names) - listed - FIXED_FILES):
            problems.append(f"{name} is in the archive but not in the manifest")
        for name in sorted(FIXED_FILES - set(names)):
            problems.append(f"{name} is missing")
        for clip in clips:
            problems += _check_clip(store, zf, owner_id, clip, set(names))
        return problems


def _check_clip(store: Store, zf: zipfile.ZipFile, owner_id: str, clip: dict[str, Any], names: set[str]) -> list[str]:
    clip_id = clip.get("clip_id")
    name = clip.get("file")
    if name not in names:
        return [f"clip {clip_id}: {name} is listed but missing"]
    wav = zf.read(str(name))
    if hashlib.sha256(wav).hexdigest() != clip.get("wav_sha256"):
        return [f"clip {clip_id}: {name} does not match its SHA-256"]
    try:
        envelope = decode_envelope(reassemble(str(clip["envelope_header"]).encode("ascii"), wav,
                                              base64.b64decode(clip["signature"], validate=True)))
    except (KeyError, EnvelopeError, binascii.Error, UnicodeEncodeError) as exc:
        return [f"clip {clip_id}: header, signature and WAV do not form a valid envelope ({exc})"]
    h = envelope.header
    if (h.clip_id, h.owner_id, h.device_id) != (clip_id, owner_id, clip.get("device_id")):
        return [f"clip {clip_id}: its signed header names clip {h.clip_id}, owner {h.owner_id}, device {h.device_id}"]
    device = store.registry.device(h.device_id)
    if device is None or not envelope.verify(parse_public_key(device.public_key)):
        return [f"clip {clip_id}: the signature does not verify with {h.device_id}'s registered key"]
    if store.registry.owner_at(h.device_id, h.captured_at) != owner_id:
        return [f"clip {clip_id}: {h.device_id} was not bound to this owner at {h.captured_at}"]
    return []
