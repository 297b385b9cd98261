"""The schema is described once (cloud/store/schema.py) and both backends are made from it:
a new SQLite store and a new PostgreSQL database hold the same tables, columns (by type
family), keys, constraints and indexes, read back from the databases themselves. A store
made by the Earmark before the description (tests/fixtures/legacy: SQLite schema 9,
PostgreSQL schema 6) upgrades in place to exactly that schema and keeps every row."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy import types as sqltypes

from earmark.cloud.store.migrations import SCHEMA_VERSION
from earmark.cloud.store.postgres import migrate
from earmark.cloud.store.schema import OWNER_TABLES, metadata
from earmark.cloud.store.store import Store
from tests.support.cloudkit import enrolled_device, make_store, tamper
from tests.support.pgdb import (
    ADMIN,
    SERVICE_ROLE,
    admin_execute,
    admin_url,
    admin_url_for,
    service_url,
    temporary_database,
)

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
BOOKKEEPING = {"earmark_schema"}  # PostgreSQL's version table, outside the description


def family(column_type: Any) -> str:
    for kind, name in ((sqltypes.Boolean, "boolean"), (sqltypes.Integer, "integer"), (sqltypes.Float, "float"),
                       (sqltypes.Numeric, "float"), (sqltypes.LargeBinary, "binary"), (sqltypes.String, "text")):
        if isinstance(column_type, kind):
            return name
    return type(column_type).__name__


def schema_of(url: str) -> dict[str, dict[str, Any]]:
    """What the database itself says its schema is, in terms both dialects share."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        schema = {}
        for table in sorted(set(found.get_table_names()) - BOOKKEEPING):
            uniques = {tuple(u["column_names"]) for u in found.get_unique_constraints(table)}
            indexes = {}
            for index in found.get_indexes(table):
                include = index.get("dialect_options", {}).get("postgresql_include") or ()
                columns = tuple(index["column_names"]) + tuple(include)
                if index.get("unique"):
                    uniques.add(columns)
                else:
                    indexes[index["name"]] = columns
            key = tuple(found.get_pk_constraint(table)["constrained_columns"])
            schema[table] = {
                # A key column is never NULL (old SQLite tables' TEXT PRIMARY KEY allows it, as
                # SQLite always has; the store never writes one).
                "columns": {c["name"]: (family(c["type"]), c["nullable"] and c["name"] not in key)
                            for c in found.get_columns(table)},
                "primary key": key,
                "foreign keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                        tuple(f["referred_columns"])) for f in found.get_foreign_keys(table)),
                "unique": sorted(uniques),
                "checks": sorted(tuple(sorted(set(re.findall(r"[a-z_]+", c["sqltext"])) & set(metadata.tables[
                    table].c.keys()))) for c in found.get_check_constraints(table)),
                "indexes": indexes,
            }
        return schema
    finally:
        engine.dispose()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'earmark.db'}"


def pg_url(admin_url: str) -> str:
    return admin_url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def legacy_pg() -> Iterator[tuple[str, str]]:
    """A database holding the legacy PostgreSQL store's dump, not yet migrated: (admin, service) URLs."""
    name = f"earmark_legacy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin = admin_url(name)
    try:
        subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", admin,
                        str(LEGACY / "postgres.pgdump")], check=True, capture_output=True, text=True)
        yield admin, service_url(name)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def legacy_store(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A copy of a legacy store's data dir and master key: (data dir, master key file)."""
    shutil.copytree(LEGACY / name, tmp_path / name)
    shutil.copytree(LEGACY / f"{name}-secrets", tmp_path / f"{name}-secrets")
    key = tmp_path / f"{name}-secrets" / "master.key"
    key.chmod(0o600)  # git keeps no file modes but the executable bit: a clone has it 0644
    return tmp_path / name, key


def new_schemas(tmp_path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """What a new SQLite store and a new PostgreSQL database each say their schema is."""
    with make_store(tmp_path / "sqlite") as lite:
        sqlite_schema = schema_of(sqlite_url(lite.data_dir))
    with temporary_database() as url:
        make_store(tmp_path / "pg", url).close()
        pg_schema = schema_of(pg_url(admin_url_for(url)))
    return sqlite_schema, pg_schema


def test_a_new_sqlite_store_and_a_new_postgres_database_have_the_same_schema(tmp_path: Path) -> None:
    sqlite_schema, pg_schema = new_schemas(tmp_path)
    assert set(sqlite_schema) == set(pg_schema) == set(metadata.tables)
    for table in metadata.tables:
        assert sqlite_schema[table] == pg_schema[table], table


def test_postgres_puts_every_owner_table_under_forced_row_level_security() -> None:
    with temporary_database() as url:
        rows = admin_execute(url, "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                                  "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
        policies = admin_execute(url, "SELECT tablename, policyname FROM pg_policies")
    assert {name for name, enabled, forced in rows if enabled and forced} == set(OWNER_TABLES)
    assert {t for t, _ in policies} == set(OWNER_TABLES)


def test_a_legacy_sqlite_store_upgrades_in_place_to_the_described_schema(tmp_path: Path) -> None:
    data_dir, key = legacy_store(tmp_path, "sqlite")
    before = _counts(data_dir)
    Store(data_dir, key).close()  # opening migrates
    assert sqlite3.connect(data_dir / "earmark.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    after = _counts(data_dir)
    assert {t: n for t, n in after.items() if t in before} == before and after["clip_blobs"] == 0
    with make_store(tmp_path / "fresh") as fresh:
        assert schema_of(sqlite_url(data_dir)) == schema_of(sqlite_url(fresh.data_dir))
    with Store(data_dir, key) as store:
        _still_works(store)


def test_a_legacy_postgres_database_upgrades_in_place_to_the_described_schema(
        tmp_path: Path, legacy_pg: tuple[str, str]) -> None:
    admin, service = legacy_pg
    assert migrate(admin, SERVICE_ROLE) == (6, SCHEMA_VERSION)
    data_dir, key = legacy_store(tmp_path, "postgres")
    with Store(data_dir, key, database_url=service) as store:
        _still_works(store)
    with temporary_database() as fresh:
        assert schema_of(pg_url(admin)) == schema_of(pg_url(admin_url_for(fresh)))
    assert migrate(admin, SERVICE_ROLE) == (SCHEMA_VERSION, SCHEMA_VERSION)  # and again: nothing to do


def test_a_store_from_before_the_last_release_is_refused_with_a_message(tmp_path: Path) -> None:
    data_dir, key = legacy_store(tmp_path, "sqlite")
    db = sqlite3.connect(data_dir / "earmark.db")
    db.execute("PRAGMA user_version=5")
    db.close()
    with pytest.raises(Exception, match="schema version 5 comes from an Earmark older than"):
        Store(data_dir, key)


def test_one_public_key_is_one_device_in_the_schema_itself(store: Store) -> None:
    # On SQLite this rested on a SELECT outside the write; now both backends refuse the row.
    alice = enrolled_device(store, "Alice")
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        tamper(store, "INSERT INTO devices (device_id, public_key, created_at) VALUES ('twin-pi', ?, 'now')",
               (alice.public_key,))


def _counts(data_dir: Path) -> dict[str, int]:
    db = sqlite3.connect(data_dir / "earmark.db")
    try:
        present = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in metadata.tables if t in present}
    finally:
        db.close()


def _still_works(store: Store) -> None:
    """The legacy store's rows, read through today's store: owners, clips that open with their
    owner's key, the mark, presence, the audit chain unbroken, and a new clip stored on top."""
    owners = {o.display_name: o for o in store.registry.owners()}
    assert set(owners) == {"Alice", "Bob", ""}  # Carol was erased: her tombstone has no name
    alice = owners["Alice"].owner_id
    clips = store.clips.of_owner(alice)
    assert len(clips) == 2
    assert all(store.clips.read(alice, clip) for clip in clips)
    assert list(store.clips.marks(alice).values()) == ["not_meant"]
    assert store.presence.of_owner(alice)["alice-pi"].online is True
    assert store.audit.verify() == []
    assert store.registry.device("bob-pi").revoked_at  # type: ignore[union-attr]
    dave = enrolled_device(store, "Dave")
    from earmark.wire.envelope import decode_envelope

    raw = dave.clip(b"dave")
    store.clips.put(dave.owner_id, decode_envelope(raw), raw)
    assert len(store.clips.of_owner(dave.owner_id)) == 1
    assert store.audit.verify() == []
