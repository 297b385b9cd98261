"""Scaling the ingesters down without stranding clips (issue 13 case 12). Ingesters keep
persistent sessions in one shared-subscription group, so the broker keeps handing a stopped
member its share; `ingest --retire` drains that member's queue and ends its session."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.pgdb import temporary_database
from tests.support.securecloud import Client, SecureCloud
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_a_retired_ingester_drains_its_share_and_the_group_then_takes_every_clip(tmp_path: Path) -> None:
    with temporary_database() as url:  # two ingesters at once: the scale-out backend
        run(tmp_path, url)


def status(cloud: SecureCloud) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "earmark.cloud.cli", "status", "--json", "--data-dir",
                           str(cloud.data_dir), "--database-url", cloud.database_url],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run(tmp_path: Path, url: str) -> None:
    cloud = SecureCloud(tmp_path, database_url=url)
    cloud.start_broker()
    try:
        owner = cloud.store.registry.add_owner("Alice").owner_id
        device, password = cloud.add_device(owner, "hall-pi")
        cloud.start_ingester(name="main")
        cloud.start_ingester(name="b")
        cloud.kill_ingester(signal.SIGTERM, name="b")  # a planned stop: its session (and share) stays

        sender = Client(cloud, "hall-pi", password)
        assert sender.wait()

        def send(first: int, count: int) -> None:
            for seed in range(first, first + count):
                sender.client.publish(device.topic, device.clip(seed=seed), qos=1).wait_for_publish(5)

        send(0, 20)
        # Every clip is either stored by main or held by the broker for b's session.
        wait_until(lambda: len(cloud.clips(owner)) + (status(cloud)["broker"]["messages_held"] or 0) >= 20, 60,
                   "each clip stored or held for b", interval=0.5)
        stranded = 20 - len(cloud.clips(owner))
        assert stranded > 0  # what main did: b's share waits for an ingester that is not coming back
        before = status(cloud)
        assert {i["client_id"]: i["state"] for i in before["ingesters"]} == {
            "earmark-ingester": "running", "earmark-ingester-b": "stopped"}
        assert before["broker"]["reachable"] and before["broker"]["messages_held"] >= stranded

        log = cloud.start_ingester(False, "b", "--retire")
        process = cloud.ingesters.pop("b")
        assert process.wait(60) == 0, log.read_text()
        assert "retired: this ingester's session is gone" in log.read_text()
        wait_until(lambda: len(cloud.clips(owner)) == 20, 20, "b's share to be drained")

        send(20, 20)
        wait_until(lambda: len(cloud.clips(owner)) == 40, 20, "every new clip to reach the remaining ingester")
        after = status(cloud)
        assert {i["client_id"]: i["state"] for i in after["ingesters"]} == {
            "earmark-ingester": "running", "earmark-ingester-b": "retired"}
        assert after["broker"]["logins_in_step"] and after["store"]["clips"] == 40
        sender.close()
    finally:
        cloud.close()
