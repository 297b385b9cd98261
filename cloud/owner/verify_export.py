"""`earmark-cloud verify-export`: check a finished archive, against the store or offline.

Opens the archive (decrypting it first with the owner's age identity if it is encrypted)
and checks, in order:
- its signature (owner/signing.py): signature.json verifies with a key this store has used
  (or, offline, the key given), names this owner, and lists every other file with its
  SHA-256, exactly; an archive without one fails as unsigned;
- its bytes (owner/archive.py): rebuilt from what was read, in the canonical order, the zip is
  byte for byte the file given, so nothing can hide in a comment, before the zip, in an
  entry the central directory does not list, or in extra fields;
- the manifest is well formed and names this owner; the archive holds exactly the names the
  manifest implies (each clip's name follows from its signed capture time and id);
  README.txt, index.html and clips.csv are byte for byte what the manifest renders to, and
  devices.json lists only the owner's devices with their registered keys; each WAV matches
  its SHA-256; each clip's header and signature, put back together with the WAV, form a
  valid envelope that names this owner and verifies with the device's key; and the device
  was bound to this owner at capture time;
- against the store (not offline): the store's `export_completed` event for this export
  holds this very file's SHA-256, each device's chain end is one the store reached, and the
  archive is complete (cloud/owner/completeness.py): nothing the store held for the owner
  when it was made is missing, and no position of a device's chain is missing without a
  recorded deletion or refusal to explain it.
Offline, the device keys and bindings are devices.json's, which the signature covers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from earmark.cloud.owner.archive import (
    CSV_NAME,
    DEVICES,
    FIXED_FILES,
    FIXED_ORDER,
    INDEX,
    MANIFEST,
    README,
    SIGNATURE,
    STATEMENT,
    YOUR_DATA,
    YOUR_DATA_KEYS,
    clip_file_name,
    entry_info,
    household_wraps,
    is_sealed_entry,
    render_csv,
    render_index,
    render_readme,
)
from earmark.cloud.owner.completeness import ChainLink, ExportClaims, check_completeness
from earmark.cloud.owner.export import KnownDevice, KnownDevices
from earmark.cloud.owner.signing import Seal, known_keys, open_seal, sha256_file
from earmark.cloud.store.clips import MARK_NAMES
from earmark.cloud.store.registry import Registry
from earmark.cloud.store.resealed import Resealed, from_parts
from earmark.cloud.store.store import Store
from earmark.wire.envelope import Envelope, EnvelopeError, decode_envelope, parse_public_key, reassemble

Opener = Any  # the household's age identity (pyrage's x25519.Identity), or None


def verify_export(store: Store | None, archive: Path, owner_id: str, identity: Path | None = None,
                  keys: list[str] | None = None) -> list[str]:
    """Every problem found (empty when the archive holds exactly what it should). `store`:
    None to check offline, trusting the signing `keys` given."""
    trusted = list(keys or []) + ([k.key for k in known_keys(store)] if store is not None else [])
    import pyrage
    from pyrage import x25519

    try:
        key = x25519.Identity.from_str(_identity_line(identity)) if identity is not None else None
    except Exception as exc:  # pyrage's errors carry no common base class
        return [f"{identity} is not an age identity: {exc}"]
    if archive.name.endswith(".age"):
        if key is None:
            return [f"{archive.name} is encrypted: give the owner's age identity with --identity"]
        with tempfile.TemporaryDirectory() as scratch:
            plain = Path(scratch) / "archive.zip"
            try:
                pyrage.decrypt_file(str(archive), str(plain), [key])
            except Exception as exc:
                return [f"the archive does not decrypt with {identity}: {exc}"]
            return _verify_zip(store, plain, owner_id, trusted, key)
    return _verify_zip(store, archive, owner_id, trusted, key)


def _opened(resealed: Resealed, key: Opener) -> Envelope | Resealed:
    """A re-sealed clip opened with the household's identity, as its device sent it (to be
    checked as any envelope); as it is without the identity."""
    if key is None:
        return resealed
    import pyrage

    try:
        wav = pyrage.decrypt(resealed.audio, [key])
    except Exception as exc:  # pyrage's errors carry no common base class
        raise EnvelopeError("sealed", f"it does not open with the household's identity: {exc}") from None
    return resealed.original(wav)


def _identity_line(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("AGE-SECRET-KEY-"):
            return line.strip()
    raise ValueError(f"{path} holds no AGE-SECRET-KEY line")


class _Read:
    """The archive as its central directory lists it: every entry's SHA-256 (read once, in
    chunks), the small fixed files' bytes, and the clips read one at a time when checked, so
    memory does not grow with the archive."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.names = zf.namelist()
        self.hashes: dict[str, str] = {}
        self.fixed: dict[str, bytes] = {}
        for name in self.names:
            digest, kept = hashlib.sha256(), []
            with zf.open(name) as f:  # zipfile checks each entry's CRC and size as it is read
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    if name in FIXED_FILES:
                        kept.append(chunk)
            self.hashes[name] = digest.hexdigest()
            if name in FIXED_FILES:
                self.fixed[name] = b"".join(kept)

    def __contains__(self, name: object) -> bool:
        return name in self.hashes

    def read(self, name: str) -> bytes:
        return self.fixed[name] if name in self.fixed else self.zf.read(name)


def _verify_zip(store: Store | None, path: Path, owner_id: str, trusted: list[str], key: Opener) -> list[str]:
    zip_digest = sha256_file(path)  # of the zip itself (an encrypted archive's once decrypted)
    try:
        with zipfile.ZipFile(path) as zf:
            if len(zf.namelist()) != len(set(zf.namelist())):
                return ["the archive holds two files of the same name"]
            read = _Read(zf)
            return _verify_read(store, zip_digest, read, owner_id, trusted, key)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return [f"not a readable zip archive: {exc}"]


def _verify_read(store: Store | None, zip_digest: str, read: _Read, owner_id: str, trusted: list[str],
                 key: Opener) -> list[str]:
    if SIGNATURE not in read:
        return ["the archive is not signed (made before Earmark signed its exports, or its signature was "
                "removed): nothing proves this store made it or that it is unchanged"]
    sealed, why = open_seal(read.read(SIGNATURE), trusted)
    if sealed is None:
        return [why]
    problems = _check_seal(sealed, read, owner_id)
    try:
        manifest = _parse_manifest(read.read(MANIFEST)) if MANIFEST in read else None
    except ValueError as exc:
        return [*problems, f"manifest.json is malformed: {exc}"]
    if manifest is None:
        return [*problems, "manifest.json is missing"]
    problems += _check_rebuild(zip_digest, read, manifest)
    names = read.names
    if manifest["owner_id"] != owner_id:
        problems.append("the manifest is for another owner")
    clips = manifest["clips"]
    if manifest["clip_count"] != len(clips):
        problems.append("the manifest's clip_count does not match its clip list")
    # Only the names the manifest implies: each clip's file name follows from its signed
    # capture time and id (so no "../x.wav"), and the fixed files are exactly these.
    for clip in clips:
        if clip["file"] != clip_file_name(clip["captured_at"], clip["clip_id"], is_sealed_entry(clip)):
            problems.append(f"clip {clip['clip_id']}: its file name is not the one its capture time and id give")
    expected = FIXED_FILES | {clip["file"] for clip in clips}
    for name in sorted(set(names) - expected):
        problems.append(f"{name} is in the archive but not in the manifest")
    for name in sorted(expected - set(names) - {clip["file"] for clip in clips}):
        problems.append(f"{name} is missing")
    devices = _devices_source(store, read, owner_id, problems)
    links: list[ChainLink] = []
    for clip in clips:
        found, link = _check_clip(devices, read, owner_id, clip, key)
        problems += found
        if link is not None:
            links.append(link)
    chain_ends: dict[str, int] = {}
    problems += _check_fixed_files(store, read, owner_id, manifest, chain_ends)
    if store is not None:
        problems += _check_against_store(store, sealed, owner_id, zip_digest, chain_ends)
        claims = ExportClaims(owner_id, {str(clip["clip_id"]) for clip in clips}, manifest.get("audit_seq"),
                              chain_ends)
        problems += check_completeness(store, claims, links)
    return problems


def _check_seal(sealed: Seal, read: _Read, owner_id: str) -> list[str]:
    problems = []
    if sealed.owner_id != owner_id:
        problems.append("the archive's signature is for another owner")
    present = {name: digest for name, digest in read.hashes.items() if name != SIGNATURE}
    for name in sorted(set(present) | set(sealed.files)):
        if name not in sealed.files:
            problems.append(f"{name} is in the archive but its signature does not cover it")
        elif name not in present:
            problems.append(f"{name} is signed for but missing from the archive")
        elif present[name] != sealed.files[name]:
            problems.append(f"{name} was changed after the archive was signed")
    return problems


def _check_rebuild(zip_digest: str, read: _Read, manifest: dict[str, Any]) -> list[str]:
    """The zip rebuilt canonically from what was read must be byte for byte the file given."""
    order = [str(c["file"]) for c in manifest["clips"]] + list(FIXED_ORDER)
    times = {str(c["file"]): str(c["captured_at"]) for c in manifest["clips"]}
    digest = hashlib.sha256()
    with tempfile.TemporaryFile("w+b") as rebuilt:
        try:
            with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_STORED) as zf:
                for name in order:
                    if name in read:
                        info = entry_info(name, times.get(name, str(manifest["created_at"])))
                        with read.zf.open(name) as src, zf.open(info, "w") as dst:
                            while chunk := src.read(1 << 20):
                                dst.write(chunk)
        except ValueError:
            return ["the archive's entries cannot be rebuilt (a capture time is not a time)"]
        rebuilt.seek(0)
        while chunk := rebuilt.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != zip_digest:
        return ["the zip file holds more than its entries (a comment, bytes before or between them, an entry "
                "its directory does not list, or fields export does not write)"]
    return []


def _check_against_store(store: Store, sealed: Seal, owner_id: str, zip_digest: str,
                         chain_ends: dict[str, int]) -> list[str]:
    made = [e for e in store.audit.owner_events(owner_id, "export_completed")
            if e.get("export_id") == sealed.export_id]
    problems = []
    if not made:
        problems.append(f"the store has no record of making export {sealed.export_id[:36]}")
    elif made[0].get("zip_sha256", made[0].get("sha256")) != zip_digest:  # the zip's, encrypted or not
        problems.append("this file is not the archive the store made for that export (its SHA-256 differs from the "
                        "store's record)")
    for device_id, end in sorted(chain_ends.items()):
        device = store.registry.device(device_id)
        if device is None or (device.last_seq or 0) < end:
            problems.append(f"devices.json says {device_id}'s chain reached {end}, which the store never did")
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
    "mark": (str, type(None)),  # the owner's own mark, only on a marked clip (and absent in older archives)
    "resealed": (dict, type(None))}  # a clip re-sealed by the store's upgrade: the length of the WAV it signed


def _check_fixed_files(store: Store | None, read: _Read, owner_id: str, manifest: dict[str, Any],
                       chain_ends: dict[str, int]) -> list[str]:
    """README.txt, index.html and clips.csv must be exactly what the manifest renders to, and
    devices.json must list only the owner's devices with their registered keys (their chain
    ends go into `chain_ends`)."""
    clips, created = manifest["clips"], manifest["created_at"]
    statement = read.read(STATEMENT) if STATEMENT in read else b""
    try:
        wraps = household_wraps(json.loads(read.read(YOUR_DATA)).get("account")) if YOUR_DATA in read else None
    except (ValueError, AttributeError):
        wraps = None  # _check_your_data says what is wrong with it
    rebuilt = {README: render_readme(owner_id, created, len(clips)),
               INDEX: b"".join(render_index(clips, owner_id, created, len(clips), statement, wraps)),
               CSV_NAME: b"".join(render_csv(clips))}
    problems = [f"{name} is not what the manifest says it should be" for name, data in rebuilt.items()
                if name in read and read.read(name) != data]
    if DEVICES in read:
        problems += _check_devices(store, read.read(DEVICES), owner_id, {c["device_id"] for c in clips}, chain_ends)
    if YOUR_DATA in read:
        problems += _check_your_data(store, read.read(YOUR_DATA), owner_id)
    if statement and not statement.startswith(b"About your data\n"):
        problems.append("statement.txt is not the statement export writes")
    return problems


def _check_your_data(store: Store | None, data: bytes, owner_id: str) -> list[str]:
    """your-data.json: its shape, its owner, and (with the store) each access-log event it
    lists is the store's own event of that place in the chain (by the event's hash)."""
    try:
        found = json.loads(data)
        if not isinstance(found, dict) or set(found) != YOUR_DATA_KEYS:
            raise ValueError("not the fields export writes")
        log = found["access_log"]
        if not isinstance(log, list) or not all(isinstance(e, dict) and isinstance(e.get("seq"), int)
                                                for e in log):
            raise ValueError("its access log is not a list of events")
    except ValueError as exc:
        return [f"your-data.json is malformed: {exc}"]
    if found["owner_id"] != owner_id:
        return ["your-data.json is another owner's"]
    if store is None:
        return []
    recorded = {int(e["seq"]): str(e["hash"]) for e in store.audit.of_owner(owner_id, limit=1 << 62)}
    wrong = [e["seq"] for e in log if recorded.get(int(e["seq"])) != e.get("hash")]
    return [f"your-data.json lists {len(wrong)} event(s) the store's audit log does not hold as they are "
            f"(first at seq {wrong[0]})"] if wrong else []


DEVICE_FIELDS = {"device_id", "public_key", "revoked_at", "bound_to_you"}  # and chain_end, since wire v2


def _device_entries(data: bytes) -> list[dict[str, Any]]:
    devices = json.loads(data)
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ValueError("not a list of objects")
    return devices


def _check_devices(store: Store | None, data: bytes, owner_id: str, used: set[str],
                   chain_ends: dict[str, int]) -> list[str]:
    try:
        devices = _device_entries(data)
    except ValueError as exc:
        return [f"devices.json is malformed: {exc}"]
    ours = ({d.device_id for d in store.registry.devices(owner_id)} | used) if store is not None else used
    problems = []
    for entry in devices:
        if set(entry) - {"chain_end"} != DEVICE_FIELDS or not isinstance(entry.get("chain_end", 0), int | None):
            problems.append("devices.json has an entry with fields export does not write")
            continue
        if store is not None:
            registered = store.registry.device(str(entry["device_id"])) if entry["device_id"] in ours else None
            if registered is None or registered.public_key != entry["public_key"]:
                problems.append(f"devices.json lists {str(entry['device_id'])[:64]!r}, not one of this owner's "
                                "devices with its registered key")
                continue
        if isinstance(entry.get("chain_end"), int):
            chain_ends[str(entry["device_id"])] = int(entry["chain_end"])
    return problems


DeviceSource = Callable[[str], KnownDevice | None]


def _devices_source(store: Store | None, read: _Read, owner_id: str, problems: list[str]) -> DeviceSource:
    """Where a clip's device key and bindings come from: the registry, or offline the signed
    devices.json (each device bound to this owner for the periods it lists)."""
    if store is not None:
        return KnownDevices(store).get
    found: dict[str, KnownDevice] = {}
    try:
        for entry in _device_entries(read.read(DEVICES) if DEVICES in read else b"[]"):
            periods = [(owner_id, str(p["bound_at"]), p.get("unbound_at")) for p in entry.get("bound_to_you", [])]
            key: Ed25519PublicKey = parse_public_key(str(entry["public_key"]))
            found[str(entry["device_id"])] = KnownDevice(str(entry["device_id"]), key, periods, entry.get("chain_end"))
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"devices.json is malformed: {exc}")
    return found.get


def _check_clip(devices: DeviceSource, read: _Read, owner_id: str, clip: dict[str, Any],
                key: Opener) -> tuple[list[str], ChainLink | None]:
    """Its problems, and (for a v2 clip that passed every check) its place in the chain. A
    clip re-sealed by the store's upgrade is held to its device's signature whole only when
    `key` (the household's identity) opens it; without, its v2 header's signature is checked."""
    clip_id = clip.get("clip_id")
    name = clip.get("file")
    if name not in read:
        return [f"clip {clip_id}: {name} is listed but missing"], None
    wav = read.read(str(name))
    try:
        header_bytes = str(clip["envelope_header"]).encode("ascii")
        signature = base64.b64decode(clip["signature"], validate=True)
        envelope: Envelope | Resealed
        if "resealed" in clip:
            if hashlib.sha256(wav).hexdigest() != clip.get("wav_sha256"):
                return [f"clip {clip_id}: {name} does not match its SHA-256"], None
            envelope = _opened(from_parts(header_bytes, int(clip["resealed"]["wav_bytes"]), signature, wav), key)
        else:
            envelope = decode_envelope(reassemble(header_bytes, wav, signature))
    except EnvelopeError as exc:
        if exc.reason == "audio_hash" and hashlib.sha256(wav).hexdigest() != clip.get("wav_sha256"):
            return [f"clip {clip_id}: {name} does not match its SHA-256"], None
        return [f"clip {clip_id}: header, signature and WAV do not form a valid envelope ({exc})"], None
    except (KeyError, TypeError, ValueError, binascii.Error, UnicodeEncodeError) as exc:
        return [f"clip {clip_id}: header, signature and WAV do not form a valid envelope ({exc})"], None
    h = envelope.header
    if "resealed" not in clip and h.audio_sha256 != clip.get("wav_sha256"):
        # decoding hashed the WAV (or the device's ciphertext): it is the header's
        return [f"clip {clip_id}: {name} does not match its SHA-256"], None
    if (h.clip_id, h.owner_id, h.device_id) != (clip_id, owner_id, clip.get("device_id")):
        return [f"clip {clip_id}: its signed header names another clip, owner or device"], None
    signed = {"captured_at": h.captured_at, "duration_ms": h.duration_ms, "trigger": h.trigger,
              "wake_word": h.wake_word}
    if any(clip.get(key) != value for key, value in signed.items()):
        return [f"clip {clip_id}: the manifest's capture time, length or wake word differ from its signed header"], None
    device = devices(h.device_id)
    if device is None or envelope.verify(device.public_key) is False:  # None: a re-sealed v1 clip left closed
        return [f"clip {clip_id}: the signature does not verify with {h.device_id}'s registered key"], None
    if Registry.owner_at_time(h.captured_at, device.bindings) != owner_id:
        return [f"clip {clip_id}: {h.device_id} was not bound to this owner at {h.captured_at}"], None
    if h.seq is None or h.prev_sha256 is None or envelope.digest is None:
        return [], None  # a v1 clip: not chained
    return [], ChainLink(h.device_id, h.seq, h.prev_sha256, envelope.digest)
