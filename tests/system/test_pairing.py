"""Pairing and the device's side of sync, as a user runs them: bundle, provision, run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from earmark.device.settings import load_settings
from tests.conftest import HOUSEHOLD_RECIPIENT
from tests.support.broker import free_port
from tests.support.securecloud import SecureCloud
from tests.support.speech import Scene

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *map(str, argv)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)



def pair(cloud: SecureCloud, data_dir: Path, device_id: str = "hall-pi") -> tuple[str, Path]:
    owner = cloud.store.registry.add_owner("Dana").owner_id
    cloud.store.registry.set_recipient(owner, HOUSEHOLD_RECIPIENT)  # her household's key, made on her side
    key = run("earmark.device.cli", "enroll", "--data-dir", data_dir).stdout.split()[-1]
    bundle = data_dir.parent / f"{device_id}.bundle.json"
    added = run("earmark.cloud.cli", "device", "add", "--data-dir", cloud.data_dir, "--owner", owner,
                "--public-key", key,
                "--device-id", device_id, "--bundle-out", bundle)
    assert added.returncode == 0, added.stderr
    return owner, bundle


def test_a_bundle_pairs_the_device_with_its_secrets_kept_private(cloud: SecureCloud, data_dir: Path) -> None:
    owner, bundle = pair(cloud, data_dir)
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"
    content = json.loads(bundle.read_text())
    assert content["device_id"] == "hall-pi" and content["owner_id"] == owner
    assert content["broker_url"] == cloud.setup.url and "BEGIN CERTIFICATE" in content["ca_pem"]
    provisioned = run("earmark.device.cli", "provision", bundle, "--data-dir", data_dir)
    assert provisioned.returncode == 0, provisioned.stderr
    assert content["password"] not in provisioned.stdout + provisioned.stderr
    for secret in ("pairing.toml", "broker.password", "device.key"):
        assert oct((data_dir / secret).stat().st_mode & 0o777) == "0o600", secret
    s = load_settings(None, data_dir)
    assert (s.device_id, s.owner_id, s.broker.url, s.broker.username) == ("hall-pi", owner, cloud.setup.url, "hall-pi")
    assert s.recipients == (HOUSEHOLD_RECIPIENT,) == tuple(content["recipients"])  # it seals to the household's key
    assert Path(s.broker.ca).read_text() == content["ca_pem"]


def test_a_bundle_made_for_another_device_key_is_refused(cloud: SecureCloud, data_dir: Path, tmp_path: Path) -> None:
    _, bundle = pair(cloud, data_dir)
    other = tmp_path / "other-device"
    other.mkdir()
    result = run("earmark.device.cli", "provision", bundle, "--data-dir", other)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "made for key" in result.stderr
    assert not (other / "pairing.toml").exists()


def test_a_paired_device_delivers_its_clip_and_empties_its_spool(
        cloud: SecureCloud, data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    owner, bundle = pair(cloud, data_dir)
    run("earmark.device.cli", "provision", bundle, "--data-dir", data_dir)
    wav = Scene().pause(1).speak(speech("alexa")).speak(speech("turn off the oven")).pause(2).write(tmp_path / "a.wav")
    result = run("earmark.device.cli", "run", "--data-dir", data_dir, "--audio-file", wav, "--mock-gpio")
    assert result.returncode == 0, result.stderr
    assert "0 clip(s) waiting" in result.stdout
    assert len(cloud.clips(owner)) == 1


def test_an_unreachable_broker_leaves_the_clip_spooled_and_exits_non_zero(
        data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    scene = Scene().pause(1).speak(speech("alexa")).speak(speech("what is the weather")).pause(2)
    wav = scene.write(tmp_path / "a.wav")
    result = run("earmark.device.cli", "run", "--data-dir", data_dir, "--audio-file", wav, "--mock-gpio",
                 "--device-id", "lonely-pi", "--owner-id", "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b",
                 "--recipient", HOUSEHOLD_RECIPIENT,
                 "--broker", f"mqtt://127.0.0.1:{free_port()}", "--drain-timeout", "2")
    assert result.returncode == 75  # may pass by itself: the cloud comes back
    assert "1 clip(s) still waiting" in result.stderr
    assert len(list((data_dir / "spool").glob("*.clip"))) == 1


def test_a_rejected_clip_is_moved_aside_with_its_reason(
        cloud: SecureCloud, data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    owner, bundle = pair(cloud, data_dir)
    run("earmark.device.cli", "provision", bundle, "--data-dir", data_dir)
    os.replace(data_dir / "device.key", tmp_path / "old.key")  # the key changes after pairing
    wav = Scene().pause(1).speak(speech("alexa")).speak(speech("lock the door")).pause(2).write(tmp_path / "a.wav")
    result = run("earmark.device.cli", "run", "--data-dir", data_dir, "--audio-file", wav, "--mock-gpio")
    assert result.returncode == 1 and "rejected by the cloud" in result.stderr
    [reason] = (data_dir / "spool" / "rejected").glob("*.reason")
    assert reason.read_text().strip() == "bad_signature"
    assert len(list((data_dir / "spool" / "rejected").glob("*.clip"))) == 1
    assert cloud.clips(owner) == [] and cloud.quarantine_reasons() == ["bad_signature"]


def test_a_device_added_without_a_bundle_gets_one_later_and_delivers(
        cloud: SecureCloud, data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    owner = cloud.store.registry.add_owner("Eli").owner_id
    cloud.store.registry.set_recipient(owner, HOUSEHOLD_RECIPIENT)
    key = run("earmark.device.cli", "enroll", "--data-dir", data_dir).stdout.split()[-1]
    added = run("earmark.cloud.cli", "device", "add", "--data-dir", cloud.data_dir, "--owner", owner,
                "--public-key", key, "--device-id", "attic-pi")
    assert added.returncode == 0 and "earmark-cloud device bundle attic-pi" in added.stderr  # says what is next
    bundle = tmp_path / "attic-pi.bundle.json"
    issued = run("earmark.cloud.cli", "device", "bundle", "attic-pi", "--out", bundle, "--data-dir", cloud.data_dir)
    assert issued.returncode == 0, issued.stderr
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"
    assert run("earmark.device.cli", "provision", bundle, "--data-dir", data_dir).returncode == 0
    wav = Scene().pause(1).speak(speech("alexa")).speak(speech("turn off the oven")).pause(2).write(tmp_path / "a.wav")
    result = run("earmark.device.cli", "run", "--data-dir", data_dir, "--audio-file", wav, "--mock-gpio")
    assert result.returncode == 0, result.stderr
    assert len(cloud.clips(owner)) == 1


def test_a_household_without_a_key_gets_no_bundle_and_is_told_how_to_make_one(cloud: SecureCloud,
                                                                              data_dir: Path) -> None:
    """Issue 34: a device bundle without recipients would make a device that records nothing."""
    owner = cloud.store.registry.add_owner("Finn").owner_id
    key = run("earmark.device.cli", "enroll", "--data-dir", data_dir).stdout.split()[-1]
    bundle = data_dir.parent / "shed-pi.bundle.json"
    added = run("earmark.cloud.cli", "device", "add", "--data-dir", cloud.data_dir, "--owner", owner,
                "--public-key", key, "--device-id", "shed-pi", "--bundle-out", bundle)
    assert added.returncode == 2 and added.stderr.count("\n") == 1 and "has no key yet" in added.stderr
    assert not bundle.exists()
