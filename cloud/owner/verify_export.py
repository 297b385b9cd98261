"""`earmark-cloud verify-export`: check a finished archive on its own.

Opens the archive (decrypting it first with the owner's age identity if it is encrypted)
and checks: the manifest is well formed and names this owner; the archive holds exactly the
names the manifest implies (each clip's name follows from its signed capture time and id);
README.txt, index.html and clips.csv are byte for byte what the manifest renders to, and
devices.json lists only the owner's devices with their registered keys; each WAV matches
its SHA-256; each clip's header and signature, put
back together with the WAV, form a valid envelope that names this owner and verifies with
the device's registered key; and the device was bound to this owner at capture time.
For wire v2 clips it also checks each device's chain: no position missing that no recorded
deletion explains, and each clip naming the envelope before it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
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
        for clip in clips:
            found, link = _check_clip(store, zf, owner_id, clip, set(names))
            problems += found
            if link is not None:
                links.append(link)
        problems += _check_fixed_files(store, zf, owner_id, manifest, set(names))
        problems += check_chains(store, links)
        return problems


@dataclass(frozen=True)
class ChainLink:
    """A verified v2 clip's place in its device's chain."""

    device_id: str
    seq: int
    prev_sha256: str
    envelope_sha256: str


def check_chains(store: Store, links: list[ChainLink]) -> list[str]:
    """Per device: every position from 1 to the newest exported one is in the export or was
    deleted on record (by the owner, retention or erasure), and each clip names the one before
    it. Anything else was removed behind the export's back, or the chain was forged."""
    problems = []
    by_device: dict[str, dict[int, ChainLink]] = {}
    for link in links:
        if link.seq in by_device.setdefault(link.device_id, {}):
            problems.append(f"device {link.device_id}: two clips claim position {link.seq} of its chain")
        by_device[link.device_id][link.seq] = link
    for device_id, chain in sorted(by_device.items()):
        deleted = store.clips.deleted_seqs(device_id)
        missing = [seq for seq in range(1, max(chain) + 1) if seq not in chain and seq not in deleted]
        if missing:
            problems.append(f"device {device_id}: clip(s) at {_ranges(missing)} of its chain are not in the export, "
                            "and no recorded deletion or retention purge explains them")
        for seq, link in sorted(chain.items()):
            before = chain.get(seq - 1)
            if before is not None and link.prev_sha256 != before.envelope_sha256:
                problems.append(f"device {device_id}: the clip at {seq} does not follow the clip at {seq - 1} "
                                "(its prev_sha256 names another envelope)")
    return problems


def _ranges(numbers: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _parse_manifest(data: bytes) -> dict[str, Any]:
    """The manifest, its shape checked (ValueError naming what is wrong)."""
    manifest = json.loads(data)
    if not isinstance(manifest, dict):
        raise ValueError("not a JSON object")
    for key, kind in (("owner_id", str), ("created_at", str), ("clip_count", int), ("clips", list)):
        if not isinstance(manifest.get(key), kind):
            raise ValueError(f"{key} is missing or not a {kind.__name__}")
    for i, clip in enumerate(manifest["clips"]):
        if not isinstance(clip, dict):
            raise ValueError(f"clip entry {i} is not an object")
        for key, kinds in ENTRY_FIELDS.items():
            if not isinstance(clip.get(key), kinds) or isinstance(clip.get(key), bool):
                raise ValueError(f"clip entry {i}: {key} is missing or of the wrong type")
    return manifest


# Each manifest clip entry's fields and their JSON types, as export writes them.
ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "clip_id": (str,), "device_id": (str,), "captured_at": (str,), "duration_ms": (int,), "trigger": (str,),
    "wake_word": (str, type(None)), "file": (str,), "wav_sha256": (str,), "envelope_sha256": (str,),
    "envelope_header": (str,), "signature": (str,)}


def _check_fixed_files(store: Store, zf: zipfile.ZipFile, owner_id: str, manifest: dict[str, Any],
                       names: set[str]) -> list[str]:
    """README.txt, index.html and clips.csv must be exactly what the manifest renders to, and
    devices.json must list only the owner's devices with their registered keys."""
    clips, created = manifest["clips"], manifest["created_at"]
    rebuilt = {README: render_readme(owner_id, created, len(clips)),
               INDEX: b"".join(render_index(clips, owner_id, created, len(clips))),
               CSV_NAME: b"".join(render_csv(clips))}
    problems = [f"{name} is not what the manifest says it should be" for name, data in rebuilt.items()
                if name in names and zf.read(name) != data]
    if DEVICES in names:
        problems += _check_devices(store, zf.read(DEVICES), owner_id, {c["device_id"] for c in clips})
    return problems


def _check_devices(store: Store, data: bytes, owner_id: str, used: set[str]) -> list[str]:
    try:
        devices = json.loads(data)
        if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
            raise ValueError("not a list of objects")
    except ValueError as exc:
        return [f"devices.json is malformed: {exc}"]
    ours = {d.device_id for d in store.registry.devices(owner_id)} | used
    problems = []
    for entry in devices:
        if set(entry) != {"device_id", "public_key", "revoked_at", "bound_to_you"}:
            problems.append("devices.json has an entry with fields export does not write")
            continue
        registered = store.registry.device(str(entry["device_id"])) if entry["device_id"] in ours else None
        if registered is None or registered.public_key != entry["public_key"]:
            problems.append(f"devices.json lists {str(entry['device_id'])[:64]!r}, not one of this owner's "
                            "devices with its registered key")
    return problems


def _check_clip(store: Store, zf: zipfile.ZipFile, owner_id: str, clip: dict[str, Any],
                names: set[str]) -> tuple[list[str], ChainLink | None]:
    """Its problems, and (for a v2 clip that passed every check) its place in the chain."""
    clip_id = clip.get("clip_id")
    name = clip.get("file")
    if name not in names:
        return [f"clip {clip_id}: {name} is listed but missing"], None
    wav = zf.read(str(name))
    if hashlib.sha256(wav).hexdigest() != clip.get("wav_sha256"):
        return [f"clip {clip_id}: {name} does not match its SHA-256"], None
    try:
        raw = reassemble(str(clip["envelope_header"]).encode("ascii"), wav,
                         base64.b64decode(clip["signature"], validate=True))
        envelope = decode_envelope(raw)
    except (KeyError, EnvelopeError, binascii.Error, UnicodeEncodeError) as exc:
        return [f"clip {clip_id}: header, signature and WAV do not form a valid envelope ({exc})"], None
    h = envelope.header
    if (h.clip_id, h.owner_id, h.device_id) != (clip_id, owner_id, clip.get("device_id")):
        return [f"clip {clip_id}: its signed header names another clip, owner or device"], None
    signed = {"captured_at": h.captured_at, "duration_ms": h.duration_ms, "trigger": h.trigger,
              "wake_word": h.wake_word}
    if any(clip.get(key) != value for key, value in signed.items()):
        return [f"clip {clip_id}: the manifest's capture time, length or wake word differ from its signed header"], None
    device = store.registry.device(h.device_id)
    if device is None or not envelope.verify(parse_public_key(device.public_key)):
        return [f"clip {clip_id}: the signature does not verify with {h.device_id}'s registered key"], None
    if store.registry.owner_at(h.device_id, h.captured_at) != owner_id:
        return [f"clip {clip_id}: {h.device_id} was not bound to this owner at {h.captured_at}"], None
    if h.seq is None or h.prev_sha256 is None:
        return [], None  # a v1 clip: not chained
    return [], ChainLink(h.device_id, h.seq, h.prev_sha256, envelope.digest)
