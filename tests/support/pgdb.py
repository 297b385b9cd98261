"""Throwaway PostgreSQL databases on the local server: each is created, migrated by the
admin (a superuser, as `earmark-cloud db migrate` expects) and used by tests under the
service role, the same unprivileged role row-level security binds in production. Dropped
afterwards.

EARMARK_TEST_PG_ADMIN names the server and its admin (default: the local trust-auth server).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg

from earmark.cloud.store.postgres import migrate

ADMIN = os.environ.get("EARMARK_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVICE_ROLE = "earmark_test_service"
_admin_urls: dict[str, str] = {}  # service URL -> that database's admin URL


def _url(role: str, database: str) -> str:
    parts = urlsplit(ADMIN)
    return f"postgresql://{role}@{parts.hostname}:{parts.port or 5432}/{database}"


def admin_url(database: str) -> str:
    return _url(urlsplit(ADMIN).username or "postgres", database)


def service_url(database: str) -> str:
    return _url(SERVICE_ROLE, database)


@contextmanager
def temporary_database() -> Iterator[str]:
    """Yields the service role's URL for a new, migrated database."""
    name = f"earmark_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin_user = urlsplit(ADMIN).username or "postgres"
    admin_url = _url(admin_user, name)
    migrate(admin_url, SERVICE_ROLE)
    service_url = _url(SERVICE_ROLE, name)
    _admin_urls[service_url] = admin_url
    try:
        yield service_url
    finally:
        _admin_urls.pop(service_url, None)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin_execute(service_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL as the database's admin, past row-level security: for tests that tamper with
    the store the way someone with database access could."""
    with psycopg.connect(_admin_urls[service_url], autocommit=True) as conn:
        cur = conn.execute(sql.replace("?", "%s"), params or None)
        return cur.fetchall() if cur.description else []


def admin_url_for(service_url: str) -> str:
    """The admin's URL for a temporary database, by its service role's URL."""
    return _admin_urls[service_url]
