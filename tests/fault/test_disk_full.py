"""A full disk, for real: a tiny tmpfs under the device's spool and under the cloud store.
Nothing is lost: the device refuses the new clip and keeps the old ones; the ingester
raises StoreError (so the message is not acked and comes again) and, once there is room,
stores the same message."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.store.database import StoreFailure
from earmark.device.sync.spool import Spool, SpoolFull
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import SimDevice, make_store


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def grow(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def test_the_spool_refuses_a_clip_on_a_full_disk_and_keeps_the_rest(tiny_disk: Path) -> None:
    spool = Spool(tiny_disk / "spool", 10**9)  # the size bound is not what stops it: the disk is
    device = SimDevice("full-pi", "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b")
    kept = []
    with pytest.raises(SpoolFull, match="full"):
        for i in range(100):
            envelope = device.clip(seed=i, seconds=5.0)
            kept.append(spool.put(decode_envelope(envelope).header.clip_id, envelope))
    assert 2 <= len(kept) < 100
    assert not list((tiny_disk / "spool").glob(".tmp-*")), "a torn temp file was left"
    assert [c.path for c in spool.clips()] == [k.path for k in kept]
    for clip in spool.clips():
        decode_envelope(clip.read())  # every kept clip is whole


def test_the_ingester_stops_on_a_full_disk_and_stores_the_message_once_there_is_room(
        tiny_disk: Path, database_url: str) -> None:
    # On PostgreSQL the rows live on the server and the blobs fill the tiny disk.
    store = make_store(tiny_disk / "cloud", database_url)
    owner = store.registry.add_owner("Fay").owner_id
    device = SimDevice("fay-pi", owner)
    store.registry.add_device(owner, device.public_key, device.device_id)
    ingestor = Ingestor(store)
    stored = []
    for i in range(100):
        envelope = device.clip(seed=i, seconds=5.0)
        try:
            ingestor.handle(device.topic, envelope)
        except StoreFailure as exc:
            assert "\n" not in str(exc)  # one line for the log
            break
        stored.append(decode_envelope(envelope).header.clip_id)
    else:
        raise AssertionError("the disk never filled")
    assert store.quarantine.all() == [], "a full disk is not the sender's fault: nothing is quarantined"
    rows = store.clips.of_owner(owner)
    assert {r.clip_id for r in rows} == set(stored)
    for row in rows:  # no row without its blob
        assert store.clips.read(owner, row)
    grow(tiny_disk, "20m")
    assert ingestor.handle(device.topic, envelope).status == "stored"  # the unacked message, delivered again
    assert store.clips.count(owner) == len(stored) + 1
    assert store.audit.verify() == []
