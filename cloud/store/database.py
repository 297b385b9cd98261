"""The database behind the store, and the one interface both backends give it.

Statements name their parameters (`:owner_id`), and take them as a mapping; the schema
they run on is described once (store/schema.py) and created and migrated from that
description (store/ddl.py, store/migrations.py).

The embedded default is SQLite in WAL mode with full fsync (store/sqlite.py); the scale-out
backend is PostgreSQL with row-level security (store/postgres.py). `open_database` picks one.
A commit returns only once it is durable; the ingester relies on that to ack a clip only after
it is safe.

Owner scope: every statement on an owner-linked table (owners, bindings, clips, audit) runs
inside a transaction scoped to one owner (`Cursor.scope`, or `query(..., owner=)`). On
PostgreSQL that scope is what row-level security checks, so a statement outside it sees no
owner's rows; on SQLite it is a no-op and the WHERE clauses do the work. The few questions
that must look across owners (which owner a device was bound to, whether a clip id is taken,
the operator's owner list, counts and audit chain) are named gateways, each answered by one
fixed query (on PostgreSQL, a SECURITY DEFINER function that returns only what it names).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from earmark.wire.errors import EarmarkError, TransientError, UsageError


class StoreFailure(EarmarkError):
    """Any failure of the store; nothing was acked. One of the two below says which kind."""


class StoreError(StoreFailure, UsageError, RuntimeError):
    """The store cannot be used as set up (missing, wrong schema version, wrong role or master
    key); the message says what to fix."""


class StoreUnavailable(StoreFailure, TransientError, RuntimeError):
    """The store cannot take or give data right now (server unreachable, disk full, a failed
    write): worth waiting for, unlike a wrong set-up."""


Row = dict[str, Any]
Params = Mapping[str, object]


class Cursor(Protocol):
    """What a transaction hands out: named parameters, rows as dicts, and the owner scope."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Params], /) -> Cursor: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...

    def scope(self, owner_id: str, erasing: bool = False) -> None:
        """From here to the end of the transaction (or the next scope), the statements act for
        `owner_id` and, on PostgreSQL, can see and write only that owner's rows. `erasing`:
        also the audit events of no owner, to redact those that name the owner (erasure only)."""


class Database(Protocol):
    backend: str  # "sqlite" or "postgres", for people (status, backups); code asks the attributes below
    # Several processes may write at once (PostgreSQL): the sweep leaves young blobs alone
    # (another ingester's, not yet committed) and no ingest lock is taken.
    many_writers: bool
    # Appended to a SELECT whose rows must not change before the commit ("" where the
    # transaction already holds the whole database, as SQLite's BEGIN IMMEDIATE does).
    share_lock: str

    def transaction(self) -> Any:  # a context manager yielding a Cursor
        ...

    def query(self, sql: str, params: Params | None = None, owner: str | None = None) -> list[Row]: ...

    def gateway(self, name: str, **args: object) -> list[Row]:
        """One of the named cross-owner questions (store/gateways.py), and nothing else."""

    def owner_snapshot(self, owner_id: str) -> Any:  # a context manager
        """Reads on this database, from this thread, see one consistent snapshot in which only
        `owner_id` is in scope (export runs inside one). A read scoped to another owner
        inside it raises StoreError."""

    def ping(self) -> None:
        """Raise StoreError unless the database answers (a readiness check)."""

    def scrub(self) -> None:
        """After an erasure: leave nothing of deleted rows readable in this database's own
        files (SQLite: the write-ahead log checkpointed and truncated; deleted content is
        zeroed as it goes, secure_delete). PostgreSQL keeps dead rows until VACUUM and its WAL
        until recycled: the operator's (deploy/SCALING.md)."""

    def dump(self, out: Path, admin_url: str = "") -> None:
        """A consistent copy of the rows into the folder `out` (a backup; PostgreSQL's is taken
        as the database's admin, `admin_url`)."""

    def close(self) -> None: ...


def in_list(column: str, values: Sequence[object], name: str = "") -> tuple[str, dict[str, object]]:
    """`AND column IN (:v0, :v1, …)` and its parameters (`AND FALSE`-like for no values)."""
    name = name or column
    params = {f"{name}_{i}": v for i, v in enumerate(values)}
    return f"AND {column} IN ({', '.join(':' + k for k in params) or 'NULL'})", params


def check_snapshot(snapshot_owner: str | None, owner: str | None) -> None:
    if snapshot_owner is not None and owner is not None and owner != snapshot_owner:
        raise StoreError(f"a read for owner {owner} inside owner {snapshot_owner}'s snapshot")


def open_database(data_dir: Path, url: str = "", create: bool = False) -> Database:
    """SQLite in the data dir, or PostgreSQL when a postgresql:// URL is configured."""
    if url:
        from earmark.cloud.store.postgres import PostgresDatabase

        return PostgresDatabase(url)
    from earmark.cloud.store.sqlite import SqliteDatabase

    return SqliteDatabase(data_dir / "earmark.db", create=create)
