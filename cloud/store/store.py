"""The store: one database, sealed blobs keyed by owner, and the keys that seal them.

    <data_dir>/earmark.db            registry, clip rows, quarantine rows, audit log
                                     (or PostgreSQL, when database_url is set)
    <data_dir>/blobs/<owner_id>/…    sealed clip envelopes, one file each (blob_store = "files";
                                     with "database", rows of clip_blobs: store/blobs.py)
    <data_dir>/quarantine/…          sealed rejected payloads, tied to no owner
    master key                       elsewhere (see CloudSettings.master_key_path), and beside it
                                     owner-keys/ (store/keystore.py), the erasure ledger and
                                     the export signing key: never in the data dir or a backup

`Store` only composes the parts: the database, the keys, the blob files, the audit log, and
the repositories built on them (registry, clips, quarantine, broker accounts), each of which
takes just the parts it needs. It holds no SQL of its own beyond what the sweep asks them.

With PostgreSQL, several ingesters share the blobs: a shared filesystem under the data dir,
or the database itself (blob_store = "database"; deploy/SCALING.md compares the two).

Crash-safe ordering: a blob is written whole (temp, fsync, rename, fsync dir) before the
row that points at it commits. A crash in between leaves a blob with no row, and so does a
database restored from a backup older than the blobs. `sweep` (run when an ingester starts)
never deletes a clip on a guess: a complete envelope of a live owner, signed by one of their
devices, gets its row back; a deleted clip's or an erased owner's blob finishes its
deletion; anything else is set aside for a person. With several ingesters, the sweep leaves
alone blobs younger than SWEEP_GRACE_S: they may be another live ingester's, written and not
yet committed.
"""

from __future__ import annotations

import fcntl
import functools
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from earmark.cloud.store.accounts import BrokerAccounts
from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.blobs import CLIPS, QUARANTINE, open_blobs
from earmark.cloud.store.clips import Clips, NewClip
from earmark.cloud.store.crypto import load_master_key
from earmark.cloud.store.database import Cursor, StoreError, open_database
from earmark.cloud.store.ddl import insert
from earmark.cloud.store.household import HouseholdKeys
from earmark.cloud.store.keys import Keys
from earmark.cloud.store.keystore import FOLDER as OWNER_KEYS
from earmark.cloud.store.keystore import OwnerSecrets
from earmark.cloud.store.ledger import DeletionLedger, ErasureLedger
from earmark.cloud.store.portal import PortalAccess
from earmark.cloud.store.presence import DevicePresence
from earmark.cloud.store.quarantine import Quarantine
from earmark.cloud.store.registry import Device, Owner, Registry
from earmark.cloud.store.resealed import MARK as RESEALED
from earmark.cloud.store.rotation import finish_rotation, rotate
from earmark.wire.envelope import EnvelopeError, decode_envelope, parse_public_key

if TYPE_CHECKING:
    from earmark.cloud.settings import CloudSettings, S3Settings


SWEEP_GRACE_S = 3600  # far beyond any batch's time between its blob writes and its commit


@dataclass
class SweepResult:
    temp_removed: int = 0  # temp files of interrupted writes
    reindexed: int = 0  # complete, signed clips whose rows were missing: rows restored
    deleted: int = 0  # blobs of deleted clips or erased owners: deletion finished
    set_aside: int = 0  # anything else: moved to set-aside/ for a person

    def __bool__(self) -> bool:
        return bool(self.temp_removed or self.reindexed or self.deleted or self.set_aside)


@dataclass
class StoreCheck:
    rows_without_blobs: int
    blobs_without_rows: int
    swept: SweepResult | None = None  # with repair


class Store(AbstractContextManager["Store"]):
    def __init__(self, data_dir: Path, master_key_path: Path, create: bool = False, database_url: str = "",
                 blob_store: str = "files", s3: S3Settings | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.master_key_path = Path(master_key_path)
        self.database_url = database_url
        self.blob_store, self.s3 = blob_store, s3
        if create:  # rows are metadata about people: nobody else on the machine reads them
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.data_dir.chmod(0o700)
        master_key = load_master_key(self.master_key_path)
        self.db = open_database(self.data_dir, database_url, create=create)
        self._closed = False
        self.audit = AuditLog(self.db, self.data_dir / "audit.head")
        self.keys = Keys(self.db, master_key, OwnerSecrets(self.master_key_path.parent / OWNER_KEYS))
        if not create:  # (a rotation cut short re-MACs the ledgers it left under the old key)
            master_key = finish_rotation(self.keys, self.master_key_path, list(self._ledgers(master_key)))
        self.erasures, self.deletions = self._ledgers(master_key)
        self.blobs = open_blobs(blob_store, self.data_dir, self.db, s3)
        if create:
            with self.audit.write() as cur:
                if self.keys.create_quarantine_key(cur):
                    cur.execute(insert("meta"), {"key": "owner_keys_outside", "value": b"1"})  # none to move
                    self.audit.append(cur, "store_created")
        self.keys.check_master_key()
        self.registry = Registry(self.db, self.keys, self.audit)
        self.clips = Clips(self.db, self.keys, self.blobs, self.audit, self.deletions)
        self.quarantine = Quarantine(self.db, self.keys, self.blobs, self.audit)
        self.accounts = BrokerAccounts(self.db, self.audit)
        self.portal = PortalAccess(self.db, self.audit)
        self.household = HouseholdKeys(self.db, self.audit, self.registry)
        self.presence = DevicePresence(self.db, self.registry)
        self._ingest_lock: IO[str] | None = None

    @classmethod
    def open(cls, settings: CloudSettings, create: bool = False) -> Store:
        return cls(Path(settings.data_dir), settings.master_key_path, create, settings.database_url,
                   settings.blob_store, settings.s3)

    def _ledgers(self, master_key: bytes) -> tuple[ErasureLedger, DeletionLedger]:
        """The erasure and deletion ledgers, MACed under `master_key`. Beside the master key,
        outside the data dir and the database: they survive a restore of either."""
        folder = self.master_key_path.parent
        return ErasureLedger(folder / "erasures.ledger", master_key), DeletionLedger(folder / "deletions.ledger",
                                                                                    master_key)

    def write(self) -> AbstractContextManager[Cursor]:
        """A durable transaction whose audit events' head is recorded after the commit."""
        return self.audit.write()

    def rotate_master_key(self) -> int:
        """A new master key (store/rotation.py); returns how many owner keys were re-wrapped."""
        owner_ids = [owner.owner_id for owner in self.registry.owners() if not owner.erased_at]
        count = rotate(self.keys, self.master_key_path, [self.erasures, self.deletions], owner_ids, self.audit.write)
        self.erasures, self.deletions = self._ledgers(self.keys.master_key)
        self.clips.deletions = self.deletions
        self.audit.record("master_key_rotated", detail={"owner_keys": count})
        return count

    def move_owner_keys_out(self) -> int:
        """Once, for a store made before owner secrets (store/keys.py: Keys.move_out)."""
        owner_ids = [owner.owner_id for owner in self.registry.owners() if not owner.erased_at]
        moved = self.keys.move_out(owner_ids, self.audit.write)
        if moved:
            self.audit.record("owner_keys_moved_out", detail={"owners": moved})
        return moved

    def strays(self, min_age_s: float = 0) -> list[str]:
        """Files under blobs/ and quarantine/ that no row points at and that are at least
        `min_age_s` old (younger ones may be another live ingester's, not yet committed)."""
        cutoff = time.time() - min_age_s
        folders = [(f"{CLIPS}/{owner}", self.clips.blob_paths(owner)) for owner in self.blobs.owner_folders()]
        folders.append((QUARANTINE, self.quarantine.blob_paths()))
        found = list(self.blobs.loose_files())
        for folder, known in folders:
            found += [path for path, mtime in self.blobs.files_under(folder) if path not in known and mtime <= cutoff]
        return found

    def sweep(self, min_age_s: float = 0) -> SweepResult:
        """Account for every stray file (see `strays` and `_sweep`)."""
        return self._sweep(self.strays(min_age_s))

    def _sweep(self, strays: list[str]) -> SweepResult:
        """Account for each of these stray files; nothing is deleted on a guess:
        - a temp file of an interrupted write is removed (it was never acked);
        - a clip blob that opens with its owner's key and holds a valid envelope signed by one
          of the owner's devices gets its row back (after a database restore, or a crash
          between blob and row): re-indexed;
        - a blob of a clip that was deleted, or of an erased owner, finishes its deletion, and
          so does a quarantined payload with no row (never acked, or purged);
        - anything else is moved to set-aside/ for a person to look at."""
        result = SweepResult()
        # The registry as this sweep sees it: after a restore, many strays share an owner.
        owner, devices = functools.cache(self.registry.owner), functools.cache(self.registry.devices)
        for path in strays:
            if self.blobs.is_temp(path):
                self.blobs.remove(path)
                result.temp_removed += 1
                continue
            outcome = self._account_for(path, owner, devices)
            if outcome == "reindexed":
                result.reindexed += 1
            elif outcome == "deleted":
                self.blobs.remove(path)
                result.deleted += 1
            else:
                self.audit.record("blob_set_aside", detail={"path": self.blobs.set_aside(path), "why": outcome})
                result.set_aside += 1
        return result

    def _account_for(self, path: str, owner_of: Callable[[str], Owner | None],
                     devices_of: Callable[[str], list[Device]]) -> str:
        """"reindexed", "deleted", or why the blob must be set aside."""
        parts = path.split("/")
        if len(parts) == 2 and parts[0] == QUARANTINE:
            # Its row never committed (the payload was not acked: it comes again) or was purged
            # (an erasure cut short between the blob and the row): either way, nothing to keep.
            return "deleted"
        if len(parts) != 3 or parts[0] != CLIPS or not parts[2].endswith(".bin"):
            return "not a clip blob"
        owner_id, clip_id = parts[1], parts[2].removesuffix(".bin")
        owner = owner_of(owner_id)
        if owner is not None and owner.erased_at:
            return "deleted"  # crypto-shredded already; this finishes the erasure
        if clip_id in self.clips.fingerprints([clip_id]):
            return "deleted"  # its row was deleted (the id is remembered), the blob was not yet
        if owner is None:
            return "no such owner"
        candidates = devices_of(owner_id)
        blob = self.blobs.read(path)
        if blob.startswith(RESEALED):  # only its row could name it
            return "a re-sealed clip whose row is gone (restore the database from after the re-sealing)"
        opened = self.clips.open_blob(owner_id, path, [d.device_id for d in candidates], blob)
        if opened is None:
            return "does not open with the owner's key and devices"
        device_id, raw = opened
        try:
            envelope = decode_envelope(raw)
        except EnvelopeError:
            return "not a valid envelope"
        device = next(d for d in candidates if d.device_id == device_id)
        h = envelope.header
        if ((h.clip_id, h.owner_id, h.device_id) != (clip_id, owner_id, device_id)
                or self.registry.identity_owner(self.registry.bindings(device_id)) != owner_id
                or not envelope.verify(parse_public_key(device.public_key))):
            return "not this owner's signed clip"
        self.clips.reindex(NewClip(owner_id, envelope, raw, envelope.digest))
        return "reindexed"

    def check(self, repair: bool = False) -> StoreCheck:
        """Rows whose blob is missing, and files no row accounts for. With `repair`: the strays
        are swept (see `sweep`), and each row without its blob is dropped, its id and hash
        remembered as deleted (an export could never include it, and it would abort every
        export of its owner). On PostgreSQL, blobs younger than SWEEP_GRACE_S are left alone."""
        grace = SWEEP_GRACE_S if self.db.many_writers else 0
        missing = {owner.owner_id: [row for row in self.clips.iter_owner(owner.owner_id)
                                    if not self.blobs.exists(row.blob_path)]
                   for owner in self.registry.owners() if not owner.erased_at}
        missing = {owner: rows for owner, rows in missing.items() if rows}
        strays = self.strays(grace)
        found = StoreCheck(rows_without_blobs=sum(len(rows) for rows in missing.values()),
                           blobs_without_rows=len(strays))
        if repair:
            found.swept = self._sweep(strays)
            for owner_id, rows in missing.items():
                self.clips.delete(owner_id, rows, "clip_rows_dropped", {"why": "blob missing"})
        return found

    def prepare_ingest(self) -> SweepResult:
        """Before an ingester starts: claim the store and sweep. SQLite takes one ingester per
        store (a file lock) and sweeps everything stray; PostgreSQL takes many, so it sweeps
        only what is older than SWEEP_GRACE_S."""
        if self.db.many_writers:
            return self.sweep(SWEEP_GRACE_S)
        self.claim_for_ingest()
        return self.sweep()

    def claim_for_ingest(self) -> None:
        """Hold the store's ingest lock for the life of this store. One ingester per SQLite
        store: its start-up sweep would delete another ingester's blobs still in flight."""
        lock = open(self.data_dir / "ingest.lock", "a+")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise StoreError(f"another ingester (pid {holder}) is using the store in {self.data_dir}: "
                             "run one ingester per SQLite store") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._ingest_lock = lock

    def counts(self) -> dict[str, int]:
        """Admin totals (numbers only: no call lists clips across owners)."""
        return {r["name"]: int(r["n"]) for r in self.db.gateway("counts")}

    def close(self) -> None:
        """Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self.blobs.close()
        self.db.close()
        if self._ingest_lock is not None:
            self._ingest_lock.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
