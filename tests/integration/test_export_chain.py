"""Exports that prove they are complete (issue 16): wire v2 chains each device's clips, the
store remembers the chain position of what it deleted, and verify-export names a clip
removed from the store behind the export's back, not one its owner deleted."""

from __future__ import annotations

from pathlib import Path

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import delete_clip
from earmark.cloud.owner.export import export_owner
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.store import Store
from earmark.device.sync.chain import Chain
from earmark.wire.envelope import decode_envelope, envelope_digest
from tests.support.cloudkit import SimDevice, enrolled_device, tamper


def test_verify_export_names_a_clip_removed_behind_its_back_but_not_one_the_owner_deleted(
        store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Alice")
    chain = Chain(tmp_path / "chain.json")
    envelopes = [device.clip(seed=n, chain=chain) for n in range(6)]
    ids = {decode_envelope(e).header.seq: decode_envelope(e).header.clip_id for e in envelopes}
    assert sorted(ids) == [1, 2, 3, 4, 5, 6]
    outcomes = Ingestor(store).handle_batch([(device.topic, e) for e in envelopes])
    assert {o.status for o in outcomes} == {"stored"}

    delete_clip(store, device.owner_id, ids[2])  # the owner's own deletion: on record
    tamper(store, "DELETE FROM clips WHERE clip_id = ?", (ids[4],))  # behind everyone's back

    archive = export_owner(store, device.owner_id, tmp_path / "out").path  # the export itself cannot tell
    problems = verify_export(store, archive, device.owner_id)
    assert problems == [f"device {device.device_id}: clip(s) at 4 of its chain are not in the export, "
                        "and no recorded deletion or retention purge explains them"]


def test_a_complete_chain_and_v1_clips_beside_it_verify_clean(store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Bob")
    chain = Chain(tmp_path / "chain.json")
    envelopes = [device.clip(seed=n, chain=chain) for n in range(3)] + [device.clip(seed=9, v1=True)]  # and one v1
    Ingestor(store).handle_batch([(device.topic, e) for e in envelopes])
    archive = export_owner(store, device.owner_id, tmp_path / "out").path
    assert verify_export(store, archive, device.owner_id) == []


def test_the_device_chain_survives_a_restart_and_a_crash_before_it_was_saved(tmp_path: Path) -> None:
    device = SimDevice("porch-pi", "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b")
    chain = Chain(tmp_path / "chain.json")
    first = device.clip(seed=1, chain=chain)
    second = device.clip(seed=2, chain=chain)
    (tmp_path / "chain.json").unlink()  # as if the device died between the spool write and the chain's
    again = Chain(tmp_path / "chain.json", spooled=[first, second])  # the spool still holds both
    third = device.clip(seed=3, chain=again)
    h2, h3 = decode_envelope(second).header, decode_envelope(third).header
    assert h3.seq == 3 and h3.prev_sha256 == envelope_digest(second)
    assert h2.prev_sha256 == envelope_digest(first)
