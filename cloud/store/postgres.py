"""The scale-out backend: PostgreSQL (psycopg 3) with row-level security.

Roles, by design:
  - the admin (whoever runs `earmark-cloud db migrate --admin-url …`, usually a superuser)
    owns the tables and runs the migrations (store/migrations.py);
  - the service role (the login in `database_url`) is what ingesters, export, erasure and the
    admin CLI connect as. It is neither the tables' owner, nor a superuser, nor BYPASSRLS;
    `PostgresDatabase` checks this when it connects and refuses to run otherwise;
  - earmark_gateway (NOLOGIN, BYPASSRLS) owns only the SECURITY DEFINER functions that answer
    the few cross-owner questions (store/gateways.py), each returning only what it names.

Every owner table (store/schema.py: those whose `info` names an owner) has row-level
security ENABLEd and FORCEd, with policies on owner_id = current_setting('earmark.owner_id',
true), all rendered from the schema's description (store/ddl.py). The setting is
made with SET LOCAL semantics (set_config(…, true)) inside each owner-scoped transaction, so
it ends with the transaction; with no setting, current_setting(…, true) is NULL and no row
matches. The service may append audit events but never update or delete them (no policy).
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from earmark.cloud.store.database import Cursor, Params, Row, StoreError, StoreUnavailable, check_snapshot
from earmark.cloud.store.ddl import ERASING_SETTING, GATEWAY_ROLE, SCOPE_SETTING, create_schema, grants
from earmark.cloud.store.gateways import GATEWAYS
from earmark.cloud.store.migrations import SCHEMA_VERSION, SchemaVersionError, postgres_refresh, steps
from earmark.cloud.store.schema import BLOB_TABLES, OWNER_TABLES, metadata

VERSION_TABLE = "earmark_schema"  # the schema's version, outside the description
ALL_TABLES = (*metadata.tables, VERSION_TABLE)
DEFAULT_SERVICE_ROLE = "earmark_service"
_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=1024)
def _pyformat(statement: str) -> str:
    """The store's `:name` parameters as psycopg's `%(name)s`, by SQLAlchemy's own parser
    (which knows `::` casts, quoted text and `%` for what they are)."""
    return str(text(statement).compile(dialect=_DIALECT))


class _PgCursor(psycopg.Cursor[Row]):
    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                binary: bool | None = None) -> _PgCursor:
        if isinstance(query, str):
            query = _pyformat(query)
        super().execute(query, params or None, prepare=prepare, binary=binary)
        return self

    def executemany(self, query: Any, params_seq: Any, *, returning: bool = False) -> _PgCursor:  # type: ignore[override]
        if isinstance(query, str):
            query = _pyformat(query)
        super().executemany(query, params_seq, returning=returning)
        return self

    def scope(self, owner_id: str, erasing: bool = False) -> None:
        super().execute("SELECT set_config(%s, %s, true), set_config(%s, %s, true)",
                        (SCOPE_SETTING, owner_id, ERASING_SETTING, owner_id if erasing else ""))


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
    many_writers = True
    share_lock = " FOR SHARE"  # READ COMMITTED: hold the rows read until the commit

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
            version = self.conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        except psycopg.errors.UndefinedTable:
            raise StoreError(f"{redact(self.url)} has no Earmark schema: "
                             "run `earmark-cloud db migrate --admin-url …` first") from None
        except psycopg.errors.InsufficientPrivilege:
            raise StoreError("this role may not read the Earmark schema: was it granted by "
                             "`earmark-cloud db migrate --service-role`?") from None
        if version is None or version["version"] != SCHEMA_VERSION:
            found = version["version"] if version else 0
            raise StoreError(f"database schema version {found}, this Earmark needs {SCHEMA_VERSION}: "
                             "run `earmark-cloud db migrate`")
        row = self.conn.execute(
            "SELECT current_user AS role, r.rolsuper, r.rolbypassrls, "
            "  (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c "
            "     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(:all_tables) "
            "       AND pg_has_role(current_user, c.relowner, 'USAGE')) AS owned, "
            "  (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c "
            "     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(:owner_tables) "
            "       AND NOT (c.relrowsecurity AND c.relforcerowsecurity)) AS unforced "
            "FROM pg_roles r WHERE r.rolname = current_user",
            {"all_tables": list(ALL_TABLES), "owner_tables": list(OWNER_TABLES)}).fetchone()
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

    def query(self, sql_text: str, params: Params | None = None, owner: str | None = None) -> list[Row]:
        with self._lock:
            check_snapshot(self._snapshot_owner, owner)
            try:
                if owner is None:
                    with _PgCursor(self._fresh()) as cur:
                        return cur.execute(sql_text, params).fetchall()
                with self.transaction() as scoped:
                    scoped.scope(owner)
                    return scoped.execute(sql_text, params or {}).fetchall()
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"database read failed: {first_line(exc)}") from exc

    def gateway(self, name: str, **args: object) -> list[Row]:
        return self.query(GATEWAYS[name].query("postgres")[0], args)

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

    def scrub(self) -> None:
        pass  # dead rows and WAL: VACUUM and WAL recycling (see Database.scrub)

    def dump(self, out: Path, admin_url: str = "") -> None:
        """pg_dump of the database into `out`, as its admin: the service role sees nothing past
        row-level security."""
        if not admin_url:
            raise StoreError("a PostgreSQL backup is taken as the database's admin: give --admin-url")
        run_tool(["pg_dump", "--format=custom", "--file", str(out / DUMP), "--dbname", admin_url], admin_url)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


DUMP = "earmark.pgdump"


def restore_dump(source: Path, admin_url: str) -> None:
    """The dump in place of the database's rows, keeping the blobs the database holds
    (blob_store = "database") that the dump lacks, as a restore keeps newer blob files: the
    sweep re-indexes them. Run as the database's admin (a superuser: the kept blobs are
    many owners', and row-level security is forced on their table)."""
    if not admin_url:
        raise StoreError("a PostgreSQL restore runs as the database's admin: give --admin-url")
    kept = _keep_blobs(admin_url)
    run_tool(["pg_restore", "--clean", "--if-exists", "--single-transaction", "--dbname", admin_url,
              str(source / DUMP)], admin_url)
    if kept:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn, conn.transaction():
            for name in kept:
                conn.execute(f"INSERT INTO {name} SELECT * FROM {KEEP_PREFIX}{name} ON CONFLICT (path) DO NOTHING")
                conn.execute(f"DROP TABLE {KEEP_PREFIX}{name}")


KEEP_PREFIX = "earmark_restore_keep_"  # not in any dump, so pg_restore --clean leaves it be


def _keep_blobs(admin_url: str) -> list[str]:
    """Copy the blob tables aside before a restore; returns those copied."""
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn, conn.transaction():
            names = [name for name in BLOB_TABLES
                     if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,)]
            for name in names:
                conn.execute(f"DROP TABLE IF EXISTS {KEEP_PREFIX}{name}")
                conn.execute(f"CREATE TABLE {KEEP_PREFIX}{name} AS TABLE {name}")
    except psycopg.Error as exc:
        raise StoreError(f"cannot keep the blobs aside on {redact(admin_url)}: {first_line(exc)}") from None
    return names


def run_tool(argv: list[str], url: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise StoreError(f"{argv[0]} is not installed (Debian: postgresql-client)") from None
    if done.returncode != 0:
        lines = (done.stderr.strip() or "failed").splitlines()
        raise StoreError(f"{argv[0]} on {redact(url)}: {lines[0]}")


def migrate(admin_url: str, service_role: str = DEFAULT_SERVICE_ROLE) -> tuple[int, int]:
    """Bring the database to SCHEMA_VERSION as the admin (the tables' owner), in one
    transaction: a new database is made from the schema's description; an existing one runs
    the migrations after its version. Then the policies and gateway functions are made
    afresh from the description and the service role is (re)granted exactly what it needs.
    Returns (version before, version after)."""
    try:
        conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {redact(admin_url)}: "
                         f"{first_line(exc)}") from None
    service = sql.Identifier(service_role).as_string(conn)
    with conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('earmark_migrate'))")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
        row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        before = int(row[0]) if row else 0
        if row is None:
            conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (0)")
        try:
            statements = create_schema("postgres") if before == 0 else [
                s for _, batch in steps("postgres", before) for s in batch] + postgres_refresh()
        except SchemaVersionError as exc:
            raise StoreError(f"database at {redact(admin_url)}: {exc}") from None
        for role, options in ((GATEWAY_ROLE, "NOLOGIN BYPASSRLS"), (service_role, "LOGIN")):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
        for statement in [*statements, *grants(service, [VERSION_TABLE])]:
            conn.execute(statement.encode())
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (SCHEMA_VERSION,))
    conn.close()
    return before, SCHEMA_VERSION
