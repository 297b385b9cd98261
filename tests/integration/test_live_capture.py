"""The device on a live (fake, real-time) microphone with the real models and espeak-ng
speech: nothing of a request is lost at Pi 3 speed, a request after a pause is kept whole,
and a microphone that goes away mid-request is survived."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earmark.device.assembly import assemble
from earmark.device.audio.microphone import Microphone
from earmark.device.audio.source import WavFileSource
from earmark.device.controls import Controls, LightState
from earmark.device.status import StatusReport
from tests.integration.test_device_loop import clips_in, offset_in, settings_for
from tests.support.fakeaudio import FakeCard, FakePyAudio
from tests.support.speech import Scene
from tests.support.waiting import wait_until

Speech = Callable[..., np.ndarray]
PI3_SLOWDOWN = 10  # openWakeWord's reset: 93 ms here, about 0.9 s on a Pi 3 / Zero 2 W


def slowed(process: Callable[[np.ndarray], Any], factor: float) -> Callable[[np.ndarray], Any]:
    """Inference at a Pi 3's speed: each call takes `factor` times the CPU time it takes here
    (CPU time, not wall time, so a busy test machine does not slow it further)."""
    def slow(frame: np.ndarray) -> Any:
        started = time.thread_time()
        result = process(frame)
        time.sleep((time.thread_time() - started) * (factor - 1))
        return result
    return slow


def run_live(s: Any, card: FakeCard, until: Callable[[], bool], timeout: float,
             tweak: Callable[[Any], None] = lambda loop: None) -> tuple[Any, Microphone, Controls]:
    mic = Microphone("", pa_factory=lambda: FakePyAudio(card), retry_s=(0.05, 0.5), read_timeout_s=0.3)
    card.default_index = 0
    controls = Controls(s.gpio)
    stop = threading.Event()
    device = assemble(s, mic, controls, stop=stop, publish=False)
    tweak(device.loop)
    worker = threading.Thread(target=device.run)
    worker.start()
    try:
        wait_until(until, timeout, "the device to finish")
    finally:
        stop.set()
        worker.join(timeout=30)
        device.close()
    return device.loop, mic, controls


def test_at_pi3_speed_no_audio_is_lost_and_the_clip_holds_the_whole_request(
        data_dir: Path, speech: Speech) -> None:
    # Issue 12 case 3: each detection reset openWakeWord (0.9 s on a Pi 3) on the only thread
    # that read the mic, so the words right after the wake word were lost to overruns.
    scene = (Scene().pause(1.5).speak(speech("alexa"), "wake").pause(0.3)
             .speak(speech("what is the weather like today"), "request").pause(3.0))
    card = FakeCard(scene.audio())
    s = settings_for(data_dir)

    def pi3(loop: Any) -> None:
        loop.detector.process = slowed(loop.detector.process, PI3_SLOWDOWN)

    _, mic, _ = run_live(s, card, lambda: len(clips_in(s)) == 1, scene.length_s + 20, pi3)
    [(header, audio)] = clips_in(s)
    assert card.lost_samples == 0 and mic.overruns == 0 and mic.overflows == 0
    assert header["wake_word"] == "alexa"
    start = offset_in(scene.audio(), audio)
    request_start, request_end = scene.marks["request"]
    assert start <= request_start and start + len(audio) / 16000 >= request_end
    np.testing.assert_array_equal(audio, scene.audio()[round(start * 16000):round(start * 16000) + len(audio)])


# Slow speakers are the hard case: openWakeWord fires up to 0.4 s before "alexa" ends, and
# on main the rest of the word armed the end of speech (all of the 90-120 wpm ones here
# lost their request there).
VOICES = [("en", 90), ("en", 150), ("en-gb", 120), ("en-us", 90), ("en-us", 170), ("en+f3", 120),
          ("en-us+f2", 120), ("en+m5", 120), ("en-gb-x-rp", 160)]


@pytest.mark.parametrize(("voice", "speed"), VOICES)
def test_wake_word_then_a_long_pause_then_the_request_keeps_the_request(
        data_dir: Path, tmp_path: Path, speech: Speech, voice: str, speed: int) -> None:
    # Issue 12 case 5: the wake word's own tail armed the end of speech, so a person who
    # waited for the light lost the request.
    scene = (Scene().pause(1.0).speak(speech("alexa", voice, speed), "wake").pause(1.5)
             .speak(speech("what is the weather like today", voice, speed), "request").pause(3.0))
    s = settings_for(data_dir)
    # What is tested here is the end of the request, not whether the word is heard: the
    # second model family (microWakeWord) does not hear three of these slow synthetic voices'
    # "alexa" (en and en-us at 90 wpm, en+f3 at 120; README, "The wake decision"), so this
    # test decides by openWakeWord alone.
    s = replace(s, wake=replace(s.wake, words=tuple(replace(w, confirm_check=0.0, veto_check=0.0, micro_check=0.0)
                                                    for w in s.wake.words)))
    controls = Controls(s.gpio)
    assemble(s, WavFileSource(scene.write(tmp_path / "scene.wav")), controls).loop.run()
    [(header, audio)] = clips_in(s)
    start = offset_in(scene.audio(), audio)
    end = start + len(audio) / 16000
    print(f"{voice} at {speed} wpm: clip {len(audio) / 16000:.2f} s, "
          f"request ends {scene.marks['request'][1] - start:.2f} s in")
    assert header["wake_word"] == "alexa"
    assert end >= scene.marks["request"][1], f"{voice}: the clip ends {scene.marks['request'][1] - end:.2f} s early"


def test_a_mic_lost_mid_request_keeps_the_recording_lights_the_error_and_comes_back(
        data_dir: Path, speech: Speech) -> None:
    # Issue 12 case 4: a read error exited 2 (never restarted) and lost the recording.
    scene = (Scene().pause(1.0).speak(speech("alexa"), "wake").pause(0.2)
             .speak(speech("add milk and eggs and bread to the shopping list"), "request").pause(0.3)
             .pause(4.0).speak(speech("alexa", "en-gb"), "wake2").pause(0.2)
             .speak(speech("what time is it"), "request2").pause(3.0))
    card = FakeCard(scene.audio())
    s = settings_for(data_dir)
    seen: list[LightState] = []
    unplug_at = scene.marks["request"][0] + 1.2

    statuses: list[dict[str, Any]] = []

    def unplug_midway(loop: Any) -> None:
        report = StatusReport(loop, loop.source)
        loop.on_status = lambda: statuses.append(report.snapshot())  # what the publisher would send
        original = loop.controls.light.show

        def show(state: LightState) -> None:
            seen.append(state)
            original(state)
        loop.controls.light.show = show

        def cut() -> None:
            time.sleep(unplug_at)
            card.unplug()
            time.sleep(1.0)
            card.plug_in()
        threading.Thread(target=cut, daemon=True).start()

    loop, mic, controls = run_live(s, card, lambda: len(clips_in(s)) >= 2, scene.length_s + 20, unplug_midway)
    clips = clips_in(s)
    assert len(clips) == 2
    assert LightState.ERROR in seen and controls.light.state is not LightState.ERROR
    assert loop.stats.mic_interruptions == 1 and mic.reopened == 1
    # The status said so while it lasted, and that it was over after.
    assert [st["mic"] for st in statuses] == ["problem", "open"]
    assert "failed" in statuses[0]["mic_problem"] or "waiting" in statuses[0]["mic_problem"]
    assert statuses[1]["mic_problem"] == "" and statuses[1]["last_wake"].endswith(" alexa")
    (_, interrupted), (_, later) = clips  # oldest first
    start = offset_in(scene.audio(), interrupted)
    # The interrupted request was kept up to the moment the mic went away, not dropped.
    assert start + len(interrupted) / 16000 == pytest.approx(unplug_at, abs=0.4)
    assert offset_in(scene.audio(), later) + len(later) / 16000 >= scene.marks["request2"][1]
