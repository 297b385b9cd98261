"""The wake decision on recordings made by people, not by a speech synthesiser: a fixed
sample kept in tests/data/people (40 takes of "alexa" from bench/wake_eval.py's held-out
part, which no default was tuned on, and 10 minutes of the same speakers saying other
words; its README says where they come from), streamed through the device's own detector with its default settings.
Earmark's decision must hear at least as many of the takes as bare openWakeWord at 0.5
on the same frames, and wake no more often in the other speech.

The first shipped word verifier learnt espeak-ng's voices and vetoed real people: this
test fails on it (16 of these 40 takes heard, against bare openWakeWord's 38)."""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earmark.device.audio.source import FRAME_SAMPLES, FRAME_SECONDS
from earmark.device.listening.decision import WakeDecision, WordRule
from earmark.device.listening.features import STARTUP_FRAMES
from earmark.device.listening.models import locate_models
from earmark.device.listening.wake import WakeDetector
from earmark.device.settings import WakeSettings

PEOPLE = Path(__file__).resolve().parents[1] / "data" / "people"
# Every other take of the evaluation's held-out part (bench/wake_real.py's speaker runs), so
# the sample's speakers are ones no default was tuned on: the takes kept in tests/data/people.
TAKES = (2, 8, 16, 22, 30, 38, 46, 56, 64, 72, 76, 84, 88, 96, 104, 118, 126, 134, 142, 150, 158, 166, 174,
         182, 186, 190, 196, 200, 208, 216, 224, 232, 240, 248, 252, 260, 268, 274, 282, 290)
BACKGROUND_S = 300  # each background file: 5 minutes from the held-out half, 10 minutes in all
GAP_S = 3.0  # room between takes: more than the refractory period


def read_audio(path: Path) -> np.ndarray:
    raw = subprocess.run(["sox", "-q", "-V1", str(path), "-t", "raw", "-r", "16000", "-c", "1", "-b", "16",
                          "-e", "signed-integer", "-L", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<i2")


class _NoChecks:
    def confirm(self, word: str, index: int) -> float | None:
        return None

    def voice(self, word: str, index: int) -> float | None:
        return None

    def micro(self, word: str, index: int) -> float | None:
        return None

    def speech(self, word: str, index: int) -> float:
        return 1.0


@dataclass
class Heard:
    earmark: list[int]  # frames the device detected alexa at
    bare: list[int]  # frames bare openWakeWord at 0.5 did, on the same scores


def stream(models: Path, audio: np.ndarray) -> Heard:
    """`audio` through one detector with the default settings, frame by frame, as a mic feeds it."""
    settings = WakeSettings()
    detector = WakeDetector(settings, locate_models(models, ["alexa"]))
    bare = WakeDecision({"alexa": WordRule(threshold=0.5)}, math.ceil(settings.refractory_s / FRAME_SECONDS),
                        STARTUP_FRAMES - 1)
    heard = Heard([], [])
    for index, frame in enumerate(audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)):
        if detector.process(frame) is not None:
            heard.earmark.append(index)
        if bare.step(index, detector.scores, _NoChecks()) is not None:
            heard.bare.append(index)
    return heard


def on_floor(audio: np.ndarray, seed: int) -> np.ndarray:
    """A microphone's noise floor under it (about -65 dBFS): a real room is never digital silence."""
    floor = np.random.default_rng(seed).normal(0, 20, len(audio))
    return np.clip(audio.astype(np.float64) + floor, -32768, 32767).astype(np.int16)


def test_the_default_decision_hears_people_at_least_as_well_as_bare_openwakeword(
        shared_models: Path) -> None:
    gap = np.zeros(int(GAP_S * 16_000), np.int16)
    pieces, spans, at = [gap], [], len(gap)
    for take in TAKES:
        audio = read_audio(PEOPLE / "alexa" / f"{take}.flac")
        spans.append((at // FRAME_SAMPLES, (at + len(audio)) // FRAME_SAMPLES + 12))  # + 1 s for the word's tail
        pieces += [audio, gap]
        at += len(audio) + len(gap)
    heard = stream(shared_models, on_floor(np.concatenate(pieces), 1))

    def takes_heard(frames: list[int]) -> int:
        return sum(any(start <= f <= end for f in frames) for start, end in spans)

    earmark, bare = takes_heard(heard.earmark), takes_heard(heard.bare)
    assert bare >= 0.85 * len(TAKES)  # the sample is what bare openWakeWord hears well: 38 of 40
    assert earmark >= bare, f"Earmark heard {earmark} of {len(TAKES)} people's takes, bare openWakeWord {bare}"
    assert len(heard.earmark) <= len(TAKES), "a take woke the device twice"


def test_the_default_decision_wakes_no_more_often_than_bare_openwakeword_in_peoples_other_speech(
        shared_models: Path) -> None:
    audio = np.concatenate([read_audio(p) for p in sorted((PEOPLE / "background").glob("*.flac"))])
    assert len(audio) == 2 * BACKGROUND_S * 16_000
    heard = stream(shared_models, on_floor(audio, 2))
    assert len(heard.earmark) <= len(heard.bare), (
        f"Earmark woke {len(heard.earmark)} times in 10 minutes of people's other words, bare openWakeWord "
        f"{len(heard.bare)} times")


def test_people_reading_near_words_wake_bare_openwakeword_but_not_earmark(shared_models: Path) -> None:
    # Issue 40: on 1.5 h of people reading English sentences (speechocean762), openWakeWord's
    # alexa at 0.5, Earmark's decision then, woke five times, on near-words such as "Alisa".
    # Four of those moments (6 s each, as the evaluation heard them: two clean, two in pink
    # noise; the fifth needs minutes of the stream before it to reach 0.5), from the part the
    # defaults were tuned on: microWakeWord, which must now also hear the word, gives none of
    # them more than 0.05. And the one sentence of the held-out part that microWakeWord hears
    # too (clean and in noise, the noisy one 14 s: its rise needs the stream before it), which
    # the decision with both families still woke on: the word verifier's veto refuses it.
    for path in sorted((PEOPLE / "near_words").glob("*.flac")):
        heard = stream(shared_models, read_audio(path))
        assert heard.bare, f"{path.name}: the premise, bare openWakeWord waking on it, no longer holds"
        assert heard.earmark == [], f"{path.name}: Earmark woke on it at frame {heard.earmark}"
