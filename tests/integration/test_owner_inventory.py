"""The store is held to its declared list of owner-linked data (cloud/owner/inventory.py),
on both backends: every table the database itself holds, every kind of file a working store
makes in its data dir and key folder, and every topic kind has an entry; and after an
erasure, no table holds a row naming the owner or their devices unless the list says what
remains and why (issue 24: one declared registry, and a test that fails when a table, file
kind or retained topic is added without an entry)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import earmark.wire.topics as topics
from earmark.cloud.owner import inventory
from earmark.cloud.owner.erasure import erase_owner
from earmark.cloud.owner.export import export_owner
from earmark.cloud.portal.state import PortalState
from earmark.cloud.settings import PortalSettings
from earmark.cloud.store.store import Store
from tests.integration.test_erasure_leaves_nothing import prepared, with_clips
from tests.integration.test_schema import new_schemas
from tests.support.cloudkit import EVERY_BLOB_STORE, tamper


def test_every_table_either_backend_holds_is_in_the_inventory(tmp_path: Path) -> None:
    sqlite_schema, pg_schema = new_schemas(tmp_path)
    assert set(sqlite_schema) == set(pg_schema) == set(inventory.TABLES)


def test_every_topic_kind_is_in_the_inventory() -> None:
    """A topic maker is `<kind>_topic(device_id)`; its reader is `device_from_<kind>_topic`."""
    kinds = {n for n in dir(topics) if n.endswith("_topic") and not n.startswith("device_from_")}
    assert all(getattr(topics, n)("kitchen-pi").startswith(f"{topics.PREFIX}/") for n in kinds)
    assert kinds == set(inventory.TOPICS)


def working_store(store: Store) -> tuple[str, str]:
    """Everything a store makes files for: clips, a refused payload, a blob set aside, an
    export, a portal export waiting. Returns (the owner to erase, the other one)."""
    alice, bob = with_clips(store, "Alice", 2), with_clips(store, "Bob", 1)
    store.quarantine.put(alice.topic, "malformed", "test", b"junk", device_id=alice.device_id)
    store.blobs.write(f"blobs/{alice.owner_id}/stray.bin", b"not a blob")
    assert store.sweep().set_aside == 1
    export_owner(store, bob.owner_id, store.data_dir.parent / "exports")
    store.audit.record("portal_signed_in", owner_id=alice.owner_id, detail={"client": "198.51.100.77"})
    return alice.owner_id, bob.owner_id


def test_every_file_kind_a_working_store_makes_is_in_the_inventory(store: Store) -> None:
    state = PortalState(store, replace(PortalSettings(), public_url="http://localhost:8"))
    try:
        alice, _ = working_store(store)
        prepared(state, alice)
        (store.data_dir / "cloud.toml").write_text("")
        made = {p.name for p in store.data_dir.iterdir()}
        keys = {p.name for p in store.master_key_path.parent.iterdir()}
        erase_owner(store, alice)  # the ledger is made by the first erasure
        keys |= {p.name for p in store.master_key_path.parent.iterdir()}
    finally:
        state.exports.close()
    assert made <= set(inventory.DATA_FILES), made - set(inventory.DATA_FILES)
    assert keys <= set(inventory.KEY_FILES), keys - set(inventory.KEY_FILES)
    assert {"blobs", "quarantine", "set-aside", "portal-exports", "audit.head"} <= made
    assert {"master.key", "owner-keys", "erasures.ledger", "export-signing.key"} <= keys


@EVERY_BLOB_STORE
def test_after_an_erasure_only_what_the_inventory_says_remains(store: Store) -> None:
    alice, bob = working_store(store)
    devices = [d.device_id for d in store.registry.devices(alice)]
    erase_owner(store, alice)
    for table, holding in inventory.TABLES.items():
        if isinstance(holding, inventory.Holding) and holding.remains:
            continue  # what remains, and why, is declared
        rows = [repr(row) for row in tamper(store, f"SELECT * FROM {table}")]
        naming = [r for r in rows if alice in r or any(f"'{d}'" in r for d in devices)]
        assert naming == [], f"{table} keeps {naming} of the erased owner; the inventory says nothing remains"
    assert alice not in store.blobs.owner_folders() and bob in store.blobs.owner_folders()
    assert list(store.blobs.files_under(f"set-aside/blobs/{alice}")) == []
    assert not (store.master_key_path.parent / "owner-keys" / f"{alice}.key").exists()
