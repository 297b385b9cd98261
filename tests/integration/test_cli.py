"""`earmark-device` as a user runs it: in a subprocess, judged by exit code and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.conftest import HOUSEHOLD_RECIPIENT, OWNER
from tests.support.speech import Scene

ROOT = Path(__file__).resolve().parents[2]

PAIRED = ("--owner-id", OWNER, "--recipient", HOUSEHOLD_RECIPIENT)  # what pairing would give the device


def cli(*args: str | Path, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "earmark.device.cli", *map(str, args)]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "EARMARK_DATA_DIR": "/nonexistent-default"})


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> None:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("earmark-device: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_keygen_makes_a_private_0600_key_once_and_prints_the_public_key_last(tmp_path: Path) -> None:
    first = cli("keygen", data_dir=tmp_path)
    second = cli("keygen", data_dir=tmp_path)
    assert first.returncode == second.returncode == 0
    key_word = first.stdout.split()[-1]
    assert key_word.startswith("ed25519:") and second.stdout.split()[-1] == key_word
    key_file = tmp_path / "device.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    secret = "".join(key_file.read_text().splitlines()[1:-1])
    assert secret not in first.stdout + first.stderr + second.stdout + second.stderr


def test_run_spools_one_clip_and_detect_reports_it(data_dir: Path, tmp_path: Path,
                                                   speech: Callable[..., np.ndarray]) -> None:
    wav = (Scene().pause(1).speak(speech("hey jarvis", "en-gb")).pause(0.1)
           .speak(speech("play some music")).pause(2).write(tmp_path / "s.wav"))
    config = tmp_path / "device.toml"
    config.write_text('[[wake.words]]\nname = "hey_jarvis"\n')
    run = cli("run", "--config", config, "--audio-file", wav, "--mock-gpio", "--device-id", "den-pi",
              *PAIRED, data_dir=data_dir)
    assert run.returncode == 0, run.stderr
    assert "1 clip(s) recorded" in run.stdout
    listed = cli("spool", "--json", data_dir=data_dir)
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["wake_word"] == "hey_jarvis" and row["signature"] == "valid" and row["device_id"] == "den-pi"

    quiet = Scene().pause(2).write(tmp_path / "quiet.wav")
    detect = cli("detect", wav, quiet, "--wake-word", "hey_jarvis", "--wake-word", "alexa", data_dir=data_dir)
    [hit] = [json.loads(line) for line in detect.stdout.splitlines()]
    assert hit["file"] == str(wav) and hit["wake_word"] == "hey_jarvis" and 1.0 < hit["t"] < 2.5
    # Told once (no log line repeating the JSON), and the file with nothing in it is named on stderr.
    assert detect.stderr.strip() == f"{quiet}: no wake word heard (hey_jarvis, alexa)", detect.stderr


def test_a_bad_flag_value_is_one_line_naming_the_flag_not_a_config_key(data_dir: Path, tmp_path: Path) -> None:
    wav = Scene().pause(1).write(tmp_path / "quiet.wav")
    for argv, flag in ((("detect", wav, "--wake-word", "alexa", "--wake-word", "hey_siri"), "--wake-word 'hey_siri'"),
                       (("detect", wav, "--threshold", "7"), "--threshold 7.0"),
                       (("run", "--audio-file", wav, "--device-id", "pi-1", *PAIRED, "--recipient", "age1nope"),
                        "--recipient 'age1nope'")):
        result = cli(*argv, data_dir=data_dir)
        one_line_error(result, f"error: {flag}: ")
        assert "config key" not in result.stderr


def test_missing_model_is_one_line_naming_models_fetch(tmp_path: Path) -> None:
    wav = Scene().pause(1).write(tmp_path / "quiet.wav")
    result = cli("run", "--audio-file", wav, "--device-id", "pi-1", *PAIRED, data_dir=tmp_path)
    one_line_error(result, "earmark-device models fetch")


def test_unreadable_wav_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    result = cli("run", "--audio-file", bad, "--device-id", "pi-1", *PAIRED, data_dir=data_dir)
    one_line_error(result, "bad.wav", "not a usable WAV file")


def test_bad_config_value_is_one_line_naming_the_key(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "device.toml"
    config.write_text("[recorder]\nmax_length_s = 300\n")
    result = cli("run", "--config", config, "--device-id", "pi-1", *PAIRED, data_dir=data_dir)
    one_line_error(result, "recorder.max_length_s")


def test_a_missing_mic_is_waited_for_and_a_stop_still_ends_the_device_cleanly(data_dir: Path) -> None:
    # This machine has no audio input at all: like a USB mic not yet enumerated at boot. The
    # device waits for it (issue 12 case 4), saying why once, and stops cleanly when asked.
    import signal

    argv = [sys.executable, "-m", "earmark.device.cli", "run", "--mic", "no-such-mic", "--mock-gpio",
            "--device-id", "pi-1", *PAIRED, "--data-dir", str(data_dir)]
    device = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert device.stderr is not None
    lines: list[str] = []
    for line in device.stderr:  # the sentinel: it says it is waiting, and is still running
        lines.append(line)
        if "waiting for the microphone" in line:
            break
    assert device.poll() is None, "".join(lines)
    device.send_signal(signal.SIGTERM)
    out, rest = device.communicate(timeout=30)
    err = "".join(lines) + rest
    assert device.returncode == 0, err
    waiting = [line for line in err.splitlines() if "waiting for the microphone" in line]
    assert len(waiting) == 1 and "earmark-device mics" in waiting[0], err
    assert "0 clip(s) recorded" in out


def test_run_without_identity_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    result = cli("run", "--audio-file", Scene().pause(1).write(tmp_path / "q.wav"), data_dir=data_dir)
    one_line_error(result, "device_id is not set")
