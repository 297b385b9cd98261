"""The ingest core over a real store, on SQLite and on PostgreSQL under the service role:
stored, duplicate, and every rejection reason, none of which touches any owner's clips."""

from __future__ import annotations

import json
import logging
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.export import export_owner
from earmark.cloud.store.crypto import CryptoError, clip_aad, seal
from earmark.cloud.store.store import SWEEP_GRACE_S, Store
from earmark.wire.envelope import MAX_ENVELOPE_BYTES, decode_envelope
from tests.support.cloudkit import EVERY_BLOB_STORE, SimDevice, make_store, new_clip_id, reopen, tamper


@pytest.fixture
def pair(store: Store) -> tuple[SimDevice, SimDevice]:
    """Alice's kitchen device and Bob's den device, registered."""
    alice = store.registry.add_owner("Alice")
    bob = store.registry.add_owner("Bob")
    a = SimDevice("kitchen", alice.owner_id)
    b = SimDevice("den-pi", bob.owner_id)
    store.registry.add_device(alice.owner_id, a.public_key, a.device_id)
    store.registry.add_device(bob.owner_id, b.public_key, b.device_id)
    return a, b


def snapshot(store: Store) -> dict[str, list[tuple[str, str]]]:
    return {o.owner_id: [(c.clip_id, c.envelope_sha256) for c in store.clips.of_owner(o.owner_id)]
            for o in store.registry.owners()}


def test_a_clip_is_stored_sealed_under_its_owner(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    envelope = a.clip(canary=b"ALICE-CANARY-0001")
    outcome = Ingestor(store).handle(a.topic, envelope)
    assert (outcome.status, outcome.owner_id) == ("stored", a.owner_id)
    assert outcome.receipt() is not None and outcome.receipt().status == "stored"  # type: ignore[union-attr]
    [row] = store.clips.of_owner(a.owner_id)
    assert row.blob_path.startswith(f"blobs/{a.owner_id}/")
    blob = (store.data_dir / row.blob_path).read_bytes()
    assert b"ALICE-CANARY-0001" not in blob  # encrypted at rest
    assert store.clips.read(a.owner_id, row) == envelope
    assert store.audit.events()[0]["event"] == "clip_stored"


def test_the_same_clip_again_is_a_duplicate_stored_once(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    envelope = a.clip()
    ingest = Ingestor(store)
    assert ingest.handle(a.topic, envelope).status == "stored"
    assert ingest.handle(a.topic, envelope).status == "duplicate"
    assert store.clips.count(a.owner_id) == 1


def rejections(a: SimDevice, b: SimDevice, store: Store) -> dict[str, tuple[str, bytes]]:
    """One message per rejection reason: (topic, payload)."""
    good = a.clip(seed=1)
    env = decode_envelope(good)
    stranger = SimDevice("stranger", a.owner_id)
    preamble = struct.pack(">4sBBII", b"EMRK", 4, 0, len(env.header_bytes), len(env.audio))  # no version 4 yet
    return {
        "unknown_device": (stranger.topic, stranger.clip()),
        "bad_signature": (a.topic, a.resign(good, key=Ed25519PrivateKey.generate())),
        "owner_mismatch": (a.topic, a.resign(good, owner_id=b.owner_id, clip_id=new_clip_id())),
        "device_mismatch": (b.topic, b.resign(good, clip_id=new_clip_id())),  # B signs a clip naming A
        "oversize": (a.topic, good + b"\0" * (MAX_ENVELOPE_BYTES + 1 - len(good))),
        "malformed": (a.topic, good[:100]),
        "unknown_version": (a.topic, preamble + good[14:]),
        "bad_topic": ("earmark/v1/clips/../den-pi", good),
    }


@pytest.mark.parametrize("reason", ["unknown_device", "bad_signature", "owner_mismatch", "device_mismatch",
                                    "oversize", "malformed", "unknown_version", "bad_topic"])
def test_each_rejection_is_quarantined_and_changes_no_owners_clips(
        store: Store, pair: tuple[SimDevice, SimDevice], reason: str, caplog: pytest.LogCaptureFixture) -> None:
    a, b = pair
    ingest = Ingestor(store)
    ingest.handle(a.topic, a.clip(seed=7))
    ingest.handle(b.topic, b.clip(seed=8))
    before = snapshot(store)
    topic, payload = rejections(a, b, store)[reason]

    with caplog.at_level(logging.DEBUG):
        outcome = ingest.handle(topic, payload)
    assert (outcome.status, outcome.reason) == ("rejected", reason)
    assert "quarantined" in caplog.text
    assert a.owner_id not in caplog.text and b.owner_id not in caplog.text  # issue 24 case 11: no owner ids logged
    assert snapshot(store) == before
    [q] = store.quarantine.all()
    assert q.reason == reason
    assert store.quarantine.payload(q) == payload  # kept whole, sealed under no owner
    assert not (store.data_dir / q.blob_path).read_bytes().startswith(payload[:14])
    assert store.audit.events()[0]["event"] == "clip_quarantined"


def test_a_revoked_device_is_rejected(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    store.registry.revoke_device(a.device_id)
    before = snapshot(store)
    assert Ingestor(store).handle(a.topic, a.clip()).reason == "revoked_device"
    assert snapshot(store) == before


def test_same_id_with_different_bytes_is_quarantined_and_the_first_kept(
        store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    first = a.clip(seed=1)
    clip_id = decode_envelope(first).header.clip_id
    second = a.resign(a.clip(seed=2), clip_id=clip_id)
    ingest = Ingestor(store)
    assert ingest.handle(a.topic, first).status == "stored"
    before = snapshot(store)
    assert ingest.handle(a.topic, second).reason == "clip_id_conflict"
    assert snapshot(store) == before
    [row] = store.clips.of_owner(a.owner_id)
    assert store.clips.read(a.owner_id, row) == first


@EVERY_BLOB_STORE
def test_a_clip_id_race_with_different_bytes_never_touches_the_stored_clip(
        store: Store, pair: tuple[SimDevice, SimDevice], tmp_path: Path) -> None:
    """Issue 33 case 5: two batches carrying one clip id with different bytes, both judged
    before either commits. The first commit is acknowledged as stored; the second must be
    refused as a conflict without its bytes ever replacing the stored clip's blob."""
    a, _ = pair
    first = a.clip(seed=1)
    clip_id = decode_envelope(first).header.clip_id
    second = a.resign(a.clip(seed=2), clip_id=clip_id)
    ingest, other = Ingestor(store), Ingestor(reopen(store))
    judged_first, judged_second = ingest.judge([(a.topic, first)]), other.judge([(a.topic, second)])
    assert [o.status for o in ingest.commit(judged_first)] == ["stored"]
    [late] = other.commit(judged_second)
    assert (late.status, late.reason) == ("rejected", "clip_id_conflict")
    [row] = store.clips.of_owner(a.owner_id)
    assert store.clips.read(a.owner_id, row) == first
    export_owner(store, a.owner_id, tmp_path / "export")  # would abort: "does not match the stored digest"


def test_a_redelivered_rejection_is_recorded_once(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    bad = a.resign(a.clip(), key=Ed25519PrivateKey.generate())
    ingest = Ingestor(store)
    assert ingest.handle(a.topic, bad).reason == ingest.handle(a.topic, bad).reason == "bad_signature"
    assert len(store.quarantine.all()) == 1


def test_a_handed_over_device_stores_nothing_for_its_old_owner_whatever_time_it_claims(
        store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, b = pair
    ingest = Ingestor(store)
    before = datetime.now(UTC) - timedelta(days=1)  # a Pi with no clock boots with an old time
    store.registry.revoke_device(a.device_id)  # handover: revoke, then enroll anew with a new key
    successor = SimDevice(f"{a.device_id}-2", b.owner_id)
    store.registry.add_device(b.owner_id, successor.public_key, successor.device_id)
    assert ingest.handle(a.topic, a.clip(seed=3, captured=before)).reason == "revoked_device"
    assert ingest.handle(successor.topic, successor.clip(seed=4)).owner_id == b.owner_id
    assert store.clips.count(a.owner_id) == 0 and store.clips.count(b.owner_id) == 1


def test_a_device_moved_by_an_older_earmark_is_refused_not_filed_by_its_clock(
        store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, b = pair
    # What `device rebind` used to do: close the old binding and open one for Bob, same key.
    moved_at = datetime.now(UTC)
    stamp = moved_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    tamper(store, "UPDATE bindings SET unbound_at = ? WHERE device_id = ?", (stamp, a.device_id))
    tamper(store, "INSERT INTO bindings VALUES (?, ?, ?, NULL)", (a.device_id, b.owner_id, stamp))
    ingest = Ingestor(store)
    claims_before = a.clip(seed=3, captured=moved_at - timedelta(hours=1))  # tagged Alice, "before the move"
    assert ingest.handle(a.topic, claims_before).reason == "rebound_device"
    as_bob = SimDevice(a.device_id, b.owner_id, a.key).clip(seed=4)
    assert ingest.handle(a.topic, as_bob).reason == "rebound_device"
    assert store.clips.count(a.owner_id) == 0 and store.clips.count(b.owner_id) == 0


def test_a_clip_captured_in_the_future_is_refused(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    ingest = Ingestor(store)
    ahead = a.clip(seed=5, captured=datetime.now(UTC) + timedelta(hours=1))
    outcome = ingest.handle(a.topic, ahead)
    assert (outcome.status, outcome.reason) == ("rejected", "captured_in_future")
    assert ingest.handle(a.topic, a.clip(seed=6, captured=datetime.now(UTC) + timedelta(minutes=1))).status \
        == "stored"  # a clock a little ahead is a clock
    assert store.clips.count(a.owner_id) == 1


def test_a_blob_moved_under_another_owner_fails_to_decrypt(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, b = pair
    ingest = Ingestor(store)
    ingest.handle(a.topic, a.clip(seed=1))
    ingest.handle(b.topic, b.clip(seed=2))
    [a_row], [b_row] = store.clips.of_owner(a.owner_id), store.clips.of_owner(b.owner_id)
    # Copy Alice's sealed clip over Bob's file: it is under Bob's prefix now, but not Bob's.
    (store.data_dir / b_row.blob_path).write_bytes((store.data_dir / a_row.blob_path).read_bytes())
    with pytest.raises(CryptoError):
        store.clips.read(b.owner_id, b_row)
    # And pointing Alice's row at her own blob from Bob's side does not open it either.
    with pytest.raises(CryptoError):
        store.clips.read(b.owner_id, a_row)


def test_a_crash_between_blob_and_row_gets_the_row_back_and_the_redelivery_is_a_duplicate(
        store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    envelope = a.clip()
    clip_id = decode_envelope(envelope).header.clip_id
    relative = store.clips.blob_path(a.owner_id, clip_id)
    # The sealed blob landed whole, and the crash hit before the row committed:
    store.blobs.write(relative, seal(store.keys.owner_key(a.owner_id), envelope,
                                     clip_aad(a.owner_id, a.device_id, clip_id)))
    (store.data_dir / f"blobs/{a.owner_id}/.tmp-0a1b2c-{clip_id}.bin").write_bytes(b"half a write")
    reopened = reopen(store)
    swept = reopened.sweep()
    assert (swept.reindexed, swept.temp_removed, swept.set_aside, swept.deleted) == (1, 1, 0, 0)
    [row] = reopened.clips.of_owner(a.owner_id)
    assert reopened.clips.read(a.owner_id, row) == envelope
    assert Ingestor(reopened).handle(a.topic, envelope).status == "duplicate"


def test_a_blob_no_row_accounts_for_is_set_aside_never_deleted(
        store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    envelope = a.clip()
    clip_id = decode_envelope(envelope).header.clip_id
    relative = store.clips.blob_path(a.owner_id, clip_id)
    store.blobs.write(relative, b"not a sealed envelope")
    swept = reopen(store).sweep()
    assert swept.set_aside == 1 and swept.reindexed == 0
    assert not (store.data_dir / relative).exists()
    assert (store.data_dir / "set-aside" / relative).read_bytes() == b"not a sealed envelope"
    assert Ingestor(store).handle(a.topic, envelope).status == "stored"


def test_a_database_restored_from_an_older_backup_loses_no_acked_clip(
        store: Store, pair: tuple[SimDevice, SimDevice], tmp_path: Path) -> None:
    from earmark.cloud.owner.export import export_owner

    a, _ = pair
    ingest = Ingestor(store)
    ids = {ingest.handle(a.topic, a.clip(seed=n)).clip_id for n in range(3)}
    # The database goes back to a backup taken before these clips; the blobs stay. (They are
    # older than the sweep's grace period, which spares blobs another PostgreSQL ingester may
    # still be committing.)
    tamper(store, "DELETE FROM clips WHERE owner_id = ?", (a.owner_id,))
    for blob in (store.data_dir / "blobs" / a.owner_id).iterdir():
        os.utime(blob, (blob.stat().st_atime, blob.stat().st_mtime - 2 * SWEEP_GRACE_S))
    restored = reopen(store)
    assert restored.clips.count(a.owner_id) == 0
    assert restored.prepare_ingest().reindexed == 3  # what an ingester does when it starts
    assert {c.clip_id for c in restored.clips.of_owner(a.owner_id)} == ids
    assert export_owner(restored, a.owner_id, tmp_path / "out").clips == 3
    restored.close()


def test_the_audit_log_finds_edited_and_missing_events(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    ingest = Ingestor(store)
    for seed in range(4):
        ingest.handle(a.topic, a.clip(seed=seed))
    assert store.audit.verify() == []
    [(last,)] = tamper(store, "SELECT max(seq) FROM audit")

    tamper(store, "UPDATE audit SET detail = ? WHERE seq = 4", (json.dumps({"envelope_sha256": "0" * 64}),))
    assert [p.seq for p in store.audit.verify()] == [4]
    tamper(store, "DELETE FROM audit WHERE seq = 4")
    assert 4 in [p.seq for p in store.audit.verify()]
    tamper(store, "DELETE FROM audit WHERE seq >= 4")
    problems = store.audit.verify()
    assert problems and "missing from the end" in problems[-1].message and str(last) in problems[-1].message


def test_a_wrong_master_key_is_refused(tmp_path: Path) -> None:
    from earmark.cloud.store.crypto import create_master_key
    from earmark.cloud.store.database import StoreError

    store = make_store(tmp_path / "cloud")
    store.close()
    other = tmp_path / "other.key"
    create_master_key(other)
    with pytest.raises(StoreError, match="wrong master key"):
        Store(tmp_path / "cloud", other)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=st.sampled_from(["earmark/v1/clips/kitchen", "earmark/v1/clips/den-pi", "earmark/v1/clips/",
                              "earmark/v1/clips/nobody", "x"]),
       payload=st.binary(max_size=600) | st.sampled_from([b"EMRK\x01\x00" + b"\0" * 80]))
def test_any_message_is_judged_never_raised(store: Store, pair: tuple[SimDevice, SimDevice],
                                            topic: str, payload: bytes) -> None:
    before = snapshot(store)
    outcome = Ingestor(store).handle(topic, payload)
    assert outcome.status == "rejected"
    assert snapshot(store) == before


def test_two_ingesters_quarantining_the_same_bytes_record_them_once(store: Store) -> None:
    first_id, _ = store.quarantine.put("earmark/v1/clips/x-pi", "malformed", "junk", b"not an envelope")
    other = reopen(store)  # a second ingester, whose duplicate check ran before the first one's commit
    real, calls = other.db.query, []

    def racing(sql: str, params: tuple = (), owner: str | None = None) -> list:  # type: ignore[type-arg]
        calls.append(sql)
        return [] if len(calls) == 1 else real(sql, params, owner)

    other.db.query = racing  # type: ignore[method-assign]
    assert other.quarantine.put("earmark/v1/clips/x-pi", "malformed", "junk", b"not an envelope") \
        == (first_id, False)
    assert [q.quarantine_id for q in store.quarantine.all()] == [first_id]
    assert len(list((store.data_dir / "quarantine").iterdir())) == 1  # its sealed copy was not kept
    assert [e["event"] for e in store.audit.events(5)].count("clip_quarantined") == 1


def test_a_deleted_clip_stays_deleted_when_the_same_envelope_arrives_again(
        store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    from earmark.cloud.owner.erasure import delete_clip

    a, _ = pair
    ingest = Ingestor(store)
    envelope = a.clip(seed=11)
    clip_id = decode_envelope(envelope).header.clip_id
    assert ingest.handle(a.topic, envelope).status == "stored"
    delete_clip(store, a.owner_id, clip_id)
    again = ingest.handle(a.topic, envelope)  # a broker redelivery, or the device resending
    assert (again.status, again.clip_id) == ("duplicate", clip_id)
    assert store.clips.count(a.owner_id) == 0
    assert not (store.data_dir / store.clips.blob_path(a.owner_id, clip_id)).exists()
    other = a.resign(a.clip(seed=12), clip_id=clip_id)  # a different clip claiming the deleted id
    assert ingest.handle(a.topic, other).reason == "clip_id_conflict"
    assert store.clips.count(a.owner_id) == 0


def test_one_device_cannot_fill_the_disk_through_quarantine(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    from earmark.cloud.store.quarantine import QuarantineQuota

    a, b = pair
    ingest = Ingestor(store, quota=QuarantineQuota(items_per_day=5, bytes_per_day=3 * 964_218))
    junk = [np.random.default_rng(n).bytes(900_000) for n in range(40)]  # random payloads: malformed
    outcomes = [ingest.handle(a.topic, payload) for payload in junk]
    assert all(o.status == "rejected" and o.reason == "malformed" for o in outcomes)
    kept = store.quarantine.all()
    assert len(kept) == 3 and sum(q.envelope_bytes for q in kept) <= 3 * 964_218  # the byte quota bit first
    assert sum(not o.kept for o in outcomes) == 37
    reached = [e for e in store.audit.events(200) if e["event"] == "quarantine_quota_reached"]
    assert len(reached) == 1 and reached[0]["device_id"] == a.device_id  # audited once, not 37 times
    # Another device's quarantine, and everyone's clips, are untouched by it:
    assert ingest.handle(b.topic, b"not an envelope").kept
    assert ingest.handle(a.topic, a.clip(seed=1)).status == "stored"


def test_erasure_reaches_the_quarantine_before_and_after(store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    from earmark.cloud.owner.erasure import erase_owner

    a, b = pair
    ingest = Ingestor(store)
    wrong_key = a.resign(a.clip(b"ALICE-SECRET", seed=2), key=Ed25519PrivateKey.generate())
    assert ingest.handle(a.topic, wrong_key).reason == "bad_signature"  # quarantined: her words, sealed
    claims_alice = b.resign(b.clip(seed=3), owner_id=a.owner_id)  # Bob's device claiming Alice
    assert ingest.handle(b.topic, claims_alice).reason == "owner_mismatch"
    bobs_own = b.resign(b.clip(seed=4), key=Ed25519PrivateKey.generate())
    assert ingest.handle(b.topic, bobs_own).reason == "bad_signature"
    assert len(store.quarantine.all()) == 3
    erase_owner(store, a.owner_id)
    left = store.quarantine.all()
    assert [q.device_id for q in left] == [b.device_id] and left[0].claimed_owner_id == b.owner_id
    assert not any(b"ALICE-SECRET" in store.quarantine.payload(q) for q in left)
    after = ingest.handle(a.topic, a.clip(b"ALICE-AFTER", seed=5))  # her revoked device still sends
    assert after.reason == "revoked_device" and not after.kept
    assert len(store.quarantine.all()) == 1


def test_a_capture_time_in_other_scripts_digits_is_malformed_and_stored_nowhere(
        store: Store, pair: tuple[SimDevice, SimDevice]) -> None:
    a, _ = pair
    env = decode_envelope(a.clip(seed=30, v1=True))
    fields = json.loads(env.header_bytes)
    fields["captured_at"] = fields["captured_at"][:18] + "\u0667" + fields["captured_at"][19:]  # ARABIC-INDIC SEVEN
    header = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()  # ASCII: the digit is a JSON escape
    body = struct.pack(">4sBBII", b"EMRK", 1, 0, len(header), len(env.audio)) + header + env.audio
    outcome = Ingestor(store).handle(a.topic, body + a.key.sign(body))
    assert (outcome.status, outcome.reason) == ("rejected", "malformed") and "captured_at" in outcome.detail
    assert store.clips.count(a.owner_id) == 0


def test_a_device_cannot_register_a_name_reserved_for_the_ingesters(store: Store) -> None:
    from earmark.cloud.store.registry import RegistryError

    owner = store.registry.add_owner("Mallory").owner_id
    with pytest.raises(RegistryError, match="reserved"):
        store.registry.add_device(owner, SimDevice("x", owner).public_key, "earmark-ingester")
    assert store.registry.device("earmark-ingester") is None
