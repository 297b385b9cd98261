"""The recorder's state machine on synthetic frames: a frame "is speech" when it is loud,
so each rule (pre-roll, end of speech, no-speech timeout, maximum length) is pinned exactly."""

from __future__ import annotations

import numpy as np

from earmark.device.audio.source import FRAME_SAMPLES
from earmark.device.listening.recorder import Recorder, Recording, State
from earmark.device.listening.wake import Detection
from earmark.device.settings import RecorderSettings

LOUD, QUIET = 8000, 0
SETTINGS = RecorderSettings(pre_roll_s=0.5, silence_end_s=0.8, no_speech_timeout_s=4.0, max_length_s=15.0)


def frame(level: int, tag: int = 0) -> np.ndarray:
    f = np.full(FRAME_SAMPLES, level, dtype=np.int16)
    f[0] = tag  # lets a test find which frame a sample came from
    return f


def is_loud(f: np.ndarray) -> bool:
    return bool(np.abs(f[1:]).mean() > 1000)


def drive(recorder: Recorder, levels: list[int], wake_at: int | None = None,
          button_at: int | None = None) -> list[Recording]:
    done = []
    for i, level in enumerate(levels):
        detection = Detection("alexa", 0.97, i) if i == wake_at else None
        result = recorder.feed(frame(level, tag=i), detection, button=(i == button_at))
        if result is not None:
            done.append(result)
    return done


def test_wake_word_recording_keeps_half_a_second_of_pre_roll_and_ends_after_silence() -> None:
    levels = [QUIET] * 20 + [LOUD] * 10 + [QUIET] * 30
    [rec] = drive(Recorder(SETTINGS, is_loud), levels, wake_at=12)
    assert rec.trigger == "wake_word" and rec.wake_word == "alexa" and rec.wake_score == 0.97
    # Pre-roll is the 0.5 s (8000 samples) ending with the detection frame.
    assert rec.start_sample == 13 * FRAME_SAMPLES - 8000
    before = np.concatenate([frame(QUIET, i) for i in range(6, 13)])[-8000:]
    np.testing.assert_array_equal(rec.audio[:8000], before)
    # Speech until frame 29, then 0.8 s = 10 frames of silence end it at frame 39.
    assert rec.end_reason == "end_of_speech"
    assert rec.start_sample + len(rec.audio) == 40 * FRAME_SAMPLES


def test_no_speech_after_the_wake_word_keeps_nothing() -> None:
    recorder = Recorder(SETTINGS, is_loud)
    assert drive(recorder, [QUIET] * 100, wake_at=5) == []
    assert recorder.discarded == 1 and recorder.state is State.IDLE


def test_speech_that_never_stops_is_cut_at_the_maximum_length() -> None:
    [rec, *_] = drive(Recorder(SETTINGS, is_loud), [LOUD] * 400, wake_at=10)
    assert len(rec.audio) == 15 * 16000 and rec.end_reason == "max_length"


def test_button_starts_at_the_press_with_no_pre_roll() -> None:
    [rec] = drive(Recorder(SETTINGS, is_loud), [QUIET] * 10 + [LOUD] * 5 + [QUIET] * 20, button_at=8)
    assert rec.trigger == "button" and rec.wake_word is None and rec.wake_score is None
    assert rec.start_sample == 8 * FRAME_SAMPLES and rec.audio[0] == 8


def test_abort_drops_the_recording_and_the_pre_roll() -> None:
    recorder = Recorder(SETTINGS, is_loud)
    drive(recorder, [LOUD] * 10, wake_at=3)
    assert recorder.state is State.RECORDING
    recorder.abort()
    assert recorder.idle and recorder.discarded == 1
    [rec] = drive(recorder, [QUIET] * 3 + [LOUD] * 8 + [QUIET] * 12, wake_at=0)
    assert len(rec.audio) < 24 * FRAME_SAMPLES  # nothing from before the abort


def test_end_of_input_keeps_a_recording_that_heard_speech() -> None:
    recorder = Recorder(SETTINGS, is_loud)
    drive(recorder, [LOUD] * 12, wake_at=2)
    rec = recorder.finish()
    assert rec is not None and rec.end_reason == "end_of_input"
    assert recorder.finish() is None


def test_on_start_is_called_once_per_recording() -> None:
    calls: list[int] = []
    recorder = Recorder(SETTINGS, is_loud, on_start=lambda: calls.append(1))
    drive(recorder, [QUIET] * 5 + [LOUD] * 4 + [QUIET] * 12 + [LOUD] * 4 + [QUIET] * 12, wake_at=6)
    assert calls == [1]


HA = RecorderSettings()  # the defaults: Home Assistant's presets


def test_the_wake_words_tail_then_a_pause_does_not_end_the_recording_before_the_request() -> None:
    # Issue 12 case 5: "alexa … (waiting for the light) … what is the weather". Four frames
    # of the word's tail (a slow speaker: openWakeWord fired before the word ended), 1.5 s
    # of silence, then the request: the clip must hold all of it.
    levels = [QUIET] * 10 + [LOUD] * 4 + [QUIET] * 19 + [LOUD] * 15 + [QUIET] * 30
    [rec] = drive(Recorder(HA, is_loud), levels, wake_at=9)
    request_end = (10 + 4 + 19 + 15) * FRAME_SAMPLES
    assert rec.end_reason == "end_of_speech"
    assert rec.start_sample + len(rec.audio) >= request_end
    assert rec.start_sample + len(rec.audio) == request_end + 9 * FRAME_SAMPLES  # 0.7 s preset = 9 frames


def test_a_request_spoken_straight_after_the_wake_word_still_ends_on_silence() -> None:
    levels = [QUIET] * 10 + [LOUD] * 20 + [QUIET] * 40
    [rec] = drive(Recorder(HA, is_loud), levels, wake_at=9)
    assert rec.end_reason == "end_of_speech"
    assert rec.start_sample + len(rec.audio) == 39 * FRAME_SAMPLES


def test_a_short_request_is_not_ended_before_the_minimum_command_length() -> None:
    # 0.4 s of speech then silence: armed, but it runs at least 1.0 s from the speech's start.
    levels = [QUIET] * 16 + [LOUD] * 5 + [QUIET] * 40
    [rec] = drive(Recorder(HA, is_loud), levels, wake_at=9)
    speech_start = 16 * FRAME_SAMPLES
    assert rec.start_sample + len(rec.audio) - speech_start >= 16000


def test_one_frame_blips_never_arm_the_end_of_speech() -> None:
    # Clicks and a cough of 80 ms each, a second apart: never 0.3 s of speech, so nothing is kept.
    levels = [QUIET] * 10 + ([LOUD] + [QUIET] * 13) * 5
    recorder = Recorder(HA, is_loud)
    assert drive(recorder, levels, wake_at=9) == [] and recorder.discarded == 1


def test_silence_presets_set_how_long_a_pause_ends_the_request() -> None:
    from dataclasses import replace

    ends = {}
    for preset in ("aggressive", "default", "relaxed"):
        levels = [QUIET] * 13 + [LOUD] * 20 + [QUIET] * 40
        [rec] = drive(Recorder(replace(HA, silence=preset), is_loud), levels, wake_at=9)
        ends[preset] = (rec.start_sample + len(rec.audio)) // FRAME_SAMPLES - 33
    assert ends == {"aggressive": 4, "default": 9, "relaxed": 16}
