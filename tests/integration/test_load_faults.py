"""What a load and fault run found degrading (issue 39), each held to its fix: the audit
head file under concurrent writers, the ingester's health on a full disk, exports that could
crowd out the portal, and device resends that swelled the broker."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.portal.guard import COOKIE
from earmark.cloud.store.store import Store
from tests.integration.test_operator_metrics import get, ingester_under_systemd
from tests.integration.test_portal_guard import _NoRedirect as NoRedirect
from tests.support.cloudkit import enrolled_device
from tests.support.portalserver import served, session_for
from tests.support.securecloud import Client, SecureCloud
from tests.support.waiting import wait_until


def test_the_audit_head_file_is_written_safely_by_many_threads_at_once(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """Case 3: the portal's handler threads shared one temp name per process, and one
    thread's rename took another's file away ("could not update the audit head file")."""
    caplog.set_level(logging.WARNING)
    start = threading.Barrier(8)

    def record() -> None:
        start.wait()
        for i in range(25):
            store.audit.record("portal_page_served", detail={"i": i})

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "could not update the audit head file" not in caplog.text
    seq, _ = store.audit.head_file.read_text().split()
    assert int(seq) == store.audit.head_seq()  # the newest event, never moved back
    assert not list(store.audit.head_file.parent.glob("*.tmp"))
    assert store.audit.verify() == []


def test_a_full_disk_makes_the_ingester_not_ready_never_dead_and_it_resumes_once_there_is_room(
        tmp_path: Path) -> None:
    """Case 2: on a full disk /readyz stayed 200 while nothing could be stored, and /livez
    (and systemd's watchdog, pinged from the same loop) went quiet while the loop sat in its
    storage retries: a healthy ingester would have been restarted in a loop."""
    cloud = SecureCloud(tmp_path)
    blobs = cloud.data_dir / "blobs"
    blobs.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(blobs)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the blobs: {mounted.stderr.decode().strip()}")
    cloud.start_broker()
    proc, notify, port, log = ingester_under_systemd(cloud, tmp_path, watchdog_s=2.0, timeout=0.1)
    pings: list[float] = []

    def listen() -> None:
        with contextlib.suppress(OSError, TimeoutError):
            if b"WATCHDOG=1" in notify.recv(4096):
                pings.append(time.monotonic())

    try:
        def ready() -> bool:
            try:
                return get(port, "/readyz")[0] == 200
            except OSError:
                return False

        wait_until(ready, 30, "a ready ingester")
        owner = cloud.store.registry.add_owner("Fay").owner_id
        device, password = cloud.add_device(owner, "fay-pi")
        sender = Client(cloud, "fay-pi", password)
        assert sender.wait()
        for seed in range(12):  # 12 clips of 5 s: about 2 MB, twice what the disk holds
            sender.client.publish(device.topic, device.clip(seed=seed, seconds=5.0), qos=1).wait_for_publish(5)
        wait_until(lambda: "store cannot take" in log.read_text(), 30, "the disk to fill")
        full = time.monotonic()
        wait_until(lambda: get(port, "/readyz")[0] == 503, 5, "readiness to drop within 5 s")
        assert "No space left" in json.loads(get(port, "/readyz")[1])["store"]
        while time.monotonic() - full < 8:  # alive throughout: the probe and the watchdog
            assert get(port, "/livez")[0] == 200
            listen()
        assert pings and all(b - a < 2.0 for a, b in zip([full, *pings], [*pings, time.monotonic()], strict=True)), \
            f"the watchdog went quiet: {[round(p - full, 1) for p in pings]}"
        stored_before = len(cloud.clips(owner))
        assert stored_before < 12
        subprocess.run(["mount", "-o", "remount,size=20m", str(blobs)], check=True)
        room = time.monotonic()
        wait_until(lambda: len(cloud.clips(owner)) == 12, 15, "every clip stored once there is room")
        assert time.monotonic() - room < 6, "storing did not resume within 5 s of room"
        assert get(port, "/readyz")[0] == 200
        assert log.read_text().count("store cannot take") <= 3, "one line per failure, not one per retry"
        sender.close()
    finally:
        proc.kill()
        proc.wait(30)
        notify.close()
        cloud.close()
        subprocess.run(["umount", "-l", str(blobs)], check=False)


def test_an_owner_gets_one_export_at_a_time_and_the_finished_one_again_until_their_data_changes(
        store: Store) -> None:
    """Case 4: each POST to /export after one had finished threw the finished archive away
    and built a new whole export (30 clients built 50 in a minute, and the pages slowed)."""
    alice = enrolled_device(store, "Alice")
    Ingestor(store).handle_batch([(alice.topic, alice.clip(seed=i)) for i in range(3)])
    token, csrf = session_for(store, alice.owner_id)

    def built() -> int:
        return sum(1 for e in store.audit.of_owner(alice.owner_id) if e["event"] == "export_completed")

    with served(store) as (url, state):
        def post() -> int:
            request = urllib.request.Request(url + "/export", data=urlencode([("csrf", csrf)]).encode(),
                                             method="POST", headers={"Cookie": f"{COOKIE}={token}"})
            try:
                with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:  # the redirect, not followed
                return exc.code

        assert post() == 303
        wait_until(lambda: (job := state.exports.get(alice.owner_id)) is not None and job.path is not None, 30,
                   "the export to be built")
        first = state.exports.get(alice.owner_id)
        assert first is not None and first.path is not None
        first.token_sha256 = "shown"  # its link was shown on the page
        made = first.path.stat().st_ino
        for _ in range(5):  # asked again and again: the same archive, a new link for it
            assert post() == 303
        again = state.exports.get(alice.owner_id)
        assert again is first and not again.token_sha256 and first.path.stat().st_ino == made
        time.sleep(0.5)
        assert built() == 1
        store.clips.delete(alice.owner_id, store.clips.of_owner(alice.owner_id)[:1], "clip_deleted")  # data changed
        assert post() == 303
        wait_until(lambda: built() == 2, 30, "a new export for the changed data")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_ingesters_committing_batches_of_overlapping_owners_at_once_do_not_deadlock(
        store: Store, database_url: str) -> None:
    """Found by the multi-host run on S3: two ingesters' batches, one of owners A and B, the
    other of B and C, locked the audit head between their owners' rows and deadlocked on
    PostgreSQL (retried, so nothing was lost, but each cost a batch a retry)."""
    from earmark.cloud.store.database import StoreFailure
    from tests.support.cloudkit import reopen

    # By owner id, which orders each batch's owners: A's batch is owners 0 and 1, B's 1 and 2,
    # so the old order (owner 0's rows, the audit head, owner 1's) met B's (owner 1's, the head).
    devices = sorted((enrolled_device(store, name) for name in ("Ann", "Bea", "Cyd")), key=lambda d: d.owner_id)
    other = reopen(store)
    failures: list[str] = []
    start = threading.Barrier(2)

    def ingest(target: Store, pair: tuple[int, int], seed: int) -> None:
        ingest = Ingestor(target)
        start.wait()
        for n in range(40):
            batch = [(d.topic, d.clip(seed=seed + 1000 * n + i)) for i, d in enumerate(devices[pair[0]:pair[1] + 1])]
            try:
                ingest.handle_batch(batch)
            except StoreFailure as exc:
                failures.append(str(exc))

    threads = [threading.Thread(target=ingest, args=(store, (0, 1), 0)),
               threading.Thread(target=ingest, args=(other, (1, 2), 500_000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert not failures, failures[:3]
    assert sum(store.clips.count(d.owner_id) for d in devices) == 160
