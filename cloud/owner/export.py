"""`earmark-cloud export`: everything an owner recorded, and nothing of anyone else's.

Owner-scoped at every step and fail closed. The rows come from a query on the owner's id;
each clip's blob must sit under the owner's prefix, open with the owner's data key and the
clip's own binding (owner, device, clip id), carry a header that names this owner, device
and clip, verify against the device's registered key, come from a device bound to this
owner at capture time, and match its stored hash. Any failure aborts the whole export with
the clip id and the failed check: no archive, no temporary file, an audit event. There is
no "leave it out" rule: a store that fails a check needs a person, not a partial archive.

The archive is written as a stream into a temporary file beside the destination and renamed
into place only when complete (and, with an age recipient, encrypted first).

Cost: the rows come from an index-only range scan of the owner's part of the clips index
(store/clips.py), and each device's key, bindings and chain end are looked up once, so an
export's time follows the owner's clips, not the store's size. Each clip is read, opened and
checked once (the WAV's SHA-256 is the header's, which decoding checked), and its rows of
the fixed files are rendered as it goes. (Checker threads were measured and dropped: the
checks hold the GIL for most of their time, so two threads took 1.5x the CPU for no gain.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import SigningKey

from earmark.cloud.owner.archive import (
    CSV_HEAD,
    CSV_NAME,
    DEVICES,
    INDEX,
    MANIFEST,
    README,
    SCHEMA_VERSION,
    SIGNATURE,
    STATEMENT,
    YOUR_DATA,
    clip_file_name,
    csv_row,
    entry_info,
    household_wraps,
    index_head,
    index_row,
    index_tail,
    render_readme,
)
from earmark.cloud.owner.signing import seal, sha256, sha256_file, signing_key
from earmark.cloud.owner.statement import DataRequest, render_statement
from earmark.cloud.store.clips import ClipRow
from earmark.cloud.store.crypto import CryptoError
from earmark.cloud.store.keys import OwnerError
from earmark.cloud.store.resealed import Resealed, sealed_audio
from earmark.cloud.store.store import Store
from earmark.runtime.durable import fsync_dir
from earmark.wire.envelope import Envelope, EnvelopeError, parse_public_key
from earmark.wire.errors import UsageError
from earmark.wire.timestamps import utc_now


class ExportError(UsageError, RuntimeError):
    """The export was refused or aborted; nothing was written. A person must look at the store
    before trying again, which nothing restarts: a usage error."""

    def __init__(self, message: str, clip_id: str | None = None, check: str | None = None) -> None:
        super().__init__(message)
        self.clip_id, self.check = clip_id, check


@dataclass(frozen=True)
class ExportResult:
    path: Path
    clips: int
    audio_bytes: int
    encrypted: bool
    sha256: str


@dataclass(frozen=True)
class KnownDevice:
    """A device's registered key, binding history and chain end, looked up once per export."""

    device_id: str
    public_key: Ed25519PublicKey
    bindings: list[tuple[str, str, str | None]]
    last_seq: int | None


class KnownDevices:
    """The devices an export meets, each looked up once (on the export's own thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: dict[str, KnownDevice | None] = {}

    def get(self, device_id: str) -> KnownDevice | None:
        if device_id not in self.seen:
            bindings = self.store.registry.bindings(device_id)
            device = self.store.registry.device(device_id, bindings)
            self.seen[device_id] = None if device is None else KnownDevice(
                device_id, parse_public_key(device.public_key), bindings, device.last_seq)
        return self.seen[device_id]


def checked_envelope(store: Store, owner_id: str, row: ClipRow, device: KnownDevice | None) -> Envelope | Resealed:
    """Open one of the owner's clips and run every check on it (see the module docstring).
    `device`: the row's device as the registry knows it (None: not registered)."""
    def fail(check: str, why: str) -> ExportError:
        return ExportError(f"clip {row.clip_id}: {why}", row.clip_id, check)

    if row.owner_id != owner_id:
        raise fail("owner_row", "its row belongs to another owner")
    if not row.blob_path.startswith(f"blobs/{owner_id}/") or ".." in row.blob_path:
        raise fail("blob_prefix", "its blob is not under the owner's prefix")
    try:
        envelope = store.clips.stored(owner_id, row)
    except FileNotFoundError:
        raise fail("blob_missing", f"its blob {row.blob_path} is missing") from None
    except CryptoError:
        raise fail("blob_key", "its blob does not open with the owner's key and this clip's binding") from None
    except EnvelopeError as exc:
        raise fail("envelope", f"its envelope does not parse ({exc})") from None
    if envelope.digest not in (row.envelope_sha256, None):  # None: a re-sealed v1 clip's, checked when opened
        raise fail("hash", "its envelope does not match the stored digest")
    h = envelope.header
    if (h.clip_id, h.device_id, h.owner_id) != (row.clip_id, row.device_id, owner_id):
        # Which other clip, device or owner it names is not this owner's business: say only what.
        expected = {"clip": (h.clip_id, row.clip_id), "device": (h.device_id, row.device_id),
                    "owner": (h.owner_id, owner_id)}
        wrong = [name for name, (seen, want) in expected.items() if seen != want]
        raise fail("header", f"its header names another {' and '.join(wrong)}")
    if device is None:
        raise fail("device", f"device {h.device_id} is not registered")
    if envelope.verify(device.public_key) is False:  # None: a re-sealed v1 clip's, checked when opened
        raise fail("signature", f"its signature does not verify with {h.device_id}'s registered key")
    bound = store.registry.owner_at(h.device_id, h.captured_at, device.bindings)
    if bound != owner_id:
        raise fail("binding", f"{h.device_id} was not this owner's device at {h.captured_at}")
    return envelope


@contextmanager
def _spill() -> Iterator[IO[bytes]]:
    """A temporary file for what grows with the clip count (bounded memory)."""
    with tempfile.TemporaryFile("w+b") as f:
        yield f


def export_owner(store: Store, owner_id: str, out_dir: Path, recipient: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 request: DataRequest | None = None) -> ExportResult:
    """The owner's whole data request answered in one archive (`request`: the operator's
    statement settings and the service's retention, for statement.txt)."""
    owner = store.registry.owner(owner_id)
    if owner is None:
        raise ExportError(f"no owner {owner_id}")
    if owner.erased_at:
        raise ExportError(f"owner {owner_id} was erased on {owner.erased_at}: no data remains to export")
    recipient = recipient or store.registry.recipient(owner_id)
    export_id = str(uuid.uuid4())
    created = utc_now()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    final = Path(out_dir) / f"earmark-export-{owner_id}-{stamp}.zip{'.age' if recipient else ''}"
    out_dir.mkdir(parents=True, exist_ok=True)
    temps = [Path(out_dir) / f".{final.name}.{export_id}.partial", Path(out_dir) / f".{final.name}.{export_id}.age"]
    key = signing_key(store)  # made (and recorded) before the read-only snapshot, if the store has none
    try:
        with store.db.owner_snapshot(owner_id):  # one consistent view, only this owner in scope
            total = store.clips.count(owner_id)
            statement = render_statement(request or DataRequest(), owner_id, created,
                                         store.registry.retention(owner_id))
            count, audio_bytes = _write_zip(store, owner_id, key, temps[0], export_id, created, total, progress,
                                            statement)
        produced, zip_digest = temps[0], sha256_file(temps[0])
        if recipient:
            import pyrage
            from pyrage import x25519

            # pyrage would make it with the process's umask: made 0600 first, as the zip was
            os.close(os.open(temps[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            pyrage.encrypt_file(str(temps[0]), str(temps[1]), [x25519.Recipient.from_str(recipient)])
            temps[1].chmod(0o600)
            temps[0].unlink()
            produced = temps[1]
        digest = sha256_file(produced)
        os.replace(produced, final)
        fsync_dir(final.parent)
    except BaseException as exc:
        for temp in temps:
            temp.unlink(missing_ok=True)
        store.audit.record("export_aborted", owner_id=owner_id, detail={
            "export_id": export_id, "reason": str(exc)[:500], "clip_id": getattr(exc, "clip_id", None),
            "check": getattr(exc, "check", None)})
        if isinstance(exc, OwnerError):
            raise ExportError(str(exc)) from None
        raise
    store.audit.record("export_completed", owner_id=owner_id, detail={
        "export_id": export_id, "clips": count, "sha256": digest, "zip_sha256": zip_digest,
        "encrypted": bool(recipient)})
    return ExportResult(final, count, audio_bytes, bool(recipient), digest)


def _write_zip(store: Store, owner_id: str, key: SigningKey, path: Path, export_id: str, created: str, total: int,
               progress: Callable[[int, int], None] | None, statement: bytes) -> tuple[int, int]:
    count = audio_bytes = 0
    sealed = False
    known = KnownDevices(store)
    files: dict[str, str] = {}  # every file's SHA-256, for signature.json
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        with (zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf, _spill() as entries, _spill() as csv_rows,
              _spill() as index_rows):
            marks = store.clips.marks(owner_id)  # the owner's own, few: read once, in the same snapshot
            for item in (_checked_item(store, owner_id, row, known.get(row.device_id), marks.get(row.clip_id))
                         for row in store.clips.iter_owner(owner_id)):
                zf.writestr(item.info, item.audio)
                files[item.info.filename] = item.audio_sha256
                entries.write((b",\n" if count else b"") + item.entry)
                csv_rows.write(item.csv_row)
                index_rows.write(item.index_row)
                sealed = sealed or item.sealed
                count += 1
                audio_bytes += len(item.audio)
                if progress:
                    progress(count, total)
            head = {"schema_version": SCHEMA_VERSION, "export_id": export_id, "owner_id": owner_id,
                    "created_at": created, "clip_count": count,
                    # verify-export tells a clip stored after the export from one it left out by this
                    "audit_seq": store.audit.head_seq()}
            files[MANIFEST] = _write_spilled(zf, entry_info(MANIFEST, created),
                                             json.dumps(head)[:-1].encode() + b', "clips": [\n', entries, b"\n]}\n")
            files[CSV_NAME] = _write_spilled(zf, entry_info(CSV_NAME, created), CSV_HEAD, csv_rows, b"")
            devices = _devices(store, owner_id, known)
            your_data = _your_data(store, owner_id, devices)
            for name, data in ((DEVICES, json.dumps(devices, indent=2).encode()),
                               (YOUR_DATA, json.dumps(your_data, indent=1).encode()),
                               (STATEMENT, statement),
                               (README, render_readme(owner_id, created, count))):
                zf.writestr(entry_info(name, created), data)
                files[name] = sha256(data)
            head_of_index = index_head(owner_id, created, count, statement)
            files[INDEX] = _write_spilled(zf, entry_info(INDEX, created), head_of_index, index_rows,
                                          index_tail(sealed, household_wraps(your_data["account"])))
            zf.writestr(entry_info(SIGNATURE, created), seal(key, owner_id, export_id, created, files))
        out.flush()  # the central directory is written when the ZipFile closes, above
        os.fsync(out.fileno())
    return count, audio_bytes


@dataclass(frozen=True)
class _Item:
    """One checked clip, ready for the archive: its WAV's zip entry and its manifest entry,
    with that entry's rows of clips.csv and index.html rendered as verify-export renders them."""

    info: zipfile.ZipInfo
    audio: memoryview
    audio_sha256: str
    entry: bytes
    csv_row: bytes
    index_row: bytes
    sealed: bool  # sealed to the household on its device: index.html then carries its player


def _checked_item(store: Store, owner_id: str, row: ClipRow, device: KnownDevice | None, mark: str | None) -> _Item:
    """Every check, then everything about the clip the archive needs (`mark`: the owner's, if any)."""
    envelope = checked_envelope(store, owner_id, row, device)
    h = envelope.header
    sealed = sealed_audio(envelope)
    name = clip_file_name(h.captured_at, h.clip_id, sealed)
    # The file's SHA-256: decoding hashed the WAV (or the device's ciphertext) against the header already.
    file_sha256 = hashlib.sha256(envelope.audio).hexdigest() if isinstance(envelope, Resealed) else h.audio_sha256
    entry: dict[str, Any] = {
        "clip_id": h.clip_id, "device_id": h.device_id, "captured_at": h.captured_at, "duration_ms": h.duration_ms,
        "trigger": h.trigger, "wake_word": h.wake_word, "file": name, "wav_sha256": file_sha256,
        "envelope_sha256": row.envelope_sha256, "envelope_header": envelope.header_bytes.decode("ascii"),
        "signature": base64.b64encode(envelope.signature).decode("ascii")}
    if isinstance(envelope, Resealed):  # the WAV the device signed, sealed later: its length, for checking it
        entry["resealed"] = {"wav_bytes": envelope.plain_audio_bytes}
    if mark:
        entry["mark"] = mark
    return _Item(entry_info(name, h.captured_at), memoryview(envelope.audio), file_sha256, json.dumps(entry).encode(),
                 csv_row(entry), index_row(entry), sealed)


def _write_spilled(zf: zipfile.ZipFile, info: zipfile.ZipInfo, head: bytes, spill: IO[bytes], tail: bytes) -> str:
    """Write head, the spilled middle and tail as one entry; its SHA-256."""
    digest = hashlib.sha256(head)
    with zf.open(info, "w") as out:
        out.write(head)
        spill.seek(0)
        while chunk := spill.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
        out.write(tail)
    digest.update(tail)
    return digest.hexdigest()


def _devices(store: Store, owner_id: str, known: KnownDevices) -> list[dict[str, Any]]:
    """devices.json: the owner's devices and those their clips came from, with each device's
    chain end (the highest wire v2 position the store had from it), so verify-export can tell
    a clip missing from the end of a chain."""
    ids = {device_id for device_id, device in known.seen.items() if device is not None}
    ids |= {d.device_id for d in store.registry.devices(owner_id)}
    result = []
    for device_id in sorted(ids):
        bindings = store.registry.bindings(device_id)
        device = store.registry.device(device_id, bindings)
        if device is None:
            continue
        periods = [{"bound_at": b, "unbound_at": u} for o, b, u in bindings if o == owner_id]
        result.append({"device_id": device_id, "public_key": device.public_key, "revoked_at": device.revoked_at,
                       "bound_to_you": periods, "chain_end": device.last_seq})
    return result


def _key_wraps(store: Store, owner_id: str) -> dict[str, Any]:
    wraps = store.household.wraps(owner_id)
    b64 = [(w.kind, base64.b64encode(w.wrapped).decode("ascii")) for w in wraps]
    return {"recovery": next((data for kind, data in b64 if kind == "recovery"), None),
            "previous": [data for kind, data in b64 if kind == "previous"]}


def _your_data(store: Store, owner_id: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    """your-data.json: everything else the store keeps about the owner, in the same snapshot
    (GDPR Art. 15 and 20): the account, the portal's passkeys and sessions (metadata only),
    the devices' last status, the deletion records that explain any gap in a device's chain,
    and every event of the owner's in the audit log (each with its chain hash, so
    verify-export can hold it to the store)."""
    owner = store.registry.owner(owner_id)
    ids = [str(d["device_id"]) for d in devices]
    presence = store.presence.of_owner(owner_id)
    log = [{**dict(e), "detail": json.loads(e["detail"]) if e["detail"] else None}
           for e in reversed(store.audit.of_owner(owner_id, limit=1 << 62))]
    return {"owner_id": owner_id,
            "account": {"display_name": owner.display_name if owner else "", "created_at": owner.created_at
                        if owner else "", "auto_delete_days": store.registry.retention(owner_id),
                        "exports_encrypted_to": store.registry.recipient(owner_id),
                        "household_keys": store.registry.household_recipients(owner_id),
                        # ciphertext only the recovery code (or a newer household key) opens: the
                        # archive's index.html opens the clips with the code through them
                        "household_key_wraps": _key_wraps(store, owner_id)},
            **store.portal.access_of(owner_id),
            "presence": [{"device_id": d, "online": p.online, "changed_at": p.changed_at, "status": p.status}
                         for d, p in sorted(presence.items())],
            "deleted_clips": store.clips.deleted_of(ids),
            "access_log": log}


def terminal_progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\rexporting [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
