"""Household voice enrollment end to end, through `earmark-device voice` and `detect`, with
the real models and espeak-ng voices: an enrolled voice the wake model hears only weakly (in
a noisy room) wakes the device, other voices' plain speech still does not, and removing the
voice puts things back; bad samples are refused with one line that says what to do."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from earmark.device.cli import main
from tests.support.speech import Scene

Speech = Callable[..., np.ndarray]
HOUSEHOLD = "en-gb-x-gbcwmd+m7"  # the evaluation's held-out household: the shipped verifier data never heard it
STRANGER = "en-us-nyc+f1"


def in_pink_noise(audio: np.ndarray, snr_db: float, seed: int = 3) -> np.ndarray:
    """`audio` in a room's pink noise at `snr_db` below the speech's level."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=len(audio)))
    pink = np.fft.irfft(spectrum / np.sqrt(np.arange(1, len(spectrum) + 1)), len(audio))
    level = audio[audio != 0].astype(float).std()
    noisy = audio + pink / pink.std() * level / 10 ** (snr_db / 20)
    return np.clip(noisy, -32768, 32767).astype(np.int16)


def samples(tmp_path: Path, speech: Speech, voice: str, speeds: tuple[int, ...], text: str = "alexa") -> list[str]:
    paths = []
    for speed in speeds:
        path = tmp_path / f"{voice}-{text.replace(' ', '-')}-{speed}.wav"
        Scene().pause(1.5).speak(speech(text, voice, speed)).pause(0.5).write(path)
        paths.append(str(path))
    return paths


def detected(data_dir: Path, wav: Path, capsys: pytest.CaptureFixture[str]) -> list[float]:
    capsys.readouterr()
    assert main(["detect", str(wav), "--data-dir", str(data_dir)]) == 0
    return [json.loads(line)["t"] for line in capsys.readouterr().out.splitlines()]


def test_an_enrolled_voice_heard_weakly_in_noise_wakes_the_device_other_voices_talk_does_not(
        data_dir: Path, tmp_path: Path, speech: Speech, capsys: pytest.CaptureFixture[str]) -> None:
    scene = Scene().pause(2.0)
    for speed in (140, 150):
        scene.speak(speech("alexa, what time is it", HOUSEHOLD, speed), f"household-{speed}").pause(3.0)
    scene.speak(speech("I think Alex said the lecture was on Tuesday, and the exam after that", STRANGER),
                "talk").pause(2.0)
    noisy = tmp_path / "noisy-room.wav"
    Scene().speak(in_pink_noise(scene.audio(), 10)).write(noisy)
    wakes = [scene.marks[f"household-{speed}"] for speed in (140, 150)]
    talk = scene.marks["talk"]
    assert detected(data_dir, noisy, capsys) == []  # the wake model hears this voice too weakly in the noise

    assert main(["voice", "enroll", "--data-dir", str(data_dir), "--wake-word", "alexa", "--name", "sam",
                 "--positive", *samples(tmp_path, speech, HOUSEHOLD, (135, 145, 165, 175))]) == 0
    stored = data_dir / "voices" / "alexa.npz"
    assert oct(os.stat(stored).st_mode & 0o777) == "0o600"
    capsys.readouterr()
    assert main(["voice", "list", "--json", "--data-dir", str(data_dir)]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["wake_word"], row["name"], row["samples"]) == ("alexa", "sam", 4)

    hits = detected(data_dir, noisy, capsys)
    assert hits and all(any(start < t < end + 0.5 for start, end in wakes) for t in hits)  # heard now, and only there
    assert not any(talk[0] <= t <= talk[1] + 0.5 for t in hits)

    assert main(["voice", "remove", "--data-dir", str(data_dir), "--wake-word", "alexa", "--name", "sam"]) == 0
    assert not stored.exists()
    assert detected(data_dir, noisy, capsys) == []


def test_enrollment_refuses_too_few_samples_a_sample_without_the_word_and_an_unknown_member(
        data_dir: Path, tmp_path: Path, speech: Speech, capsys: pytest.CaptureFixture[str]) -> None:
    enroll = ["voice", "enroll", "--data-dir", str(data_dir), "--wake-word", "alexa", "--positive"]
    assert main([*enroll, *samples(tmp_path, speech, HOUSEHOLD, (140, 160))]) == 2
    assert "at least 3 times" in capsys.readouterr().err
    talk = samples(tmp_path, speech, HOUSEHOLD, (150,), "the kettle is on")
    assert main([*enroll, *samples(tmp_path, speech, HOUSEHOLD, (140, 160)), *talk]) == 2
    err = capsys.readouterr().err
    assert "does not hold the wake word" in err and "the-kettle-is-on" in err and len(err.strip().splitlines()) == 1
    assert not (data_dir / "voices" / "alexa.npz").exists()  # nothing half-made
    assert main(["voice", "remove", "--data-dir", str(data_dir), "--wake-word", "alexa", "--name", "kim"]) == 2
    assert "no voices are enrolled for alexa" in capsys.readouterr().err
