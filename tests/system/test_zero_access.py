"""Zero access, end to end (issue 34): a household key made on the owner's side, a device
paired with it, a recording through the real broker and ingester, then everything the
operator holds (the store, its blobs and quarantine, a backup, the logs, the broker's files,
an export) and the device's data dir searched for any age identity and for any stretch of
the recorded audio, raw or base64. None is found; the owner, and only the owner, opens the
clip. Writing the clip's WAV anywhere among those files makes the search find it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyrage
from pyrage import x25519

from tests.support.securecloud import SecureCloud
from tests.support.speech import Scene, audio_windows

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", *map(str, argv)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done



def found_in(folders: list[Path], needles: list[bytes]) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*")
                  if p.is_file() and any(n in p.read_bytes() for n in needles))


def test_nothing_the_operator_or_the_device_keeps_holds_the_households_key_or_audio(
        cloud: SecureCloud, data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    device_dir = data_dir  # the device's data dir, its wake-word models in place
    owner_dir, exports, backups = (tmp_path / n for n in ("owner", "exports", "backups"))
    owner_dir.mkdir(mode=0o700)
    identity = x25519.Identity.generate()  # made on the owner's side, as age-keygen would
    (owner_dir / "household-key.txt").write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    owner = cloud.store.registry.add_owner("Dana").owner_id
    data = ["--data-dir", cloud.data_dir]
    run("earmark.cloud.cli", "owner", "set-recipient", "--owner", owner, str(identity.to_public()), *data)
    key = run("earmark.device.cli", "enroll", "--data-dir", device_dir).stdout.split()[-1]
    bundle = tmp_path / "hall-pi.bundle.json"
    run("earmark.cloud.cli", "device", "add", "--owner", owner, "--public-key", key, "--device-id", "hall-pi",
        "--bundle-out", bundle, *data)
    run("earmark.device.cli", "provision", bundle, "--data-dir", device_dir)
    bundle.unlink()
    wav = Scene().pause(1).speak(speech("alexa")).speak(speech("remind me to call the doctor")).pause(2) \
        .write(tmp_path / "spoken.wav")
    run("earmark.device.cli", "run", "--data-dir", device_dir, "--audio-file", wav, "--mock-gpio")
    assert len(cloud.clips(owner)) == 1
    run("earmark.cloud.cli", "export", "--owner", owner, "--out", exports, *data)
    run("earmark.cloud.cli", "backup", "--out", backups / "today", *data)
    wav.unlink()  # the test's own input, not anybody's file

    # The owner opens the export, and in it the clip, with the household key alone.
    [archive] = exports.glob("*.zip.age")
    opened = owner_dir / "export.zip"
    pyrage.decrypt_file(str(archive), str(opened), [identity])
    with zipfile.ZipFile(opened) as z:
        [sealed] = [z.read(n) for n in z.namelist() if n.endswith(".wav.age")]
    clip = pyrage.decrypt(sealed, [identity])
    assert clip.startswith(b"RIFF")
    needles = [b"AGE-SECRET-KEY-1", *audio_windows(np.frombuffer(clip[44:], dtype="<i2"))]
    assert len(needles) > 20
    assert found_in([owner_dir], needles)  # the search sees the audio where it is: with the owner

    operator_and_device = [cloud.folder, exports, backups, device_dir]
    assert found_in(operator_and_device, needles) == []
    (cloud.data_dir / "blobs" / "clip.wav").write_bytes(clip)  # a plain WAV anywhere: the search must fail
    assert found_in(operator_and_device, needles) == [str(cloud.data_dir / "blobs" / "clip.wav")]
