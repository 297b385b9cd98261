"""Exports that prove they are complete (issue 16): wire v2 chains each device's clips, the
store remembers the chain position of what it deleted or refused and each device's chain
end, and the manifest records the audit head of the export's snapshot. verify-export then
names a clip removed from the store behind the export's back, or left out by the export,
and not one its owner deleted, retention purged, ingest refused, or that arrived late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import delete_clip
from earmark.cloud.owner.export import export_owner
from earmark.cloud.owner.retention import purge_expired
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.store import Store
from earmark.device.sync.chain import Chain
from earmark.wire.envelope import decode_envelope, envelope_digest
from tests.support.cloudkit import SimDevice, enrolled_device, tamper

GAP = "of its chain are not in the export, and no recorded deletion, retention purge or refusal explains them"


def chained(device: SimDevice, count: int, captured: list[datetime] | None = None) -> list[bytes]:
    """`count` clips in the device's chain (positions 1..count), captured now or at `captured`."""
    return [device.clip(seed=n, captured=captured[n] if captured else None) for n in range(count)]


def ingest(store: Store, device: SimDevice, envelopes: list[bytes]) -> list[str]:
    return [o.status for o in Ingestor(store).handle_batch([(device.topic, e) for e in envelopes])]


def clip_id(envelope: bytes) -> str:
    return decode_envelope(envelope).header.clip_id


def check(store: Store, device: SimDevice, out: Path) -> list[str]:
    return verify_export(store, export_owner(store, device.owner_id, out).path, device.owner_id)


def test_verify_export_names_a_clip_removed_behind_its_back_but_not_one_the_owner_deleted(
        store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Alice")
    envelopes = chained(device, 6)
    assert [decode_envelope(e).header.seq for e in envelopes] == [1, 2, 3, 4, 5, 6]
    assert set(ingest(store, device, envelopes)) == {"stored"}

    delete_clip(store, device.owner_id, clip_id(envelopes[1]))  # the owner's own deletion: on record
    tamper(store, "DELETE FROM clips WHERE clip_id = ?", (clip_id(envelopes[3]),))  # behind everyone's back

    assert check(store, device, tmp_path / "out") == [f"device {device.device_id}: clip(s) at 4 {GAP}"]


def test_a_clip_removed_from_the_end_of_a_chain_is_named_too(store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Ann")
    envelopes = chained(device, 4)
    ingest(store, device, envelopes)
    for envelope in envelopes[2:]:  # the newest two: nothing after them in the archive to show the gap
        tamper(store, "DELETE FROM clips WHERE clip_id = ?", (clip_id(envelope),))
    assert check(store, device, tmp_path / "out") == [f"device {device.device_id}: clip(s) at 3-4 {GAP}"]


def test_retention_purges_and_refusals_at_ingest_are_accounted_for(store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Bea")
    now = datetime.now(UTC)
    times = [now - timedelta(days=40), now - timedelta(days=39), now + timedelta(hours=2), now]
    envelopes = chained(device, 4, times)  # position 3 claims a time 2 h ahead of the server's clock
    assert ingest(store, device, envelopes) == ["stored", "stored", "rejected", "stored"]
    assert purge_expired(store, 30) == 2  # positions 1 and 2
    assert check(store, device, tmp_path / "out") == []


def test_an_export_that_left_a_clip_out_is_caught(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    device = enrolled_device(store, "Cleo")
    envelopes = [*chained(device, 3), device.clip(seed=9, v1=True)]  # one v1 clip: no chain to show it
    ingest(store, device, envelopes)
    skipped = {clip_id(envelopes[1]), clip_id(envelopes[3])}
    every = store.clips.iter_owner
    monkeypatch.setattr(store.clips, "iter_owner",  # an export with the vendor's "human error" in it
                        lambda owner_id: (row for row in every(owner_id) if row.clip_id not in skipped))
    archive = export_owner(store, device.owner_id, tmp_path / "out").path
    monkeypatch.undo()
    problems = verify_export(store, archive, device.owner_id)
    assert sorted(p.split(" (")[0] for p in problems) == sorted(f"clip {c}" for c in skipped)
    assert all("was in the store when the export was made, but is not in the archive" in p for p in problems)


def test_a_clip_that_arrives_after_the_export_is_not_a_gap(store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Dora")
    envelopes = chained(device, 4)
    ingest(store, device, [envelopes[0], envelopes[1], envelopes[3]])  # position 3 is still on its way
    archive = export_owner(store, device.owner_id, tmp_path / "out").path
    ingest(store, device, [envelopes[2]])  # ...and arrives once the export is made
    assert verify_export(store, archive, device.owner_id) == []


def test_a_complete_chain_and_v1_clips_beside_it_verify_clean(store: Store, tmp_path: Path) -> None:
    device = enrolled_device(store, "Bob")
    ingest(store, device, [*chained(device, 3), device.clip(seed=9, v1=True)])
    assert check(store, device, tmp_path / "out") == []


def test_the_device_chain_survives_a_restart_and_a_crash_before_it_was_saved(tmp_path: Path) -> None:
    device = SimDevice("porch-pi", "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b")
    chain = Chain(tmp_path / "chain.json")
    first = device.clip(seed=1, chain=chain)
    second = device.clip(seed=2, chain=chain)
    assert Chain(tmp_path / "chain.json").next().seq == 3  # a restart reads the saved end
    (tmp_path / "chain.json").unlink()  # as if the device died between the spool write and the chain's
    again = Chain(tmp_path / "chain.json", spooled=[first, second])  # the spool still holds both
    third = device.clip(seed=3, chain=again)
    h2, h3 = decode_envelope(second).header, decode_envelope(third).header
    assert h3.seq == 3 and h3.prev_sha256 == envelope_digest(second)
    assert h2.prev_sha256 == envelope_digest(first)
