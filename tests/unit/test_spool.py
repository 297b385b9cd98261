"""The spool: whole clips or none, oldest first, bounded, and never torn by a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from earmark.device.sync.spool import Spool, SpoolFull
from earmark.runtime.durable import TEMP_PREFIX
from earmark.wire.envelope import decode_envelope


def test_clips_come_back_oldest_first_and_leave_on_remove(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
    for clip_id in ids:
        spool.put(clip_id, clip_id.encode())
    assert [c.clip_id for c in spool.clips()] == ids
    spool.remove(spool.clips()[0])
    assert [c.clip_id for c in spool.clips()] == ids[1:]
    assert oct(os.stat(spool.clips()[0].path).st_mode & 0o777) == "0o600"


def test_a_clip_still_being_written_is_not_listed(tmp_path: Path) -> None:
    # Found by the RabbitMQ test: the publisher read `put`'s half-written temp file (pathlib's
    # glob matches dot files) and published 0 or 8192 bytes of a clip, which was quarantined.
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    whole = "00000000-0000-4000-8000-000000000001"
    spool.put(whole, b"whole clip")
    (spool.directory / f"{TEMP_PREFIX}00000000-0000-4000-8000-000000000002.clip").write_bytes(b"half a cl")
    assert [c.clip_id for c in spool.clips()] == [whole]


def test_a_reader_opening_the_spool_leaves_the_clip_being_written_alone(tmp_path: Path) -> None:
    # Found by CI: a test polling the spool (as `earmark-device status` does while the device
    # runs) swept the running device's temp file between its write and its rename, so the
    # rename failed, the clip was lost and the device's loop thread died.
    writer = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    in_flight = writer.directory / f"{TEMP_PREFIX}5fb5add32245-00000000-0000-4000-8000-000000000002.clip"
    in_flight.write_bytes(b"half a cl")
    Spool(tmp_path / "spool", 10 * 1024 * 1024).clips()
    assert in_flight.exists()
    assert writer.sweep() == 1 and not in_flight.exists()  # the writer's own restart sweeps it


def test_a_full_spool_refuses_the_new_clip_and_keeps_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1024 * 1024)
    kept = spool.put("00000000-0000-4000-8000-000000000001", b"a" * 600_000)
    with pytest.raises(SpoolFull):
        spool.put("00000000-0000-4000-8000-000000000002", b"b" * 600_000)
    assert [c.path for c in spool.clips()] == [kept.path]
    assert not list((tmp_path / "spool").glob(".tmp-*"))


WRITER = textwrap.dedent("""
    import sys, uuid
    from pathlib import Path
    import numpy as np
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from datetime import datetime, UTC
    from earmark.device.sync.identity import Sealer
    from earmark.device.listening.recorder import Recording
    from earmark.device.sync.spool import Spool
    spool = Spool(Path(sys.argv[1]), 10**10)
    sealer = Sealer("crash-test", "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", Ed25519PrivateKey.generate())
    audio = (np.random.default_rng(0).integers(-3000, 3000, 16000 * 14)).astype(np.int16)
    print("ready", flush=True)
    while True:
        clip_id, envelope = sealer.seal(Recording(audio, 0, "button", None, None, "max_length"),
                                        datetime.now(UTC))
        spool.put(clip_id, envelope)
""")


def test_a_process_killed_while_writing_leaves_no_torn_clip(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    root = Path(__file__).resolve().parents[2]
    torn = 0
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], cwd=root,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.037 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        torn += Spool(directory, 10**10).sweep()  # the writer's restart sweeps torn temp files
    print(f"{torn} of 6 kills landed mid-write")
    spool = Spool(directory, 10**10)
    assert not list(directory.glob(".tmp-*"))
    clips = spool.clips()
    assert clips, "the writer never finished a clip"
    for clip in clips:
        env = decode_envelope(clip.read())  # every file is a whole, valid envelope
        assert env.header.clip_id == clip.clip_id
