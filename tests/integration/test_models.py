"""`earmark-device models fetch`: from the 0.4.0 wheel or a folder, checked against the sums
kept in the repo; a missing model at run time names the command that fixes it."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from earmark.device.listening.models import ModelError, expected_checksums, fetch_models, locate_models


def test_fetch_from_the_wheel_installs_every_model_verified(tmp_path: Path, wheel: Path) -> None:
    models = tmp_path / "models"
    names = fetch_models(models, wheel)
    sums = expected_checksums()
    assert sorted(names) == sorted(sums) and len(sums) == 7
    for name, digest in sums.items():
        assert hashlib.sha256((models / name).read_bytes()).hexdigest() == digest
    located = locate_models(models, ["alexa", "hey_jarvis", "hey_mycroft", "hey_marvin"])
    assert set(located.wake_words) == {"alexa", "hey_jarvis", "hey_mycroft", "hey_marvin"}


def test_fetch_from_a_folder_copied_onto_an_offline_pi(tmp_path: Path, wheel: Path) -> None:
    folder = tmp_path / "usb-stick"
    with zipfile.ZipFile(wheel) as wz:
        wz.extractall(folder)  # openwakeword/resources/models/... inside
    assert len(fetch_models(tmp_path / "models", folder)) == 7


def test_a_corrupt_model_is_refused_and_not_installed(tmp_path: Path, shared_models: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(shared_models, folder)
    (folder / "alexa_v0.1.onnx").write_bytes(b"\0" * 1000)
    with pytest.raises(ModelError, match=r"alexa_v0\.1\.onnx .* has SHA-256"):
        fetch_models(tmp_path / "models", folder)
    assert not (tmp_path / "models" / "alexa_v0.1.onnx").exists()


def test_a_damaged_installed_model_is_replaced(tmp_path: Path, wheel: Path) -> None:
    models = tmp_path / "models"
    fetch_models(models, wheel)
    (models / "silero_vad.onnx").write_bytes(b"garbage")
    fetch_models(models, wheel)
    assert hashlib.sha256((models / "silero_vad.onnx").read_bytes()).hexdigest() == \
        expected_checksums()["silero_vad.onnx"]


def test_a_missing_model_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        locate_models(tmp_path / "models", ["alexa"])
    assert "earmark-device models fetch" in str(caught.value)
    with pytest.raises(ModelError, match="does not exist"):
        locate_models(tmp_path / "models", [str(tmp_path / "mine.onnx")])
