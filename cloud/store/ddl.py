"""The schema (store/schema.py) as each backend's DDL, and the statements that name their
columns: everything the store creates is rendered here from the one description.

  SQLite      tables, indexes (a covering index's INCLUDE columns as trailing keys)
  PostgreSQL  the same, plus row-level security on the owner tables (ENABLE, FORCE and the
              policies their `info` asks for), the gateway functions (store/gateways.py)
              and the grants of the service and gateway roles
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Index, MetaData, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from earmark.cloud.store.gateways import GATEWAYS
from earmark.cloud.store.schema import metadata, service_rights

DIALECTS: dict[str, Dialect] = {"sqlite": sqlite.dialect(), "postgres": postgresql.dialect()}  # type: ignore[no-untyped-call]
SCOPE_SETTING = "earmark.owner_id"
SCOPE = f"current_setting('{SCOPE_SETTING}', true)"
ERASING_SETTING = "earmark.erasing"  # the owner being erased, in the erasure's last transaction only
# (Outside any scope a setting once set reads '', never NULL.)
ERASING = f"(owner_id IS NULL AND current_setting('{ERASING_SETTING}', true) = {SCOPE} AND {SCOPE} <> '')"
GATEWAY_ROLE = "earmark_gateway"


def table(name: str) -> Table:
    return metadata.tables[name]


def create_table(name: str, backend: str, as_name: str | None = None) -> str:
    source = table(name)
    if as_name:
        source = source.to_metadata(MetaData(), name=as_name)
    return str(CreateTable(source).compile(dialect=DIALECTS[backend])).strip()


def create_index(index: Index, backend: str) -> str:
    """CREATE INDEX for `index`; on SQLite a covering index's INCLUDE columns are trailing keys.
    (The rendered copy is built on a copy of the table, so the description is never changed.)"""
    keys = index.info.get("sqlite_keys") if backend == "sqlite" else None
    if keys:
        assert index.table is not None
        copy = index.table.to_metadata(MetaData())
        index = Index(index.name, *(copy.c[c] for c in keys), unique=index.unique)
    return str(CreateIndex(index).compile(dialect=DIALECTS[backend])).strip()


def indexes(name: str) -> list[Index]:
    return sorted(table(name).indexes, key=lambda i: str(i.name))


def create_schema(backend: str) -> list[str]:
    """Every statement that makes an empty store at the current schema."""
    statements = []
    for t in metadata.sorted_tables:
        statements.append(create_table(t.name, backend))
        statements += [create_index(i, backend) for i in indexes(t.name)]
    statements.append("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")
    if backend == "postgres":
        statements += row_security() + gateway_functions()
    return statements


def row_security() -> list[str]:
    """PostgreSQL: each owner table's policies, made afresh from its `info`."""
    statements = []
    for t in metadata.sorted_tables:
        kind = t.info.get("owner")
        if not kind:
            continue
        statements += [f"ALTER TABLE {t.name} {how} ROW LEVEL SECURITY" for how in ("ENABLE", "FORCE")]
        statements += [f"DROP POLICY IF EXISTS {p} ON {t.name}"
                       for p in ("owner_scope", "owner_read", "append", "unowned_read", "redact")]
        if kind == "scope":
            statements.append(f"CREATE POLICY owner_scope ON {t.name} USING (owner_id = {SCOPE}) "
                              f"WITH CHECK (owner_id = {SCOPE})")
        else:  # the log: read your own, append, and at erasure redact (no delete: no policy allows it)
            statements += [f"CREATE POLICY owner_read ON {t.name} FOR SELECT USING (owner_id = {SCOPE})",
                           f"CREATE POLICY unowned_read ON {t.name} FOR SELECT USING {ERASING}",
                           f"CREATE POLICY append ON {t.name} FOR INSERT WITH CHECK "
                           f"(owner_id IS NULL OR owner_id = {SCOPE})",
                           f"CREATE POLICY redact ON {t.name} FOR UPDATE "
                           f"USING (owner_id = {SCOPE} OR {ERASING}) "
                           f"WITH CHECK (owner_id = {SCOPE} AND event = 'redacted')"]
    return statements


def gateway_functions() -> list[str]:
    return [s for g in GATEWAYS.values() for s in g.function_ddl()]


def grants(service: str, extra_tables: Iterable[str] = ()) -> list[str]:
    """PostgreSQL: exactly what the service and gateway roles may do. `service` is a quoted
    role name; `extra_tables`: bookkeeping tables outside the schema the service reads."""
    statements = [f"REVOKE ALL ON {t.name} FROM PUBLIC" for t in metadata.sorted_tables]
    statements += [f"REVOKE ALL ON {t.name} FROM {service}" for t in metadata.sorted_tables]
    read_by_gateways = sorted({name for g in GATEWAYS.values() for name in g.tables()})
    statements += [f"GRANT SELECT ON {name} TO {GATEWAY_ROLE}" for name in read_by_gateways]
    for g in GATEWAYS.values():
        statements += [f"ALTER FUNCTION {g.signature} OWNER TO {GATEWAY_ROLE}",
                       f"REVOKE ALL ON FUNCTION {g.signature} FROM PUBLIC",
                       f"GRANT EXECUTE ON FUNCTION {g.signature} TO {service}"]
    statements += [f"GRANT {', '.join(service_rights(t))} ON {t.name} TO {service}" for t in metadata.sorted_tables]
    statements += [f"GRANT SELECT ON {name} TO {service}" for name in extra_tables]
    return statements


def insert(name: str, columns: Iterable[str] | None = None, conflict: str = "", update: Iterable[str] = ()) -> str:
    """INSERT naming its columns, each a `:column` parameter. `conflict`: the key whose clash
    does nothing (or, with `update`, sets those columns from the new row)."""
    cols = list(columns) if columns is not None else [c.name for c in table(name).columns]
    missing = set(cols) - set(table(name).c.keys())
    assert not missing, f"{name} has no columns {missing}"
    sql = f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
    if conflict:
        sets = ", ".join(f"{c} = excluded.{c}" for c in update)
        sql += f" ON CONFLICT ({conflict}) " + (f"DO UPDATE SET {sets}" if sets else "DO NOTHING")
    return sql


# The store's settings and small records, by key (the meta table): set, replacing any value.
SET_META = insert("meta", conflict="key", update=("value",))
