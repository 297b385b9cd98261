"""A small slice of the load and fault harness (deploy/soak/run.py, issue 39): 3 devices of 4
owners publish through the generated Mosquitto into the ingester while it is paused and the
disk under its blobs fills, and the portal serves two owners while an export runs; every
clip is stored exactly once, the broker gives back what it queued, readiness and liveness
tell the truth on the full disk, and the portal stays within 2x of its idle p95."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_soak_with_an_outage_a_full_disk_and_an_export_holds_every_check() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "deploy" / "soak" / "run.py"), "--devices", "3", "--clips", "60",
                          "--rate", "5", "--outage", "3", "--disk-full", "3", "--portal-seconds", "3",
                          "--clients", "4"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "180 clips sent, 180 stored exactly once, 0 lost, 0 doubled, 0 misfiled" in out
    assert "/livez 200 throughout: True, ingester restarted: False" in out
    assert out.rstrip().endswith("every check held")
