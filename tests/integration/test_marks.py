"""Issue 36: "not meant for you", offline. `earmark-device voice not-meant` teaches the data
dir that recordings are not the wake word; `detect` (and `run`) decide with what it learnt;
`voice forget-marks` undoes it. Test speech is espeak-ng's: a name that wakes the device
("Alexis, dinner is ready"), the same words said faster, and the wake word itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.integration.test_cli import PAIRED, cli, one_line_error
from tests.support.speech import Scene


def woken(data_dir: Path, *wavs: Path) -> set[str]:
    found = cli("detect", *wavs, data_dir=data_dir)
    assert found.returncode == 0, found.stderr
    return {Path(json.loads(line)["file"]).name for line in found.stdout.splitlines()}


def test_a_marked_name_stops_waking_the_device_the_word_still_does_and_forgetting_brings_it_back(
        data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    def scene(text: str, voice: str, speed: int, name: str) -> Path:
        return Scene().pause(1).speak(speech(text, voice, speed)).pause(1).write(tmp_path / name)

    marked = scene("Alexis, dinner is ready", "en-gb+f3", 160, "alexis.wav")
    faster = scene("Alexis, dinner is ready", "en-gb+f3", 175, "alexis-faster.wav")
    word = scene("alexa, what time is it", "en", 150, "alexa.wav")
    before = woken(data_dir, marked, faster, word)
    assert before == {"alexis.wav", "alexis-faster.wav", "alexa.wav"}  # the premise: the name wakes it

    taught = cli("voice", "not-meant", marked, data_dir=data_dir)
    assert taught.returncode == 0, taught.stderr
    assert "alexa: learnt 1 recording(s)" in taught.stdout
    assert oct((data_dir / "marks" / "alexa.npz").stat().st_mode & 0o777) == "0o600"
    assert woken(data_dir, marked, faster, word) == {"alexa.wav"}
    listed = cli("voice", "list", "--json", data_dir=data_dir)
    assert json.loads(listed.stdout) == [{"wake_word": "alexa", "marks": 1}]

    forgot = cli("voice", "forget-marks", data_dir=data_dir)
    assert forgot.returncode == 0 and "forgot the marks of alexa" in forgot.stdout
    assert woken(data_dir, marked, faster, word) == before


def test_a_recording_with_nothing_like_the_word_teaches_nothing_and_says_so(
        data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    talk = Scene().pause(1).speak(speech("the committee met on tuesday")).pause(1).write(tmp_path / "talk.wav")
    one_line_error(cli("voice", "not-meant", talk, data_dir=data_dir), "talk.wav", "nothing to learn")
    assert not (data_dir / "marks").exists()
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not a wave file")
    one_line_error(cli("voice", "not-meant", garbage, data_dir=data_dir), "garbage.wav")
    assert not (data_dir / "marks").exists()


def test_a_recorded_clip_marked_by_id_teaches_the_device_from_what_it_kept_and_only_once(
        data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    # The mark a household makes later, by clip id: the device kept the wake model's view of
    # each recording (never the audio) beside it, 0600, and learns from that.
    scene = (Scene().pause(1).speak(speech("Alexis, dinner is ready", "en-gb+f3", 160)).pause(0.2)
             .speak(speech("we are eating in the garden")).pause(2).write(tmp_path / "alexis.wav"))
    run = cli("run", "--audio-file", scene, "--mock-gpio", "--device-id", "den-pi", *PAIRED, data_dir=data_dir)
    assert run.returncode == 0, run.stderr
    [row] = [json.loads(line) for line in cli("spool", "--json", data_dir=data_dir).stdout.splitlines()]
    kept = data_dir / "wake-features" / f"{row['clip_id']}.npz"
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    assert woken(data_dir, scene) == {"alexis.wav"}

    taught = cli("voice", "not-meant", "--clip", row["clip_id"], data_dir=data_dir)
    assert taught.returncode == 0, taught.stderr
    assert "alexa: learnt from the recorded clip(s)" in taught.stdout
    assert woken(data_dir, scene) == set()
    assert kept.exists()  # kept until its time or its deletion: a mark taken off and made again is learnt again

    again = cli("voice", "not-meant", "--clip", row["clip_id"], data_dir=data_dir)
    one_line_error(again, row["clip_id"], "learnt already")
    one_line_error(cli("voice", "not-meant", "--clip", "0b0e1d4c-3f52-4d3a-9a43-5b1e2c3d4e5f", data_dir=data_dir),
                   "nothing kept of it")
    one_line_error(cli("voice", "not-meant", "--clip", "not-a-clip", data_dir=data_dir), "not a clip id")
    listed = cli("voice", "list", "--json", data_dir=data_dir)
    assert json.loads(listed.stdout) == [{"wake_word": "alexa", "marks": 1}]  # the bad marks learnt nothing
