"""The few questions that look across owners, each described once as a query on the schema
(store/schema.py) and answered by that query and nothing else: on SQLite as the query
itself, on PostgreSQL by a SECURITY DEFINER function of the gateway role (which bypasses
row-level security) that runs the same query and returns only the columns it names.

  bindings         a device's binding history (or every device's, for NULL), oldest first
  fingerprints     the envelope digests stored, or remembered as deleted, under these clip
                   ids (a JSON array), whoever's they are: de-duplication only
  owner_directory  the operator's owner list: names and dates, no keys, no recipients
  counts           the store's totals
  wake_marks       per wake word (or "(button)"), clips stored and how many their owners
                   marked "I did not mean to wake it": numbers only, for tuning
  audit            the audit chain after a sequence number, in order, a page at a time
  blob_owners      the owners who have clip blobs in the database (blob_store = "database"):
                   ids only, for the sweep, which then looks in each owner's scope
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Table,
    Text,
    bindparam,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import union_all
from sqlalchemy.sql.selectable import SelectBase
from sqlalchemy.sql.util import find_tables
from sqlalchemy.types import TypeEngine

from earmark.cloud.store.schema import (
    audit,
    bindings,
    clip_blobs,
    clip_marks,
    clips,
    deleted_clips,
    devices,
    owners,
    quarantine,
)

FUNCTION_PREFIX = "earmark_"
PG = postgresql.dialect()  # type: ignore[no-untyped-call]
SQLITE = sqlite.dialect(paramstyle="named")
Query = SelectBase


class json_texts(ColumnElement[str]):  # lowercase: it reads as the SQL function it renders
    """The text elements of a JSON array, as a subquery (`x IN json_texts(p)`)."""

    inherit_cache = True
    type = Text()

    def __init__(self, array: ColumnElement[Any]) -> None:
        self.array = array


@compiles(json_texts, "sqlite")
def _json_texts_sqlite(element: json_texts, compiler: Any, **kw: Any) -> str:
    return f"(SELECT value FROM json_each({compiler.process(element.array, **kw)}))"


@compiles(json_texts, "postgresql")
def _json_texts_pg(element: json_texts, compiler: Any, **kw: Any) -> str:
    return f"(SELECT jsonb_array_elements_text({compiler.process(element.array, **kw)}))"


def _text(value: str) -> ColumnElement[str]:
    return literal_column(f"'{value}'", Text)


def _count(column: Any = None) -> ColumnElement[int]:
    return func.count(column, type_=BigInteger) if column is not None else func.count(type_=BigInteger)


@dataclass(frozen=True)
class Gateway:
    name: str
    params: tuple[tuple[str, TypeEngine[Any]], ...]
    build: Callable[..., Query]  # the query, from one SQL expression per parameter

    def query(self, backend: str) -> tuple[str, dict[str, object]]:
        """What to run for it on `backend`, with `:name` parameters, and the fixed values of
        any parameters the compiled query added."""
        if backend == "sqlite":
            return self._sqlite
        args = ", ".join(f"CAST(:{n} AS {t.compile(PG)})" for n, t in self.params)
        return f"SELECT * FROM {self.function}({args})", {}

    @functools.cached_property
    def _sqlite(self) -> tuple[str, dict[str, object]]:
        # Compiled once: SQLAlchemy's compiler took ~1 ms a call, twice per ingest batch.
        compiled = self.build(*(bindparam(n) for n, _ in self.params)).compile(dialect=SQLITE)
        names = {n for n, _ in self.params}
        return str(compiled), {k: v for k, v in compiled.params.items() if k not in names}

    @property
    def function(self) -> str:
        return FUNCTION_PREFIX + self.name

    @property
    def signature(self) -> str:
        return f"{self.function}({', '.join(t.compile(PG).lower() for _, t in self.params)})"

    def function_ddl(self) -> list[str]:
        """PostgreSQL: the function that answers it, made afresh (a changed return type cannot
        be replaced in place)."""
        query = self.build(*(literal_column(f"p_{n}", t) for n, t in self.params))
        body = str(query.compile(dialect=PG, compile_kwargs={"literal_binds": True}))
        returns = ", ".join(f"{c.name} {c.type.compile(PG)}" for c in query.selected_columns)
        args = ", ".join(f"p_{n} {t.compile(PG)}" for n, t in self.params)
        return [f"DROP FUNCTION IF EXISTS {self.signature}",
                f"CREATE FUNCTION {self.function}({args}) RETURNS TABLE ({returns}) "
                "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$ "
                f"{body} $$"]

    def tables(self) -> set[str]:
        """The tables it reads (the gateway role is granted SELECT on these alone)."""
        query = self.build(*(literal_column(f"p_{n}", t) for n, t in self.params))
        return {t.name for t in find_tables(query, include_joins=True) if isinstance(t, Table)}


def _bindings(device: ColumnElement[str]) -> Query:
    return (select(bindings.c.device_id, bindings.c.owner_id, bindings.c.bound_at, bindings.c.unbound_at)
            .where(or_(device.is_(None), bindings.c.device_id == device))
            .order_by(bindings.c.device_id, bindings.c.bound_at))


def _fingerprints(ids: ColumnElement[str]) -> Query:
    return union_all(
        select(clips.c.clip_id, clips.c.envelope_sha256).where(clips.c.clip_id.op("IN")(json_texts(ids))),
        select(deleted_clips.c.clip_id, deleted_clips.c.envelope_sha256)
        .where(deleted_clips.c.clip_id.op("IN")(json_texts(ids))))


def _owner_directory() -> Query:
    return (select(owners.c.owner_id, owners.c.display_name, owners.c.created_at, owners.c.erased_at)
            .order_by(owners.c.created_at))


def _counts() -> Query:
    return union_all(*(select(_text(table.name).label("name"), _count().label("n")).select_from(table)
                       for table in (owners, devices, clips, quarantine, audit)))


def _wake_marks() -> Query:
    word = func.coalesce(clips.c.wake_word, _text("(") + clips.c.trigger + _text(")"), type_=Text).label("wake_word")
    query: Query = (select(word, _count().label("clips"), _count(clip_marks.c.clip_id).label("marked"))
                    .select_from(clips.outerjoin(clip_marks, clip_marks.c.clip_id == clips.c.clip_id))
                    .group_by(word).order_by(word))
    return query


def _audit(after: ColumnElement[int], limit: ColumnElement[int]) -> Query:
    query: Query = select(audit).where(audit.c.seq > after).order_by(audit.c.seq).limit(limit)
    return query


def _blob_owners() -> Query:
    query: Query = select(clip_blobs.c.owner_id).distinct().order_by(clip_blobs.c.owner_id)
    return query


GATEWAYS = {g.name: g for g in (
    Gateway("bindings", (("device", Text()),), _bindings),
    Gateway("fingerprints", (("clips", postgresql.JSONB()),), _fingerprints),
    Gateway("owner_directory", (), _owner_directory),
    Gateway("counts", (), _counts),
    Gateway("wake_marks", (), _wake_marks),
    Gateway("audit", (("after", BigInteger()), ("limit", Integer())), _audit),
    Gateway("blob_owners", (), _blob_owners),
)}
