"""`earmark-cloud verify-export`: check a finished archive on its own.

Opens the archive (decrypting it first with the owner's age identity if it is encrypted)
and checks: the manifest is well formed and names this owner; the archive holds exactly the
names the manifest implies (each clip's name follows from its signed capture time and id);
README.txt, index.html and clips.csv are byte for byte what the manifest renders to, and
devices.json lists only the owner's devices with their registered keys; each WAV matches
its SHA-256; each clip's header and signature, put
back together with the WAV, form a valid envelope that names this owner and verifies with
the device's registered key; and the device was bound to this owner at capture time.
Then that it is complete (cloud/owner/completeness.py): nothing the store held for the owner
when it was made is missing from it, and no position of a device's chain is missing without
a recorded deletion or refusal to explain it.
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

from earmark.cloud.owner.archive import (
    CSV_NAME,
    DEVICES,
    FIXED_FILES,
    INDEX,
    MANIFEST,
    README,
    clip_file_name,
    render_csv,
    render_index,
    render_readme,
)
from earmark.cloud.owner.completeness import ChainLink, ExportClaims, check_completeness
from earmark.cloud.owner.export import KnownDevices
from earmark.cloud.store.clips import MARK_NAMES
from earmark.cloud.store.store import Store
from earmark.wire.envelope import EnvelopeError, decode_envelope, reassemble


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
            manifest = _parse_manifest(zf.read(MANIFEST))
        except KeyError:
            return ["manifest.json is missing"]
        except ValueError as exc:
            return [f"manifest.json is malformed: {exc}"]
        problems: list[str] = []
        if manifest["owner_id"] != owner_id:
            problems.append("the manifest is for another owner")
        clips = manifest["clips"]
        if manifest["clip_count"] != len(clips):
            problems.append("the manifest's clip_count does not match its clip list")
        # Only the names the manifest implies: each clip's file name follows from its signed
        # capture time and id (so no "../x.wav"), and the fixed files are exactly these.
        for clip in clips:
            if clip["file"] != clip_file_name(clip["captured_at"], clip["clip_id"]):
                problems.append(f"clip {clip['clip_id']}: its file name is not the one its capture time and id give")
        expected = FIXED_FILES | {clip["file"] for clip in clips}
        for name in sorted(set(names) - expected):
            problems.append(f"{name} is in the archive but not in the manifest")
        for name in sorted(expected - set(names) - {clip["file"] for clip in clips}):
            problems.append(f"{name} is missing")
        links: list[ChainLink] = []
        known = KnownDevices(store)
        for clip in clips:
            found, link = _check_clip(known, zf, owner_id, clip, set(names))
            problems += found
            if link is not None:
                links.append(link)
        chain_ends: dict[str, int] = {}
        problems += _check_fixed_files(store, zf, owner_id, manifest, set(names), chain_ends)
        claims = ExportClaims(owner_id, {str(clip["clip_id"]) for clip in clips}, manifest.get("audit_seq"),
                              chain_ends)
        problems += check_completeness(store, claims, links)
        return problems


def _parse_manifest(data: bytes) -> dict[str, Any]:
    """The manifest, its shape checked (ValueError naming what is wrong)."""
    manifest = json.loads(data)
    if not isinstance(manifest, dict):
        raise ValueError("not a JSON object")
    for key, kind in (("owner_id", str), ("created_at", str), ("clip_count", int), ("clips", list)):
        if not isinstance(manifest.get(key), kind):
            raise ValueError(f"{key} is missing or not a {kind.__name__}")
    if not isinstance(manifest.get("audit_seq", 0), int) or isinstance(manifest.get("audit_seq"), bool):
        raise ValueError("audit_seq is not an integer")  # absent in archives made before it existed
    for i, clip in enumerate(manifest["clips"]):
        if not isinstance(clip, dict):
            raise ValueError(f"clip entry {i} is not an object")
        for key, kinds in ENTRY_FIELDS.items():
            if not isinstance(clip.get(key), kinds) or isinstance(clip.get(key), bool):
                raise ValueError(f"clip entry {i}: {key} is missing or of the wrong type")
        if clip.get("mark") is not None and clip["mark"] not in MARK_NAMES:
            raise ValueError(f"clip entry {i}: mark {clip['mark']!r} is not one Earmark makes")
    return manifest


# Each manifest clip entry's fields and their JSON types, as export writes them.
ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "clip_id": (str,), "device_id": (str,), "captured_at": (str,), "duration_ms": (int,), "trigger": (str,),
    "wake_word": (str, type(None)), "file": (str,), "wav_sha256": (str,), "envelope_sha256": (str,),
    "envelope_header": (str,), "signature": (str,),
    "mark": (str, type(None))}  # the owner's own mark, only on a marked clip (and absent in older archives)


def _check_fixed_files(store: Store, zf: zipfile.ZipFile, owner_id: str, manifest: dict[str, Any],
                       names: set[str], chain_ends: dict[str, int]) -> list[str]:
    """README.txt, index.html and clips.csv must be exactly what the manifest renders to, and
    devices.json must list only the owner's devices with their registered keys (their chain
    ends go into `chain_ends`)."""
    clips, created = manifest["clips"], manifest["created_at"]
    rebuilt = {README: render_readme(owner_id, created, len(clips)),
               INDEX: b"".join(render_index(clips, owner_id, created, len(clips))),
               CSV_NAME: b"".join(render_csv(clips))}
    problems = [f"{name} is not what the manifest says it should be" for name, data in rebuilt.items()
                if name in names and zf.read(name) != data]
    if DEVICES in names:
        problems += _check_devices(store, zf.read(DEVICES), owner_id, {c["device_id"] for c in clips}, chain_ends)
    return problems


DEVICE_FIELDS = {"device_id", "public_key", "revoked_at", "bound_to_you"}  # and chain_end, since wire v2


def _check_devices(store: Store, data: bytes, owner_id: str, used: set[str], chain_ends: dict[str, int]) -> list[str]:
    try:
        devices = json.loads(data)
        if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
            raise ValueError("not a list of objects")
    except ValueError as exc:
        return [f"devices.json is malformed: {exc}"]
    ours = {d.device_id for d in store.registry.devices(owner_id)} | used
    problems = []
    for entry in devices:
        if set(entry) - {"chain_end"} != DEVICE_FIELDS or not isinstance(entry.get("chain_end", 0), int | None):
            problems.append("devices.json has an entry with fields export does not write")
            continue
        registered = store.registry.device(str(entry["device_id"])) if entry["device_id"] in ours else None
        if registered is None or registered.public_key != entry["public_key"]:
            problems.append(f"devices.json lists {str(entry['device_id'])[:64]!r}, not one of this owner's "
                            "devices with its registered key")
        elif isinstance(entry.get("chain_end"), int):
            chain_ends[str(entry["device_id"])] = int(entry["chain_end"])
    return problems


def _check_clip(known: KnownDevices, zf: zipfile.ZipFile, owner_id: str, clip: dict[str, Any],
                names: set[str]) -> tuple[list[str], ChainLink | None]:
    """Its problems, and (for a v2 clip that passed every check) its place in the chain."""
    clip_id = clip.get("clip_id")
    name = clip.get("file")
    if name not in names:
        return [f"clip {clip_id}: {name} is listed but missing"], None
    wav = zf.read(str(name))
    try:
        raw = reassemble(str(clip["envelope_header"]).encode("ascii"), wav,
                         base64.b64decode(clip["signature"], validate=True))
        envelope = decode_envelope(raw)
    except EnvelopeError as exc:
        if exc.reason == "audio_hash" and hashlib.sha256(wav).hexdigest() != clip.get("wav_sha256"):
            return [f"clip {clip_id}: {name} does not match its SHA-256"], None
        return [f"clip {clip_id}: header, signature and WAV do not form a valid envelope ({exc})"], None
    except (KeyError, binascii.Error, UnicodeEncodeError) as exc:
        return [f"clip {clip_id}: header, signature and WAV do not form a valid envelope ({exc})"], None
    h = envelope.header
    if h.audio_sha256 != clip.get("wav_sha256"):  # decoding hashed the WAV: it is the header's
        return [f"clip {clip_id}: {name} does not match its SHA-256"], None
    if (h.clip_id, h.owner_id, h.device_id) != (clip_id, owner_id, clip.get("device_id")):
        return [f"clip {clip_id}: its signed header names another clip, owner or device"], None
    signed = {"captured_at": h.captured_at, "duration_ms": h.duration_ms, "trigger": h.trigger,
              "wake_word": h.wake_word}
    if any(clip.get(key) != value for key, value in signed.items()):
        return [f"clip {clip_id}: the manifest's capture time, length or wake word differ from its signed header"], None
    device = known.get(h.device_id)
    if device is None or not envelope.verify(device.public_key):
        return [f"clip {clip_id}: the signature does not verify with {h.device_id}'s registered key"], None
    if known.store.registry.owner_at(h.device_id, h.captured_at, device.bindings) != owner_id:
        return [f"clip {clip_id}: {h.device_id} was not bound to this owner at {h.captured_at}"], None
    if h.seq is None or h.prev_sha256 is None:
        return [], None  # a v1 clip: not chained
    return [], ChainLink(h.device_id, h.seq, h.prev_sha256, envelope.digest)
