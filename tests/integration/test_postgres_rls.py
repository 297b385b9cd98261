"""PostgreSQL row-level security, from the service role's side: what a statement sees and
may write outside and inside an owner's scope, and the roles the service refuses to run as."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.store.database import StoreError, StoreUnavailable
from earmark.cloud.store.postgres import PostgresDatabase
from earmark.cloud.store.store import Store
from tests.support.cloudkit import SimDevice, make_store, tamper
from tests.support.pgdb import admin_execute, temporary_database


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[Store]:
    with temporary_database() as url:
        store = make_store(tmp_path / "cloud", url, blob_store="database")  # the blobs are owner rows too
        yield store
        store.close()


@pytest.fixture
def two_owners(pg_store: Store) -> tuple[str, str]:
    """Alice and Bob, each with a device, two stored clips (one marked) and the device online."""
    owners = []
    for name in ("Alice", "Bob"):
        owner = pg_store.registry.add_owner(name).owner_id
        device = SimDevice(f"{name.lower()}-pi", owner)
        pg_store.registry.add_device(owner, device.public_key, device.device_id)
        outcomes = Ingestor(pg_store).handle_batch([(device.topic, device.clip(seed=s)) for s in range(2)])
        assert [o.status for o in outcomes] == ["stored", "stored"]
        assert pg_store.clips.mark(owner, outcomes[0].clip_id or "", "not_meant")  # the portal's rows too
        assert pg_store.presence.record(device.device_id, b'{"state": "online"}')
        owners.append(owner)
    return owners[0], owners[1]


def service_connection(store: Store) -> psycopg.Connection:  # type: ignore[type-arg]
    return psycopg.connect(store.database_url, autocommit=True)


def test_outside_an_owner_scope_no_owner_rows_are_visible(pg_store: Store, two_owners: tuple[str, str]) -> None:
    # The bug RLS is for: a query that forgot its owner filter returns nobody's rows.
    for table in ("clips", "owners", "bindings", "audit", "clip_marks", "device_presence", "clip_blobs"):
        assert pg_store.db.query(f"SELECT * FROM {table}") == [], table
    assert len(tamper(pg_store, "SELECT * FROM clips")) == 4  # they are there, for the admin
    assert len(tamper(pg_store, "SELECT * FROM clip_blobs")) == 4


def test_an_owner_scope_shows_that_owner_only(pg_store: Store, two_owners: tuple[str, str]) -> None:
    alice, bob = two_owners
    rows = pg_store.db.query("SELECT owner_id FROM clips", owner=alice)  # no WHERE clause at all
    assert [r["owner_id"] for r in rows] == [alice, alice]
    events = pg_store.db.query("SELECT DISTINCT owner_id FROM audit", owner=bob)
    assert [r["owner_id"] for r in events] == [bob]
    for table in ("clip_marks", "device_presence"):
        assert [r["owner_id"] for r in pg_store.db.query(f"SELECT owner_id FROM {table}", owner=bob)] == [bob]
    assert [r["owner_id"] for r in pg_store.db.query("SELECT owner_id FROM clip_blobs", owner=bob)] == [bob, bob]
    # The scope is SET LOCAL: it ends with its transaction.
    assert pg_store.db.query("SELECT current_setting('earmark.owner_id', true) AS s")[0]["s"] in (None, "")


def test_a_scoped_transaction_cannot_write_or_move_another_owners_rows(
        pg_store: Store, two_owners: tuple[str, str]) -> None:
    alice, bob = two_owners
    with service_connection(pg_store) as conn, conn.transaction():
        conn.execute("SELECT set_config('earmark.owner_id', %s, true)", (alice,))
        # Relabel Alice's clips to Bob: WITH CHECK refuses the new owner id.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), conn.transaction():
            conn.execute("UPDATE clips SET owner_id = %s", (bob,))
        for table in ("clip_marks", "device_presence"):  # nor the portal's rows of hers
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), conn.transaction():
                conn.execute(f"UPDATE {table} SET owner_id = %s", (bob,))
            assert conn.execute(f"DELETE FROM {table} WHERE owner_id = %s", (bob,)).rowcount == 0
        # Bob's rows are not there to update or delete.
        assert conn.execute("DELETE FROM clips WHERE owner_id = %s", (bob,)).rowcount == 0
        assert conn.execute("UPDATE owners SET display_name = 'x' WHERE owner_id = %s", (bob,)).rowcount == 0
        # Nor can the audit log be edited, even the scoped owner's events: append only, and
        # an update can only redact the scoped owner's (an erasure's last step).
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"), conn.transaction():
            conn.execute("DELETE FROM audit")
        for edit in ("UPDATE audit SET detail = '{}'", f"UPDATE audit SET event = 'redacted', owner_id = '{bob}'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), conn.transaction():
                conn.execute(edit)
        assert conn.execute("UPDATE audit SET event = 'redacted' WHERE owner_id IS NULL").rowcount == 0  # not erasing
    assert len(tamper(pg_store, "SELECT * FROM clips WHERE owner_id = ?", (bob,))) == 2


def test_a_sealed_blob_row_stays_under_its_owners_scope_and_prefix(
        pg_store: Store, two_owners: tuple[str, str]) -> None:
    alice, bob = two_owners
    [alices, _] = [r[0] for r in tamper(pg_store, "SELECT path FROM clip_blobs WHERE owner_id = ? ORDER BY path",
                                              (alice,))]
    with service_connection(pg_store) as conn, conn.transaction():
        conn.execute("SELECT set_config('earmark.owner_id', %s, true)", (alice,))
        # Her blob relabelled to Bob, or written under his owner id: row-level security refuses.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), conn.transaction():
            conn.execute("UPDATE clip_blobs SET owner_id = %s", (bob,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), conn.transaction():
            conn.execute("INSERT INTO clip_blobs VALUES (%s, %s, 'x', 0)", (f"blobs/{bob}/new.bin", bob))
        # Her own row at a path outside her prefix (Bob's, or a climb out of hers): the check refuses.
        for path in (f"blobs/{bob}/{alices.rsplit('/', 1)[1]}", f"blobs/{alice}x/new.bin", "blobs/new.bin"):
            with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
                conn.execute("UPDATE clip_blobs SET path = %s WHERE path = %s", (path, alices))
        assert conn.execute("SELECT count(*) FROM clip_blobs WHERE owner_id = %s", (bob,)).fetchone() == (0,)
        assert conn.execute("DELETE FROM clip_blobs WHERE owner_id = %s", (bob,)).rowcount == 0
    # And the store's own reads are scoped by the path's owner: Bob's blobs are his alone.
    assert pg_store.blobs.read(alices) and pg_store.blobs.owner_folders() == sorted([alice, bob])
    assert len(tamper(pg_store, "SELECT * FROM clip_blobs WHERE owner_id = ?", (bob,))) == 2


def test_the_gateways_answer_only_what_they_name(pg_store: Store, two_owners: tuple[str, str]) -> None:
    alice, _ = two_owners
    with service_connection(pg_store) as conn:
        [(clip_id,)] = conn.execute("SELECT clip_id FROM clips LIMIT 1").fetchall() or [(None,)]
        assert clip_id is None  # no scope: nothing
        row = tamper(pg_store, "SELECT clip_id, envelope_sha256 FROM clips WHERE owner_id = ? LIMIT 1", (alice,))[0]
        fingerprint = conn.execute("SELECT * FROM earmark_fingerprints(%s::jsonb)", (f'["{row[0]}"]',)).fetchall()
        assert fingerprint == [(row[0], row[1])]
        columns = [c.name for c in conn.execute("SELECT * FROM earmark_bindings(NULL)").description or []]
        assert columns == ["device_id", "owner_id", "bound_at", "unbound_at"]


def _role_url(store: Store, role: str) -> str:
    parts = urlsplit(store.database_url)
    return parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}").geturl()


@pytest.mark.parametrize("grant, complaint", [
    ("SUPERUSER", "superuser"),
    ("BYPASSRLS", "BYPASSRLS"),
    ("OWNER", "owns"),
])
def test_the_service_refuses_roles_that_row_level_security_would_not_bind(
        pg_store: Store, grant: str, complaint: str) -> None:
    role = f"earmark_t_bad_{grant.lower()}"
    admin_execute(pg_store.database_url, f"DROP ROLE IF EXISTS {role}")
    if grant == "OWNER":  # a plain role that is a member of the tables' owner
        owner = admin_execute(pg_store.database_url, "SELECT tableowner FROM pg_tables WHERE tablename = 'clips'")
        admin_execute(pg_store.database_url, f"CREATE ROLE {role} LOGIN IN ROLE {owner[0][0]}")
    else:
        admin_execute(pg_store.database_url, f"CREATE ROLE {role} LOGIN {grant}")
    admin_execute(pg_store.database_url, f"GRANT SELECT ON earmark_schema TO {role}")
    try:
        with pytest.raises(StoreError, match=complaint):
            PostgresDatabase(_role_url(pg_store, role))
    finally:
        admin_execute(pg_store.database_url, f"DROP OWNED BY {role}")
        admin_execute(pg_store.database_url, f"DROP ROLE {role}")


def test_the_service_refuses_a_schema_whose_row_level_security_was_turned_off(pg_store: Store) -> None:
    admin_execute(pg_store.database_url, "ALTER TABLE clips NO FORCE ROW LEVEL SECURITY")
    with pytest.raises(StoreError, match="not enabled and forced on clips"):
        PostgresDatabase(pg_store.database_url)


def test_an_unmigrated_database_and_a_wrong_password_are_one_line_errors(tmp_path: Path) -> None:
    import uuid

    from tests.support.pgdb import ADMIN

    name = f"earmark_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _role_url_for(ADMIN, "postgres", name)
        with pytest.raises(StoreError, match=r"no Earmark schema: run `earmark-cloud db migrate"):
            PostgresDatabase(url)
        # A missing role is refused at once (exit 2), not retried as if the server were down.
        with pytest.raises(StoreError, match=r"PostgreSQL at .*no_such_role_x.* refused: .*does not exist") as caught:
            PostgresDatabase(_role_url_for(ADMIN, "no_such_role_x", name))
        assert not isinstance(caught.value, StoreUnavailable)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _role_url_for(admin: str, role: str, database: str) -> str:
    parts = urlsplit(admin)
    return f"postgresql://{role}@{parts.hostname}:{parts.port or 5432}/{database}"


def test_a_lost_database_connection_fails_the_batch_unacked_and_the_next_try_reconnects(
        pg_store: Store, two_owners: tuple[str, str]) -> None:
    alice, _ = two_owners
    device = SimDevice("alice-2", alice)
    pg_store.registry.add_device(alice, device.public_key, device.device_id)
    envelope = device.clip(seed=9)
    # The database drops the service's connection (a failover, a restart).
    [(killed,)] = admin_execute(pg_store.database_url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE application_name = 'earmark' AND datname = current_database()")
    assert killed == 1
    with pytest.raises(StoreUnavailable, match="database"):  # worth retrying: nothing to fix
        Ingestor(pg_store).handle(device.topic, envelope)  # raised, so the caller does not ack
    outcome = Ingestor(pg_store).handle(device.topic, envelope)  # the redelivery, on a new connection
    assert outcome.status == "stored" and pg_store.clips.count(alice) == 3
    assert pg_store.quarantine.all() == []


def test_an_erasure_waits_for_a_clip_commit_in_flight_and_then_deletes_that_clip_too(
        pg_store: Store, two_owners: tuple[str, str]) -> None:
    import threading

    from earmark.cloud.owner.erasure import erase_owner
    from tests.support.cloudkit import reopen

    alice, _ = two_owners
    device = SimDevice("alice-3", alice)
    pg_store.registry.add_device(alice, device.public_key, device.device_id)
    ingester = reopen(pg_store)  # another process, committing a batch for Alice
    envelope = device.clip(seed=11)
    checked, release = threading.Event(), threading.Event()
    real_append = ingester.audit.append_many

    def slow_append(*args, **kwargs):  # type: ignore[no-untyped-def]
        checked.set()  # the live-owner check has run and holds its row lock
        release.wait(10)
        return real_append(*args, **kwargs)

    ingester.audit.append_many = slow_append  # type: ignore[method-assign]
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(Ingestor(ingester).handle(device.topic, envelope)))
    worker.start()
    assert checked.wait(10)
    eraser = threading.Thread(target=erase_owner, args=(pg_store, alice))
    eraser.start()
    eraser.join(1.0)
    assert eraser.is_alive(), "the erasure destroyed the key under a commit that had checked it"
    release.set()
    worker.join(10)
    eraser.join(10)
    assert outcome and outcome[0].status == "stored"  # type: ignore[attr-defined]
    assert tamper(pg_store, "SELECT count(*) FROM clips WHERE owner_id = ?", (alice,)) == [(0,)]
    assert not (pg_store.data_dir / "blobs" / alice).exists()
    ingester.close()
