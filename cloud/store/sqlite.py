"""The embedded backend: one SQLite file in WAL mode with full fsync, its schema made and
migrated from the one description (store/migrations.py) and versioned with PRAGMA
user_version. A commit returns only once it is durable. SQLite has no row-level security:
every owner-scoped statement names its owner in its WHERE clause."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from earmark.cloud.store.database import Cursor, Params, Row, StoreError, StoreUnavailable, check_snapshot
from earmark.cloud.store.ddl import create_schema
from earmark.cloud.store.gateways import GATEWAYS
from earmark.cloud.store.migrations import SCHEMA_VERSION, SchemaVersionError, steps
from earmark.cloud.store.schema import BLOB_TABLES

FILE = "earmark.db"


class _SqliteCursor(sqlite3.Cursor):
    def scope(self, owner_id: str, erasing: bool = False) -> None:
        """No row-level security in SQLite: every owner-scoped statement names its owner."""


def _owner_only(path: Path) -> None:
    """The database and its -wal and -shm files readable by the store's user alone, whatever
    the umask: SQLite makes the other two with the database's mode, so the database is made
    0600 before SQLite opens it (and a store made before this is put right)."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class SqliteDatabase:
    """One SQLite connection, shared by the threads of one process under a lock."""

    backend = "sqlite"
    many_writers = False
    share_lock = ""  # BEGIN IMMEDIATE holds the whole database until the commit

    def __init__(self, path: Path, create: bool = False) -> None:
        if not create and not path.exists():
            raise StoreError(f"no store at {path}: run `earmark-cloud init --data-dir {path.parent}`")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._snapshot_owner: str | None = None
        _owner_only(path)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.row_factory = _dict_row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA secure_delete=ON")  # a deleted row's bytes are zeroed, not left in free space
        self._migrate(create)

    def _migrate(self, create: bool) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()["user_version"]
        if version == 0 and not create:
            raise StoreError(f"{self.path} is not an Earmark store")
        try:
            todo = [(SCHEMA_VERSION, create_schema("sqlite"))] if version == 0 else steps("sqlite", version)
        except SchemaVersionError as exc:
            raise StoreError(f"store {self.path}: {exc}") from None
        for number, statements in todo:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.conn.execute("ROLLBACK")
                raise StoreError(f"store {self.path}: migration to schema {number} failed ({exc}); "
                                 "nothing was changed") from None

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception. Not re-entrant."""
        with self._lock:
            if self._snapshot_owner is not None:
                raise StoreError("no writes inside a read snapshot")
            cur = self.conn.cursor(factory=_SqliteCursor)
            try:
                if not self.conn.in_transaction:
                    cur.execute("BEGIN IMMEDIATE")
                yield cur
                if self.conn.in_transaction:
                    cur.execute("COMMIT")
            except BaseException as exc:
                if self.conn.in_transaction:
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(f"database write failed: {exc}") from exc
                raise
            finally:
                cur.close()

    def query(self, sql: str, params: Params | None = None, owner: str | None = None) -> list[Row]:
        with self._lock:
            check_snapshot(self._snapshot_owner, owner)
            try:
                return self.conn.execute(sql, params or {}).fetchall()
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"database read failed: {exc}") from exc

    @contextmanager
    def owner_snapshot(self, owner_id: str) -> Iterator[None]:
        """A read transaction (WAL mode gives it a snapshot) held for the block."""
        with self._lock:
            self.conn.execute("BEGIN DEFERRED")
            self.conn.execute("SELECT 1 FROM meta LIMIT 1")  # the snapshot starts at the first read
            self._snapshot_owner = owner_id
            try:
                yield
            finally:
                self._snapshot_owner = None
                self.conn.execute("COMMIT")

    def gateway(self, name: str, **args: object) -> list[Row]:
        sql, fixed = GATEWAYS[name].query("sqlite")
        return self.query(sql, {**fixed, **args})

    def ping(self) -> None:
        self.query("SELECT 1")

    def scrub(self) -> None:
        """Copy the write-ahead log into the (secure-deleted) database and truncate it: the log
        holds every page as it was written, an erased owner's name included. A reader holding
        a snapshot delays it, so it is asked again for up to 30 s."""
        deadline = time.monotonic() + 30
        while True:
            with self._lock:
                busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()["busy"]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"{self.path}-wal could not be checkpointed: a reader holds it")
            time.sleep(0.05)

    def dump(self, out: Path, admin_url: str = "") -> None:
        """A consistent copy of the database as `out`/earmark.db (the online backup API), while
        ingesters keep writing. (`admin_url` is PostgreSQL's.)"""
        with closing(sqlite3.connect(self.path)) as live, closing(sqlite3.connect(out / FILE)) as copy:
            live.backup(copy)
        (out / FILE).chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def restore_file(data_dir: Path, source: Path) -> None:
    """Put a dump's database file in place of the store's (no ingester may be running),
    keeping the blobs the store holds in its tables (blob_store = "database") that the dump
    lacks, as a restore keeps newer blob files: the sweep re-indexes them."""
    staged = data_dir / f".restore-{FILE}"
    with closing(sqlite3.connect(source / FILE)) as backup_db, closing(sqlite3.connect(staged)) as copy:
        backup_db.backup(copy)
        if (data_dir / FILE).exists():
            copy.execute("ATTACH DATABASE ? AS live", (str(data_dir / FILE),))
            for name in BLOB_TABLES:
                present = "SELECT 1 FROM {}.sqlite_master WHERE type = 'table' AND name = ?"
                if all(copy.execute(present.format(db), (name,)).fetchone() for db in ("main", "live")):
                    copy.execute(f"INSERT OR IGNORE INTO main.{name} SELECT * FROM live.{name}")
            copy.commit()
            copy.execute("DETACH DATABASE live")
    for leftover in (data_dir / f"{FILE}-wal", data_dir / f"{FILE}-shm"):
        leftover.unlink(missing_ok=True)
    staged.chmod(0o600)
    staged.replace(data_dir / FILE)
