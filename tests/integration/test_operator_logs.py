"""What an operator sees of a running ingester (issue 13 case 8): timestamped lines, or
journald priorities under systemd (so `journalctl -p warning` finds the warnings), JSON on
request, one summary line per interval instead of one per clip, and no owner ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.securecloud import Client, SecureCloud, wait_until_logged
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def run_ingester(cloud: SecureCloud, log: Path, *flags: str, journal: bool = False) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if journal:  # what systemd sets when stderr is the journal's stream
            st = os.fstat(out.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        return subprocess.Popen([sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir",
                                 str(cloud.data_dir), "--metrics-port", "0", *flags], cwd=ROOT, stderr=out,
                                stdout=subprocess.DEVNULL, env=env)


def send_clips(cloud: SecureCloud, count: int) -> str:
    owner = cloud.store.registry.add_owner("Alice").owner_id
    device, password = cloud.add_device(owner, "log-pi")
    client = Client(cloud, "log-pi", password)
    assert client.wait()
    for seed in range(count):
        client.client.publish(device.topic, device.clip(seed=seed), qos=1).wait_for_publish(5)
    wait_until(lambda: len(cloud.clips(owner)) == count, 30, "the clips to be stored")
    client.close()
    return owner


@pytest.mark.parametrize("shape", ["journal", "text", "json"])
def test_ingester_logs_are_shaped_for_operators_and_name_no_owner(tmp_path: Path, shape: str) -> None:
    cloud = SecureCloud(tmp_path)
    cloud.start_broker()
    log = tmp_path / "ingest.log"
    proc = run_ingester(cloud, log, *(["--log-format", "json"] if shape == "json" else []),
                        journal=shape == "journal")
    try:
        wait_until_logged(proc, log, "subscribed to")
        owner = send_clips(cloud, 5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        cloud.close()
    lines = log.read_text().splitlines()
    text = log.read_text()
    assert owner not in text  # logs outlive erasures: they never name an owner
    assert "stored clip" not in text  # no line per clip
    if shape == "journal":
        assert all(line[:3] in ("<6>", "<4>", "<3>") for line in lines), lines
        assert any(line.startswith("<6>earmark.cloud.ingest.source: in the last") and "5 stored" in line
                   for line in lines), lines
    elif shape == "text":
        assert all(line[:4].isdigit() and line[10] == "T" and (" INFO " in line or " WARNING " in line)
                   for line in lines), lines
        assert any("in the last" in line and "5 stored" in line for line in lines)
    else:
        entries = [json.loads(line) for line in lines]
        assert {"ts", "level", "logger", "msg"} <= set(entries[0])
        assert any(e["logger"] == "earmark.cloud.ingest.source" and "5 stored" in e["msg"] for e in entries)
