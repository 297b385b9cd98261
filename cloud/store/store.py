"""The store: one database, a blob directory keyed by owner, and the keys that seal them.

    <data_dir>/earmark.db            registry, clip rows, quarantine rows, audit log
                                     (or PostgreSQL, when database_url is set)
    <data_dir>/blobs/<owner_id>/…    sealed clip envelopes, one file each
    <data_dir>/quarantine/…          sealed rejected payloads, tied to no owner
    master key                       elsewhere (see CloudSettings.master_key_path)

`Store` only composes the parts: the database, the keys, the blob files, the audit log, and
the repositories built on them (registry, clips, quarantine, broker accounts), each of which
takes just the parts it needs. It holds no SQL of its own beyond what the sweep asks them.

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
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from earmark.cloud.store.accounts import BrokerAccounts
from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.blobs import QUARANTINE, Blobs
from earmark.cloud.store.clips import Clips
from earmark.cloud.store.crypto import load_master_key
from earmark.cloud.store.database import Cursor, StoreError, open_database
from earmark.cloud.store.keys import Keys
from earmark.cloud.store.quarantine import Quarantine
from earmark.cloud.store.registry import Registry

if TYPE_CHECKING:
    from earmark.cloud.settings import CloudSettings


SWEEP_GRACE_S = 3600  # far beyond any batch's time between its blob writes and its commit


class Store(AbstractContextManager["Store"]):
    def __init__(self, data_dir: Path, master_key_path: Path, create: bool = False, database_url: str = "") -> None:
        self.data_dir = Path(data_dir)
        self.master_key_path = Path(master_key_path)
        self.database_url = database_url
        if create:  # rows are metadata about people: nobody else on the machine reads them
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.data_dir.chmod(0o700)
        master_key = load_master_key(self.master_key_path)
        self.db = open_database(self.data_dir, database_url, create=create)
        self._closed = False
        self.audit = AuditLog(self.db, self.data_dir / "audit.head")
        self.keys = Keys(self.db, master_key)
        self.blobs = Blobs(self.data_dir)
        if create:
            with self.audit.write() as cur:
                if self.keys.create_quarantine_key(cur):
                    self.audit.append(cur, "store_created")
        self.keys.check_master_key()
        self.registry = Registry(self.db, self.keys, self.audit)
        self.clips = Clips(self.db, self.keys, self.blobs, self.audit)
        self.quarantine = Quarantine(self.db, self.keys, self.blobs, self.audit)
        self.accounts = BrokerAccounts(self.db, self.audit)
        self._ingest_lock: IO[str] | None = None

    @classmethod
    def open(cls, settings: CloudSettings, create: bool = False) -> Store:
        return cls(Path(settings.data_dir), settings.master_key_path, create, settings.database_url)

    def write(self) -> AbstractContextManager[Cursor]:
        """A durable transaction whose audit events' head is recorded after the commit."""
        return self.audit.write()

    def sweep(self, min_age_s: float = 0) -> int:
        """Delete temp files and blobs that no row points at and that are at least `min_age_s`
        old (see the module docstring). Each owner's rows are read in that owner's scope."""
        cutoff = time.time() - min_age_s
        folders = [(f"blobs/{owner}", self.clips.blob_paths(owner)) for owner in self.blobs.owner_folders()]
        folders.append((QUARANTINE, self.quarantine.blob_paths()))

        def strays() -> Iterator[str]:
            yield from self.blobs.loose_files()
            for folder, known in folders:
                yield from (path for path, mtime in self.blobs.files_under(folder)
                            if path not in known and mtime <= cutoff)

        removed = 0
        for path in strays():
            self.blobs.remove(path)
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
