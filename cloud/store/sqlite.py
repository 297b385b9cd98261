"""The embedded backend: one SQLite file in WAL mode with full fsync, its schema versioned
with PRAGMA user_version. A commit returns only once it is durable. SQLite has no row-level
security: every owner-scoped statement names its owner in its WHERE clause."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from earmark.cloud.store.database import Cursor, Params, Row, StoreError, StoreUnavailable, check_snapshot

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
# The audit chain's newest (seq, hash) in one row: appending locks it, so several writers
# (PostgreSQL ingesters) take turns and the chain stays a chain.
SCHEMA_V4 = """
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head
    SELECT 1, coalesce(max(seq), 0),
           coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), printf('%064d', 0))
    FROM audit;
"""
# Migration N takes a store from schema version N-1 to N.
# What was deleted (by its owner, by retention, by erasure): ids and hashes only, no owner and
# no content, so a replay of a deleted clip is answered "duplicate" and stored nowhere.
SCHEMA_V5 = """
CREATE TABLE deleted_clips (
    clip_id          TEXT PRIMARY KEY,
    envelope_sha256  TEXT NOT NULL,
    deleted_at       TEXT NOT NULL
);
"""
# Which device a quarantined payload came from (the topic's) and which owner its header
# claims, if it has one: for per-device quotas, and so an erasure reaches the quarantine too.
SCHEMA_V6 = """
ALTER TABLE quarantine ADD COLUMN device_id TEXT;
ALTER TABLE quarantine ADD COLUMN claimed_owner_id TEXT;
CREATE INDEX quarantine_by_device ON quarantine (device_id, received_at);
CREATE INDEX quarantine_by_claimed_owner ON quarantine (claimed_owner_id);
"""
# Wire v2's chain: a clip's `seq`; the device and `seq` of what was deleted or refused (still
# no content), so verify-export can tell a recorded deletion or refusal from a clip removed
# behind its back; and each device's highest stored `seq`, so it sees the chain's end too.
SCHEMA_V7 = """
ALTER TABLE clips ADD COLUMN seq INTEGER;
ALTER TABLE deleted_clips ADD COLUMN device_id TEXT;
ALTER TABLE deleted_clips ADD COLUMN seq INTEGER;
CREATE INDEX deleted_clips_by_device ON deleted_clips (device_id, seq);
ALTER TABLE devices ADD COLUMN last_seq INTEGER;     -- the highest seq stored from the device
ALTER TABLE quarantine ADD COLUMN seq INTEGER;       -- a refused clip's seq, if its signature verified
-- The owner's clips in (captured_at, clip_id) order from the index alone (it holds every
-- column, so no table page is read): an export or purge reads the owner's few contiguous
-- index pages, whatever else the store holds, instead of one table page per clip.
CREATE INDEX clips_by_owner_time ON clips (owner_id, captured_at, clip_id,
    device_id, duration_ms, trigger, wake_word, wake_score, envelope_sha256, envelope_bytes, blob_path, stored_at, seq);
DROP INDEX clips_by_owner;
"""
# The owner's portal (cloud/portal): one-time invite links, passkeys and sign-in sessions.
# Links and sessions are kept as SHA-256 hashes only, so a copy of the database signs nobody in.
SCHEMA_V8 = """
CREATE TABLE portal_invites (
    token_sha256  TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT
);
CREATE TABLE portal_passkeys (
    credential_id  TEXT PRIMARY KEY,      -- base64url
    owner_id       TEXT NOT NULL,
    public_key     BLOB NOT NULL,
    sign_count     INTEGER NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX portal_passkeys_by_owner ON portal_passkeys (owner_id);
CREATE TABLE portal_sessions (
    token_sha256  TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    csrf          TEXT NOT NULL,
    created_at    REAL NOT NULL,          -- Unix seconds: the idle and absolute timeouts
    seen_at       REAL NOT NULL
);
"""
# The owner's portal, part two: a recording the owner marked "I did not mean to wake it" (gone
# with the clip: Clips.delete and delete_all remove it in the same transaction), and each
# device's online state from its retained status topic (earmark/v1/status/<id>), which the
# MQTT ingester reads; an erasure removes the owner's.
SCHEMA_V9 = """
CREATE TABLE clip_marks (
    clip_id    TEXT PRIMARY KEY REFERENCES clips(clip_id),
    owner_id   TEXT NOT NULL,
    mark       TEXT NOT NULL CHECK (mark IN ('not_meant')),
    marked_at  TEXT NOT NULL
);
CREATE INDEX clip_marks_by_owner ON clip_marks (owner_id);
CREATE TABLE device_presence (
    device_id   TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL,
    online      INTEGER NOT NULL,
    changed_at  TEXT NOT NULL,     -- when the ingester saw this state arrive
    status      TEXT NOT NULL      -- the device's own status JSON ('{}' when offline)
);
CREATE INDEX device_presence_by_owner ON device_presence (owner_id);
"""
MIGRATIONS = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8, SCHEMA_V9)
SCHEMA_VERSION = len(MIGRATIONS)


# The cross-owner questions, answered on SQLite by plain queries. PostgreSQL answers the same
# names with SECURITY DEFINER functions (store/postgres.py) returning the same columns.
GATEWAYS = {
    # A device's binding history (or every device's, for NULL), oldest first.
    "bindings": "SELECT device_id, owner_id, bound_at, unbound_at FROM bindings "
                "WHERE ?1 IS NULL OR device_id = ?1 ORDER BY device_id, bound_at",
    # The envelope digests stored under these clip ids (a JSON array), whoever's they are
    # (de-duplication only).
    # Deleted clips count as taken: a replay is a duplicate, never a new clip.
    "fingerprints": "SELECT clip_id, envelope_sha256 FROM clips WHERE clip_id IN (SELECT value FROM json_each(?1)) "
                    "UNION ALL SELECT clip_id, envelope_sha256 FROM deleted_clips "
                    "WHERE clip_id IN (SELECT value FROM json_each(?1))",
    # The operator's owner list: no keys, no recipients.
    "owner_directory": "SELECT owner_id, display_name, created_at, erased_at FROM owners ORDER BY created_at",
    "counts": "SELECT 'owners' AS name, count(*) AS n FROM owners UNION ALL "
              "SELECT 'devices', count(*) FROM devices UNION ALL SELECT 'clips', count(*) FROM clips UNION ALL "
              "SELECT 'quarantine', count(*) FROM quarantine UNION ALL SELECT 'audit', count(*) FROM audit",
    # For tuning the wake decision: per wake word (or "(button)"), how many clips are stored and
    # how many of them their owners marked "I did not mean to wake it". Numbers only.
    "wake_marks": "SELECT coalesce(c.wake_word, '(' || c.trigger || ')') AS wake_word, count(*) AS clips, "
                  "count(m.clip_id) AS marked FROM clips c LEFT JOIN clip_marks m ON m.clip_id = c.clip_id "
                  "GROUP BY 1 ORDER BY 1",
    # The audit chain after a sequence number, in order, a page at a time.
    "audit": "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
}


class _SqliteCursor(sqlite3.Cursor):
    def scope(self, owner_id: str) -> None:
        """No row-level security in SQLite: every owner-scoped statement names its owner."""


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class SqliteDatabase:
    """One SQLite connection, shared by the threads of one process under a lock."""

    backend = "sqlite"

    def __init__(self, path: Path, create: bool = False) -> None:
        if not create and not path.exists():
            raise StoreError(f"no store at {path}: run `earmark-cloud init --data-dir {path.parent}`")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._snapshot_owner: str | None = None
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.row_factory = _dict_row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        version = self.conn.execute("PRAGMA user_version").fetchone()["user_version"]
        if version == 0 and not create:
            raise StoreError(f"{path} is not an Earmark store")
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {path} has schema version {version}, newer than this Earmark ({SCHEMA_VERSION})")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            self.conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[number - 1]} PRAGMA user_version={number}; COMMIT;")

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

    def query(self, sql: str, params: Params = (), owner: str | None = None) -> list[Row]:
        with self._lock:
            check_snapshot(self._snapshot_owner, owner)
            try:
                return self.conn.execute(sql, params).fetchall()
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

    def gateway(self, name: str, *args: object) -> list[Row]:
        return self.query(GATEWAYS[name], args)

    def ping(self) -> None:
        self.query("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self.conn.close()
