"""Scale-out on PostgreSQL: three ingester processes share the clip subscription on a real
Mosquitto; one is SIGKILLed midway and comes back (as systemd would restart it). Every one
of 1,000 clips is stored exactly once, under its owner, and all three did some of the work."""

from __future__ import annotations

import re
import time
from pathlib import Path

from earmark.wire.envelope import decode_envelope
from tests.support.pgdb import temporary_database
from tests.support.securecloud import Client, SecureCloud
from tests.support.waiting import wait_until

CLIPS = 1000
OWNERS, DEVICES = 3, 6


def stored_in(log: Path) -> int:
    """Clips this ingester stored (its per-clip lines are DEBUG: the ingesters run with -v)."""
    return len(re.findall(r"stored clip ", log.read_text()))


def test_three_ingesters_one_killed_midway_store_1000_clips_exactly_once(tmp_path: Path) -> None:
    with temporary_database() as url:
        cloud = SecureCloud(tmp_path, database_url=url)
        clients: list[Client] = []
        try:
            cloud.start_broker()
            logs = {name: [cloud.start_ingester(True, name, "-v")] for name in ("a", "b", "c")}
            owners = [cloud.store.registry.add_owner(f"Owner {i}").owner_id for i in range(OWNERS)]
            devices = [cloud.add_device(owners[i % OWNERS], f"pi-{i}") for i in range(DEVICES)]
            for device, password in devices:
                clients.append(Client(cloud, device.device_id, password))
                assert clients[-1].wait()
            expected: dict[str, set[str]] = {o: set() for o in owners}
            for n in range(CLIPS):
                device, _ = devices[n % DEVICES]
                envelope = device.clip(seed=n, seconds=0.25)
                expected[device.owner_id].add(decode_envelope(envelope).header.clip_id)
                clients[n % DEVICES].client.publish(device.topic, envelope, qos=1)
                if n == CLIPS // 2:
                    cloud.kill_ingester(name="b")  # SIGKILL: whatever it held unacked is not lost
                if n == CLIPS * 3 // 4:
                    logs["b"].append(cloud.start_ingester(True, "b", "-v"))  # systemd's Restart=always
                time.sleep(0.002)
            wait_until(lambda: cloud.store.counts()["clips"] >= CLIPS, 120, f"{CLIPS} clips stored", interval=0.25)
            for owner in owners:
                stored = cloud.clips(owner)
                assert len(stored) == len(set(stored)), "a clip was stored twice"
                assert set(stored) == expected[owner], f"owner {owner}: {len(stored)} of {len(expected[owner])}"
            assert cloud.store.counts()["clips"] == CLIPS
            assert cloud.quarantine_reasons() == []
            assert cloud.store.audit.verify() == []  # one chain, though three processes appended to it
            work = {name: [stored_in(log) for log in runs] for name, runs in logs.items()}
            assert all(n > 0 for runs in work.values() for n in runs), work
            print(f"clips stored per ingester run: {work}")
        finally:
            for client in clients:
                client.close()
            cloud.close()
