"""The embedded database: SQLite in WAL mode with full fsync, one schema, versioned with
PRAGMA user_version. A commit returns only once it is durable; the ingester relies on that
to ack a clip only after it is safe."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

SCHEMA_V1 = """
CREATE TABLE owners (
    owner_id      TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    erased_at     TEXT,
    wrapped_key   BLOB            -- the owner's data key, wrapped by the master key; NULL once erased
);
CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    public_key    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
-- Who a device belonged to when: the binding at a clip's capture time decides its owner.
CREATE TABLE bindings (
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    owner_id      TEXT NOT NULL REFERENCES owners(owner_id),
    bound_at      TEXT NOT NULL,
    unbound_at    TEXT,
    PRIMARY KEY (device_id, bound_at)
);
CREATE TABLE clips (
    clip_id          TEXT PRIMARY KEY,
    owner_id         TEXT NOT NULL REFERENCES owners(owner_id),
    device_id        TEXT NOT NULL REFERENCES devices(device_id),
    captured_at      TEXT NOT NULL,
    duration_ms      INTEGER NOT NULL,
    trigger          TEXT NOT NULL,
    wake_word        TEXT,
    wake_score       REAL,
    envelope_sha256  TEXT NOT NULL,
    envelope_bytes   INTEGER NOT NULL,
    blob_path        TEXT NOT NULL,   -- relative to the blob root: <owner_id>/<xx>/<clip_id>.bin
    stored_at        TEXT NOT NULL
);
CREATE INDEX clips_by_owner ON clips (owner_id, captured_at);
CREATE TABLE quarantine (
    quarantine_id    TEXT PRIMARY KEY,
    received_at      TEXT NOT NULL,
    topic            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    detail           TEXT NOT NULL,
    envelope_sha256  TEXT NOT NULL UNIQUE,
    envelope_bytes   INTEGER NOT NULL,
    blob_path        TEXT NOT NULL
);
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    event      TEXT NOT NULL,
    owner_id   TEXT,
    device_id  TEXT,
    clip_id    TEXT,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
"""
# Broker logins: devices (username = device id) and ingesters. Only the mosquitto hash of
# each password is kept; the password itself goes once into a pairing bundle or a 0600 file.
SCHEMA_V2 = """
CREATE TABLE broker_accounts (
    username       TEXT PRIMARY KEY,
    role           TEXT NOT NULL CHECK (role IN ('device', 'ingester')),
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT
);
"""
# The owner's own age public key: exports are encrypted to it by default.
SCHEMA_V3 = """
ALTER TABLE owners ADD COLUMN age_recipient TEXT;
"""
# Migration N takes a store from schema version N-1 to N.
MIGRATIONS = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RuntimeError):
    """The store cannot be used (missing, wrong version, disk full); nothing was acked."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> datetime:
    """Our UTC stamps, with 3 (clip headers) or 6 (store) decimal places."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class Database:
    """One SQLite connection, shared by the threads of one process under a lock."""

    def __init__(self, path: Path, create: bool = False) -> None:
        if not create and not path.exists():
            raise StoreError(f"no store at {path}: run `earmark-cloud init --data-dir {path.parent}`")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and not create:
            raise StoreError(f"{path} is not an Earmark store")
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {path} has schema version {version}, newer than this Earmark ({SCHEMA_VERSION})")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            self.conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[number - 1]} PRAGMA user_version={number}; COMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception. Not re-entrant."""
        with self._lock:
            cur = self.conn.cursor()
            try:
                if not self.conn.in_transaction:
                    cur.execute("BEGIN IMMEDIATE")
                yield cur
                if self.conn.in_transaction:
                    cur.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self.conn.close()
