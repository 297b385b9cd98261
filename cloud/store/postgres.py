"""The scale-out backend: PostgreSQL (psycopg 3) with row-level security.

Roles, by design:
  - the admin (whoever runs `earmark-cloud db migrate --admin-url …`, usually a superuser)
    owns the tables and runs the versioned migrations below;
  - the service role (the login in `database_url`) is what ingesters, export, erasure and the
    admin CLI connect as. It is neither the tables' owner, nor a superuser, nor BYPASSRLS;
    `PostgresDatabase` checks this when it connects and refuses to run otherwise;
  - earmark_gateway (NOLOGIN, BYPASSRLS) owns only the SECURITY DEFINER functions that answer
    the few cross-owner questions (store/database.py: gateways), each returning only what it names.

Every owner-linked table (owners, bindings, clips, audit) has row-level security ENABLEd and
FORCEd, with policies on owner_id = current_setting('earmark.owner_id', true). The setting is
made with SET LOCAL semantics (set_config(…, true)) inside each owner-scoped transaction, so
it ends with the transaction; with no setting, current_setting(…, true) is NULL and no row
matches. The service may append audit events but never update or delete them (no policy).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from earmark.cloud.store.database import Cursor, Params, Row, StoreError, StoreUnavailable, check_snapshot

OWNER_TABLES = ("owners", "bindings", "clips", "audit", "clip_marks", "device_presence")
ALL_TABLES = ("owners", "devices", "bindings", "clips", "quarantine", "audit", "audit_head", "meta",
              "broker_accounts", "earmark_schema", "deleted_clips", "portal_invites", "portal_passkeys",
              "portal_sessions", "clip_marks", "device_presence")
SCOPE_SETTING = "earmark.owner_id"
GATEWAY_ROLE = "earmark_gateway"
DEFAULT_SERVICE_ROLE = "earmark_service"

_SCOPE = f"current_setting('{SCOPE_SETTING}', true)"

PG_SCHEMA_V1 = f"""
CREATE TABLE owners (
    owner_id      TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    erased_at     TEXT,
    wrapped_key   BYTEA,
    age_recipient TEXT
);
CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    public_key    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
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
    wake_score       DOUBLE PRECISION,
    envelope_sha256  TEXT NOT NULL,
    envelope_bytes   INTEGER NOT NULL,
    blob_path        TEXT NOT NULL,
    stored_at        TEXT NOT NULL
);
CREATE INDEX clips_by_owner ON clips (owner_id, captured_at, clip_id);
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
    seq        BIGINT PRIMARY KEY,
    at         TEXT NOT NULL,
    event      TEXT NOT NULL,
    owner_id   TEXT,
    device_id  TEXT,
    clip_id    TEXT,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, repeat('0', 64));
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  BYTEA NOT NULL
);
CREATE TABLE broker_accounts (
    username       TEXT PRIMARY KEY,
    role           TEXT NOT NULL CHECK (role IN ('device', 'ingester')),
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT
);

ALTER TABLE owners ENABLE ROW LEVEL SECURITY;
ALTER TABLE owners FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_scope ON owners USING (owner_id = {_SCOPE}) WITH CHECK (owner_id = {_SCOPE});
ALTER TABLE bindings ENABLE ROW LEVEL SECURITY;
ALTER TABLE bindings FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_scope ON bindings USING (owner_id = {_SCOPE}) WITH CHECK (owner_id = {_SCOPE});
ALTER TABLE clips ENABLE ROW LEVEL SECURITY;
ALTER TABLE clips FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_scope ON clips USING (owner_id = {_SCOPE}) WITH CHECK (owner_id = {_SCOPE});
ALTER TABLE audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_read ON audit FOR SELECT USING (owner_id = {_SCOPE});
CREATE POLICY append ON audit FOR INSERT WITH CHECK (owner_id IS NULL OR owner_id = {_SCOPE});

CREATE FUNCTION earmark_bindings(p_device TEXT)
    RETURNS TABLE (device_id TEXT, owner_id TEXT, bound_at TEXT, unbound_at TEXT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT b.device_id, b.owner_id, b.bound_at, b.unbound_at FROM public.bindings b
    WHERE p_device IS NULL OR b.device_id = p_device ORDER BY b.device_id, b.bound_at $$;
CREATE FUNCTION earmark_fingerprints(p_clips JSONB) RETURNS TABLE (clip_id TEXT, envelope_sha256 TEXT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT c.clip_id, c.envelope_sha256 FROM public.clips c
    WHERE c.clip_id IN (SELECT jsonb_array_elements_text(p_clips)) $$;
CREATE FUNCTION earmark_owner_directory()
    RETURNS TABLE (owner_id TEXT, display_name TEXT, created_at TEXT, erased_at TEXT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT o.owner_id, o.display_name, o.created_at, o.erased_at FROM public.owners o ORDER BY o.created_at $$;
CREATE FUNCTION earmark_counts() RETURNS TABLE (name TEXT, n BIGINT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT 'owners', count(*) FROM public.owners UNION ALL SELECT 'devices', count(*) FROM public.devices
    UNION ALL SELECT 'clips', count(*) FROM public.clips UNION ALL SELECT 'quarantine', count(*) FROM public.quarantine
    UNION ALL SELECT 'audit', count(*) FROM public.audit $$;
CREATE FUNCTION earmark_audit(p_after BIGINT, p_limit INTEGER) RETURNS SETOF public.audit
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT * FROM public.audit a WHERE a.seq > p_after ORDER BY a.seq LIMIT p_limit $$;
"""
GATEWAY_FUNCTIONS = ("earmark_bindings(text)", "earmark_fingerprints(jsonb)", "earmark_owner_directory()",
                     "earmark_counts()", "earmark_audit(bigint, integer)", "earmark_wake_marks()")
# What was deleted: ids and hashes only (see the SQLite schema v5); the fingerprint gateway
# counts them as taken, so a replay of a deleted clip is a duplicate.
PG_SCHEMA_V2 = """
CREATE TABLE deleted_clips (
    clip_id          TEXT PRIMARY KEY,
    envelope_sha256  TEXT NOT NULL,
    deleted_at       TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION earmark_fingerprints(p_clips JSONB) RETURNS TABLE (clip_id TEXT, envelope_sha256 TEXT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT c.clip_id, c.envelope_sha256 FROM public.clips c
    WHERE c.clip_id IN (SELECT jsonb_array_elements_text(p_clips))
    UNION ALL
    SELECT d.clip_id, d.envelope_sha256 FROM public.deleted_clips d
    WHERE d.clip_id IN (SELECT jsonb_array_elements_text(p_clips)) $$;
"""
# See the SQLite schema v6: quarantine quotas per device, and erasure reaching the quarantine.
PG_SCHEMA_V3 = """
ALTER TABLE quarantine ADD COLUMN device_id TEXT;
ALTER TABLE quarantine ADD COLUMN claimed_owner_id TEXT;
CREATE INDEX quarantine_by_device ON quarantine (device_id, received_at);
CREATE INDEX quarantine_by_claimed_owner ON quarantine (claimed_owner_id);
"""
# See the SQLite schema v7: wire v2's chain, and the owner's clips from the index alone.
PG_SCHEMA_V4 = """
ALTER TABLE clips ADD COLUMN seq BIGINT;
ALTER TABLE deleted_clips ADD COLUMN device_id TEXT;
ALTER TABLE deleted_clips ADD COLUMN seq BIGINT;
CREATE INDEX deleted_clips_by_device ON deleted_clips (device_id, seq);
ALTER TABLE devices ADD COLUMN last_seq BIGINT;
ALTER TABLE quarantine ADD COLUMN seq BIGINT;
-- The owner's clips from the index alone (an index-only scan, once autovacuum has marked the
-- pages all-visible): export and purge read the owner's contiguous index pages, not one heap
-- page per clip scattered among everyone else's.
CREATE INDEX clips_by_owner_covering ON clips (owner_id, captured_at, clip_id)
    INCLUDE (device_id, duration_ms, trigger, wake_word, wake_score, envelope_sha256, envelope_bytes, blob_path,
             stored_at, seq);
DROP INDEX clips_by_owner;
"""
# See the SQLite schema v8: the owner's portal. These rows name an owner but hold nothing of
# theirs (hashes, a passkey's public key); they are looked up before the owner is known.
PG_SCHEMA_V5 = """
CREATE TABLE portal_invites (
    token_sha256  TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT
);
CREATE TABLE portal_passkeys (
    credential_id  TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL,
    public_key     BYTEA NOT NULL,
    sign_count     BIGINT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX portal_passkeys_by_owner ON portal_passkeys (owner_id);
CREATE TABLE portal_sessions (
    token_sha256  TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    csrf          TEXT NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    seen_at       DOUBLE PRECISION NOT NULL
);
"""
# See the SQLite schema v9: the owner's marks on their recordings and their devices' online
# state, both the owner's own rows under row-level security like the clips.
PG_SCHEMA_V6 = f"""
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
    online      BOOLEAN NOT NULL,
    changed_at  TEXT NOT NULL,
    status      TEXT NOT NULL
);
CREATE INDEX device_presence_by_owner ON device_presence (owner_id);
ALTER TABLE clip_marks ENABLE ROW LEVEL SECURITY;
ALTER TABLE clip_marks FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_scope ON clip_marks USING (owner_id = {_SCOPE}) WITH CHECK (owner_id = {_SCOPE});
ALTER TABLE device_presence ENABLE ROW LEVEL SECURITY;
ALTER TABLE device_presence FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_scope ON device_presence USING (owner_id = {_SCOPE}) WITH CHECK (owner_id = {_SCOPE});
CREATE FUNCTION earmark_wake_marks() RETURNS TABLE (wake_word TEXT, clips BIGINT, marked BIGINT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT coalesce(c.wake_word, '(' || c.trigger || ')'), count(*), count(m.clip_id)
    FROM public.clips c LEFT JOIN public.clip_marks m ON m.clip_id = c.clip_id GROUP BY 1 ORDER BY 1 $$;
"""
PG_MIGRATIONS = (PG_SCHEMA_V1, PG_SCHEMA_V2, PG_SCHEMA_V3, PG_SCHEMA_V4, PG_SCHEMA_V5, PG_SCHEMA_V6)
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)

PG_GATEWAYS = {
    "bindings": "SELECT * FROM earmark_bindings(?::text)",
    "fingerprints": "SELECT * FROM earmark_fingerprints(?::jsonb)",
    "owner_directory": "SELECT * FROM earmark_owner_directory()",
    "counts": "SELECT * FROM earmark_counts()",
    "audit": "SELECT * FROM earmark_audit(?::bigint, ?::integer)",
    "wake_marks": "SELECT * FROM earmark_wake_marks()",
}


def _placeholders(query: str) -> str:
    """The store's SQL is written with `?` (SQLite's style); psycopg takes `%s`."""
    return query.replace("?", "%s")


class _PgCursor(psycopg.Cursor[Row]):
    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                binary: bool | None = None) -> _PgCursor:
        if isinstance(query, str):
            query = _placeholders(query)
        super().execute(query, params or None, prepare=prepare, binary=binary)
        return self

    def executemany(self, query: Any, params_seq: Any, *, returning: bool = False) -> _PgCursor:  # type: ignore[override]
        if isinstance(query, str):
            query = _placeholders(query)
        super().executemany(query, params_seq, returning=returning)
        return self

    def scope(self, owner_id: str) -> None:
        super().execute("SELECT set_config(%s, %s, true)", (SCOPE_SETTING, owner_id))


def first_line(exc: BaseException) -> str:
    """psycopg's messages run to several lines (hints, context); a log line takes the first."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def redact(url: str) -> str:
    """A database URL fit for a log line: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


# Connection failures a person must fix: retrying cannot make a missing role or database
# appear, or a wrong password right (a server starting up or unreachable is retried).
REFUSALS = ("does not exist", "password authentication failed", "no pg_hba.conf entry",
            "authentication failed", "permission denied for database")


class PostgresDatabase:
    """One connection per process, shared by its threads under a lock; reconnects after the
    server went away (the failed transaction raised StoreError, so nothing was acked)."""

    backend = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._snapshot_owner: str | None = None
        self.conn = self._connect()
        self._check_role()

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, cursor_factory=_PgCursor,
                                   connect_timeout=10, application_name="earmark")
        except psycopg.OperationalError as exc:
            reason = first_line(exc)
            if any(marker in reason for marker in REFUSALS):  # waiting will not make the login valid
                raise StoreError(f"PostgreSQL at {redact(self.url)} refused: {reason} "
                                 "(fix database_url, or create the role or database: see deploy/SCALING.md)") from None
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {redact(self.url)}: {reason}") from None

    def _check_role(self) -> None:
        """Refuse to run as a role that row-level security would not bind."""
        try:
            version = self.conn.execute("SELECT version FROM earmark_schema").fetchone()
        except psycopg.errors.UndefinedTable:
            raise StoreError(f"{redact(self.url)} has no Earmark schema: "
                             "run `earmark-cloud db migrate --admin-url …` first") from None
        except psycopg.errors.InsufficientPrivilege:
            raise StoreError("this role may not read the Earmark schema: was it granted by "
                             "`earmark-cloud db migrate --service-role`?") from None
        if version is None or version["version"] != PG_SCHEMA_VERSION:
            found = version["version"] if version else 0
            raise StoreError(f"database schema version {found}, this Earmark needs {PG_SCHEMA_VERSION}: "
                             "run `earmark-cloud db migrate`")
        row = self.conn.execute(
            "SELECT current_user AS role, r.rolsuper, r.rolbypassrls, "
            "  (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c "
            "     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s) "
            "       AND pg_has_role(current_user, c.relowner, 'USAGE')) AS owned, "
            "  (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c "
            "     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s) "
            "       AND NOT (c.relrowsecurity AND c.relforcerowsecurity)) AS unforced "
            "FROM pg_roles r WHERE r.rolname = current_user", (list(ALL_TABLES), list(OWNER_TABLES))).fetchone()
        assert row is not None
        if row["rolsuper"] or row["rolbypassrls"]:
            kind = "a superuser" if row["rolsuper"] else "BYPASSRLS"
            raise StoreError(f"refusing to run as PostgreSQL role {row['role']}: it is {kind}, so row-level "
                             "security would not apply; connect as the service role (see deploy/SCALING.md)")
        if row["owned"]:
            raise StoreError(f"refusing to run as PostgreSQL role {row['role']}: it owns (or can act as the "
                             f"owner of) {', '.join(row['owned'])}; connect as the service role")
        if row["unforced"]:
            raise StoreError(f"row-level security is not enabled and forced on {', '.join(row['unforced'])}: "
                             "the schema was altered; refusing to run")

    def _fresh(self) -> psycopg.Connection[Row]:
        if self.conn.closed or self.conn.broken:
            self.conn = self._connect()
        return self.conn

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._lock:
            try:
                conn = self._fresh()
                with conn.transaction(), _PgCursor(conn) as cur:
                    yield cur
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"database write failed: {first_line(exc)}") from exc

    def query(self, sql_text: str, params: Params = (), owner: str | None = None) -> list[Row]:
        with self._lock:
            check_snapshot(self._snapshot_owner, owner)
            try:
                if owner is None:
                    with _PgCursor(self._fresh()) as cur:
                        return cur.execute(sql_text, params).fetchall()
                with self.transaction() as scoped:
                    scoped.scope(owner)
                    return scoped.execute(sql_text, params).fetchall()
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"database read failed: {first_line(exc)}") from exc

    def gateway(self, name: str, *args: object) -> list[Row]:
        return self.query(PG_GATEWAYS[name], args)

    @contextmanager
    def owner_snapshot(self, owner_id: str) -> Iterator[None]:
        """One REPEATABLE READ, READ ONLY transaction scoped to the owner for the block: every
        read in it sees the same snapshot, and row-level security shows only this owner."""
        with self._lock:
            try:
                conn = self._fresh()
                with conn.transaction(), _PgCursor(conn) as cur:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    cur.scope(owner_id)
                    self._snapshot_owner = owner_id
                    try:
                        yield
                    finally:
                        self._snapshot_owner = None
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"database read failed: {first_line(exc)}") from exc

    def ping(self) -> None:
        self.query("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def migrate(admin_url: str, service_role: str = DEFAULT_SERVICE_ROLE) -> tuple[int, int]:
    """Bring the database to PG_SCHEMA_VERSION as the admin (tables' owner), then (re)grant
    the service role exactly what it needs. Returns (version before, version after)."""
    try:
        conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {redact(admin_url)}: "
                         f"{first_line(exc)}") from None
    service = sql.Identifier(service_role)
    with conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('earmark_migrate'))")
        conn.execute("CREATE TABLE IF NOT EXISTS earmark_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM earmark_schema").fetchone()
        before = int(row[0]) if row else 0
        if row is None:
            conn.execute("INSERT INTO earmark_schema VALUES (0)")
        if before > PG_SCHEMA_VERSION:
            raise StoreError(f"database schema version {before} is newer than this Earmark ({PG_SCHEMA_VERSION})")
        for role, options in ((GATEWAY_ROLE, "NOLOGIN BYPASSRLS"), (service_role, "LOGIN")):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
        for number in range(before + 1, PG_SCHEMA_VERSION + 1):
            conn.execute(PG_MIGRATIONS[number - 1])
            conn.execute("UPDATE earmark_schema SET version = %s", (number,))
        gateway = sql.Identifier(GATEWAY_ROLE)
        for table in ALL_TABLES:
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(sql.Identifier(table)))
        for table in ("owners", "devices", "bindings", "clips", "quarantine", "audit", "deleted_clips", "clip_marks"):
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), gateway))
        for function in GATEWAY_FUNCTIONS:
            conn.execute(sql.SQL(f"ALTER FUNCTION {function} OWNER TO {{}}").format(gateway))
            conn.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
            conn.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION {function} TO {{}}").format(service))
        for table in ("owners", "devices", "bindings", "clips", "quarantine", "meta", "broker_accounts",
                      "deleted_clips", "portal_invites", "portal_passkeys", "portal_sessions", "clip_marks",
                      "device_presence"):
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}")
                         .format(sql.Identifier(table), service))
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON audit TO {}").format(service))
        conn.execute(sql.SQL("GRANT SELECT, UPDATE ON audit_head TO {}").format(service))
        conn.execute(sql.SQL("GRANT SELECT ON earmark_schema TO {}").format(service))
    conn.close()
    return before, PG_SCHEMA_VERSION
