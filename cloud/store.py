"""The store: one database, a blob directory keyed by owner, and the keys that seal them.

    <data_dir>/earmark.db            registry, clip rows, quarantine rows, audit log
                                     (or PostgreSQL, when database_url is set)
    <data_dir>/blobs/<owner_id>/…    sealed clip envelopes, one file each
    <data_dir>/quarantine/…          sealed rejected payloads, tied to no owner
    master key                       elsewhere (see CloudSettings.master_key_path)

With PostgreSQL, several ingesters share the data dir (a shared filesystem at scale; see
deploy/SCALING.md for why blobs stay out of the database).

Crash-safe ordering: a blob is written whole (temp, fsync, rename, fsync dir) before the
row that points at it commits. A crash in between leaves a blob with no row; `sweep`
(run when an ingester starts) deletes those, and the unacked message is delivered again.
So no row is ever without its blob, and no stray blob outlives a restart. With several
ingesters, the sweep leaves alone blobs younger than SWEEP_GRACE_S: they may be another
live ingester's, written and not yet committed.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.audit import AuditLog
from cloud.crypto import (
    QUARANTINE_KEY_AAD,
    CryptoError,
    load_master_key,
    new_key,
    open_sealed,
    owner_key_aad,
    seal,
)
from cloud.db import Cursor, StoreError, open_database
from earmark_wire.durable import fsync_dir, write_file

if TYPE_CHECKING:
    from cloud.settings import CloudSettings


SWEEP_GRACE_S = 3600  # far beyond any batch's time between its blob writes and its commit


class OwnerError(LookupError):
    """An owner-scoped call named an owner that does not exist or was erased."""


class Store:
    def __init__(self, data_dir: Path, master_key_path: Path, create: bool = False, database_url: str = "") -> None:
        self.data_dir = Path(data_dir)
        self.master_key_path = Path(master_key_path)
        self.database_url = database_url
        if create:  # rows are metadata about people: nobody else on the machine reads them
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.data_dir.chmod(0o700)
        self.master_key = load_master_key(master_key_path)
        self.db = open_database(self.data_dir, database_url, create=create)
        self.audit = AuditLog(self.db, self.data_dir / "audit.head")
        self.blob_root = self.data_dir / "blobs"
        self.quarantine_root = self.data_dir / "quarantine"
        for folder in (self.blob_root, self.quarantine_root):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._owner_keys: dict[str, bytes] = {}
        self._writers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-writer")
        if create:
            with self.write() as cur:
                if not cur.execute("SELECT 1 FROM meta WHERE key = 'quarantine_key'").fetchone():
                    wrapped = seal(self.master_key, new_key(), QUARANTINE_KEY_AAD)
                    cur.execute("INSERT INTO meta VALUES ('quarantine_key', ?)", (wrapped,))
                    self.audit.append(cur, "store_created")
        self._check_master_key()

        from cloud.clips import Clips
        from cloud.quarantine import Quarantine
        from cloud.registry import Registry

        self.registry = Registry(self)
        self.clips = Clips(self)
        self.quarantine = Quarantine(self)

    @classmethod
    def open(cls, settings: CloudSettings, create: bool = False) -> Store:
        return cls(Path(settings.data_dir), settings.master_key_path, create, settings.database_url)

    def _check_master_key(self) -> None:
        try:
            self.quarantine_key()
        except CryptoError:
            raise StoreError("the master key does not open this store's keys: wrong master key file?") from None

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        """A durable transaction (StoreError if it fails); the audit head file follows the commit."""
        with self.db.transaction() as cur:
            yield cur
        self.audit.write_head()

    # -- keys ------------------------------------------------------------------------------

    def quarantine_key(self) -> bytes:
        row = self.db.query("SELECT value FROM meta WHERE key = 'quarantine_key'")
        if not row:
            raise StoreError("store has no quarantine key")
        return open_sealed(self.master_key, row[0]["value"], QUARANTINE_KEY_AAD)

    def owner_key(self, owner_id: str) -> bytes:
        """The owner's data key. Erased or unknown owners have none."""
        if owner_id in self._owner_keys:
            return self._owner_keys[owner_id]
        rows = self.db.query("SELECT wrapped_key FROM owners WHERE owner_id = ?", (owner_id,), owner=owner_id)
        if not rows:
            raise OwnerError(f"no owner {owner_id}")
        if rows[0]["wrapped_key"] is None:
            raise OwnerError(f"owner {owner_id} was erased")
        key = open_sealed(self.master_key, rows[0]["wrapped_key"], owner_key_aad(owner_id))
        self._owner_keys[owner_id] = key
        return key

    def forget_owner_key(self, owner_id: str) -> None:
        self._owner_keys.pop(owner_id, None)

    # -- blobs -----------------------------------------------------------------------------

    def write_blob(self, path: Path, data: bytes) -> None:
        self.write_blobs([(path, data)])

    def write_blobs(self, blobs: list[tuple[Path, bytes]]) -> None:
        """Write each blob whole and durably. The files are written and fsynced in parallel
        (the filesystem folds concurrent fsyncs into few journal commits), then each
        directory touched is fsynced once so the new names are durable too."""
        for folder in {path.parent for path, _ in blobs}:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            if len(blobs) == 1:
                write_file(blobs[0][0], blobs[0][1], sync_dir=False)
            else:
                list(self._writers.map(lambda blob: write_file(blob[0], blob[1], sync_dir=False), blobs))
            for folder in {path.parent for path, _ in blobs}:
                fsync_dir(folder)
        except OSError as exc:
            raise StoreError(f"could not write a blob: {exc.strerror}") from exc

    def sweep(self, min_age_s: float = 0) -> int:
        """Delete temp files and blobs that no row points at and that are at least `min_age_s`
        old (see the module docstring). Each owner's rows are read in that owner's scope."""
        cutoff = time.time() - min_age_s
        removed = 0

        def strays(root: Path, known: set[str]) -> Iterator[Path]:
            for path in root.rglob("*"):
                if path.is_file() and str(path.relative_to(self.data_dir)) not in known:
                    try:
                        if path.stat().st_mtime <= cutoff:
                            yield path
                    except FileNotFoundError:  # committed and renamed, or swept by another ingester
                        continue

        folders = [(folder, {r["blob_path"] for r in self.db.query(
            "SELECT blob_path FROM clips WHERE owner_id = ?", (folder.name,), owner=folder.name)})
            for folder in self.blob_root.iterdir() if folder.is_dir()]
        folders.append((self.quarantine_root,
                        {r["blob_path"] for r in self.db.query("SELECT blob_path FROM quarantine")}))
        loose = [p for p in self.blob_root.iterdir() if p.is_file()]  # only temp files belong at the top
        for path in [*loose, *(p for folder, known in folders for p in strays(folder, known))]:
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def prepare_ingest(self) -> int:
        """Before an ingester starts: claim the store and sweep. SQLite takes one ingester per
        store (a file lock) and sweeps everything stray; PostgreSQL takes many, so it sweeps
        only what is older than SWEEP_GRACE_S. Returns the number of files swept."""
        if self.db.backend == "sqlite":
            self.claim_for_ingest()
            return self.sweep()
        return self.sweep(SWEEP_GRACE_S)

    def claim_for_ingest(self) -> None:
        """Hold the store's ingest lock for the life of this process. One ingester per SQLite
        store: its start-up sweep would delete another ingester's blobs still in flight."""
        self._ingest_lock = open(self.data_dir / "ingest.lock", "a+")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(self._ingest_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._ingest_lock.seek(0)
            holder = self._ingest_lock.read().strip() or "unknown"
            raise StoreError(f"another ingester (pid {holder}) is using the store in {self.data_dir}: "
                             "run one ingester per SQLite store") from None
        self._ingest_lock.seek(0)
        self._ingest_lock.truncate()
        self._ingest_lock.write(f"{os.getpid()}\n")
        self._ingest_lock.flush()

    def counts(self) -> dict[str, int]:
        """Admin totals (numbers only: no call lists clips across owners)."""
        return {r["name"]: int(r["n"]) for r in self.db.gateway("counts")}

    def close(self) -> None:
        self._writers.shutdown()
        self.db.close()

