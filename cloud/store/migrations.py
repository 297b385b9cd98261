"""Schema versions, and taking a store from the version it is at to SCHEMA_VERSION, on either
backend. The version is kept where stores always kept it: SQLite's PRAGMA user_version,
PostgreSQL's earmark_schema table.

A new store is made from the description (store/ddl.py: create_schema) at SCHEMA_VERSION.
An existing one runs each migration after its version, in one transaction. A migration is a
function of the backend returning its statements, built from the description wherever it
can be (a new table, column or index is named, not written out), so both backends get the
same change.

Version 10 is the first described once. The versions before it were two hand-kept scripts
(SQLite 1-9, PostgreSQL 1-6) that had drifted apart; a store at the last of them (LEGACY) is
brought to the description by migration 10, which mends the drift. A store older than that
was made by an Earmark from before 2026-11 and is refused with a message.
"""

from __future__ import annotations

from collections.abc import Callable

from earmark.cloud.store.database import StoreError
from earmark.cloud.store.ddl import create_index, create_table, gateway_functions, indexes, row_security, table
from earmark.cloud.store.schema import BLOB_TABLES, devices

SCHEMA_VERSION = 15
FIRST = 10  # the first version described once
LEGACY = {"sqlite": 9, "postgres": 6}  # the hand-kept scripts' last versions, which migration 10 takes


class SchemaVersionError(StoreError):
    """The store's schema cannot be brought to this Earmark's; the message says why."""


def rebuild(name: str, backend: str) -> list[str]:
    """SQLite alters no column type or constraint in place: make the table afresh from the
    description beside the old one, copy the rows, and swap them. For a table no foreign key
    points at."""
    columns = ", ".join(c.name for c in table(name).columns)
    staged = f"{name}__rebuilt"
    return [create_table(name, backend, as_name=staged),
            f"INSERT INTO {staged} ({columns}) SELECT {columns} FROM {name}",
            f"DROP TABLE {name}",
            f"ALTER TABLE {staged} RENAME TO {name}",
            *(create_index(i, backend) for i in indexes(name))]


def _v10(backend: str) -> list[str]:
    """The drift between the two scripts, mended: devices.public_key was UNIQUE only on
    PostgreSQL (SQLite's "one key, one device" rested on a SELECT outside the write);
    device_presence.online was INTEGER on SQLite; the covering index of the owner's clips had
    a name of its own on each; the gateways' functions return the columns they name."""
    if backend == "sqlite":
        return [f"CREATE UNIQUE INDEX devices_public_key_key ON {devices.name} (public_key)",
                *rebuild("device_presence", backend)]
    return ["ALTER INDEX clips_by_owner_covering RENAME TO clips_by_owner_time"]


def _v11(backend: str) -> list[str]:
    """Erasure redacts the owner's audit events: on PostgreSQL the service may update the log
    within the `redact` policy (made by postgres_refresh, which every migrate runs)."""
    return []


def _v12(backend: str) -> list[str]:
    """An owner may choose their own auto-delete (the portal): owners.retention_days."""
    return ["ALTER TABLE owners ADD COLUMN retention_days INTEGER"]


def _v13(backend: str) -> list[str]:
    """Sealed blobs may live in the database (blob_store = "database"): clip_blobs, under
    row-level security like the clips (made by postgres_refresh), and quarantine_blobs."""
    return [statement for name in BLOB_TABLES
            for statement in (create_table(name, backend), *(create_index(i, backend) for i in indexes(name)))]


def _v14(backend: str) -> list[str]:
    """Zero-access recordings: the households' age recipients (household_recipients), their
    identities wrapped for passkeys, members and the recovery code (household_wraps), and
    members asking to join (household_joins), under row-level security like the clips (made
    by postgres_refresh)."""
    return [create_table("household_recipients", backend),
            *(statement for name in ("household_wraps", "household_joins")
              for statement in (create_table(name, backend), *(create_index(i, backend) for i in indexes(name))))]


def _v15(backend: str) -> list[str]:
    """Household marks reach the device that made the clip: device_marks, under row-level
    security like the clips (made by postgres_refresh)."""
    return [create_table("device_marks", backend), *(create_index(i, backend) for i in indexes("device_marks"))]


MIGRATIONS: dict[int, Callable[[str], list[str]]] = {10: _v10, 11: _v11, 12: _v12, 13: _v13, 14: _v14, 15: _v15}


def steps(backend: str, version: int) -> list[tuple[int, list[str]]]:
    """(version, its statements) for each migration a store at `version` needs, in order."""
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"the store's schema version {version} is newer than this Earmark's "
                                 f"({SCHEMA_VERSION}): upgrade Earmark")
    if version < FIRST:
        if version != LEGACY[backend]:
            raise SchemaVersionError(f"the store's schema version {version} comes from an Earmark older than "
                                     f"2026-11, which this one cannot upgrade; it upgrades from {LEGACY[backend]}")
        version = FIRST - 1
    return [(n, MIGRATIONS[n](backend)) for n in range(version + 1, SCHEMA_VERSION + 1)]


def postgres_refresh() -> list[str]:
    """Run at every PostgreSQL migrate, whatever the version: the policies and gateway
    functions made afresh from the description, so they can never lag it."""
    return row_security() + gateway_functions()
