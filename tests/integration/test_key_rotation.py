"""Master-key rotation, on both backends: every owner keeps their clips, the old key opens
nothing any more, the erasure ledger follows, and a rotation cut short finishes at the next open."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import erase_owner
from earmark.cloud.owner.export import export_owner
from earmark.cloud.store.crypto import new_key
from earmark.cloud.store.database import StoreError
from earmark.cloud.store.rotation import pending_path
from earmark.cloud.store.store import Store
from earmark.runtime.durable import write_file
from tests.support.cloudkit import SimDevice, enrolled_device, reopen


def populated(store: Store) -> tuple[SimDevice, SimDevice]:
    ann, ben = enrolled_device(store, "Ann"), enrolled_device(store, "Ben")
    for seed, device in enumerate((ann, ben)):
        assert Ingestor(store).handle(device.topic, device.clip(seed=seed)).status == "stored"
    return ann, ben


def test_rotation_rewraps_every_key_and_retires_the_old_one(store: Store, tmp_path: Path) -> None:
    ann, ben = populated(store)
    erase_owner(store, ben.owner_id)
    old_key = tmp_path / "old.key"
    shutil.copy2(store.master_key_path, old_key)
    assert store.rotate_master_key() == 1  # Ben's key is gone already
    store.close()
    with pytest.raises(StoreError, match="wrong master key"):
        Store(store.data_dir, old_key, database_url=store.database_url)
    rotated = reopen(store)
    try:
        assert export_owner(rotated, ann.owner_id, tmp_path / "out").clips == 1
        assert [e.owner_id for e in rotated.erasures.entries()] == [ben.owner_id]  # the ledger followed
        assert rotated.audit.verify() == []
    finally:
        rotated.close()


def test_a_rotation_cut_short_after_the_database_switched_finishes_at_the_next_open(store: Store,
                                                                                     tmp_path: Path) -> None:
    ann, _ = populated(store)
    fresh = new_key()
    write_file(pending_path(store.master_key_path), base64.b64encode(fresh) + b"\n")  # step 1
    with store.audit.write() as cur:  # step 2 committed, then the power went
        store.keys.rewrap_all(cur, [o.owner_id for o in store.registry.owners()], fresh)
    store.close()
    resumed = reopen(store)
    try:
        assert not pending_path(store.master_key_path).exists()
        assert resumed.keys.master_key == fresh
        assert export_owner(resumed, ann.owner_id, tmp_path / "out").clips == 1
    finally:
        resumed.close()


def test_a_rotation_cut_short_before_the_database_switched_is_dropped(store: Store) -> None:
    write_file(pending_path(store.master_key_path), base64.b64encode(new_key()) + b"\n")  # only step 1
    before = store.keys.master_key
    store.close()
    resumed = reopen(store)
    try:
        assert resumed.keys.master_key == before and not pending_path(store.master_key_path).exists()
    finally:
        resumed.close()
