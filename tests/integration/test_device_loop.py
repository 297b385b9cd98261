"""The device end to end on real models and espeak-ng speech: what gets recorded, when, and
what the buttons and the light do. GPIO is gpiozero's MockFactory; the mic is a WAV file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from earmark.device.assembly import assemble
from earmark.device.audio.source import WavFileSource
from earmark.device.controls import DEBOUNCE_S, LIGHT_COLOURS, Controls, DebouncedButton, LightState
from earmark.device.listening.decision import rule_for
from earmark.device.loop import DeviceLoop
from earmark.device.settings import DeviceSettings, GpioSettings, load_settings
from earmark.device.sync.spool import Spool
from earmark.wire.envelope import decode_envelope, parse_public_key
from tests.conftest import HOUSEHOLD_RECIPIENT, OWNER, opened
from tests.support.speech import RATE, Scene, audio_windows, voiced_span
from tests.support.waiting import wait_until

Speech = Callable[..., np.ndarray]
PINS = GpioSettings(mute_pin=5, talk_pin=17, led_red_pin=12, led_green_pin=13, led_blue_pin=16,
                    mock=True)


def settings_for(data_dir: Path, **gpio: object) -> DeviceSettings:
    s = load_settings(None, data_dir, {"device_id": "test-device", "owner_id": OWNER,
                                       "recipients": (HOUSEHOLD_RECIPIENT,)})
    return replace(s, gpio=replace(PINS, **gpio))


def clips_in(s: DeviceSettings) -> list[tuple[dict[str, object], np.ndarray]]:
    """Every spooled clip, decoded, signature-checked against the device's key, and opened
    with the household's identity."""
    from earmark.device.sync.identity import load_or_create_key, public_key_of

    public = parse_public_key(public_key_of(load_or_create_key(s.key_path)[0]))
    out = []
    for clip in Spool(s.spool_dir, s.spool.max_bytes).clips():
        env = decode_envelope(clip.read())
        assert env.verify(public)
        out.append((env.header.__dict__, np.frombuffer(opened(env.audio)[44:], dtype="<i2")))
    return out


def run_device(s: DeviceSettings, wav: Path, realtime: bool = False,
               before: Callable[[Controls], None] = lambda c: None) -> tuple[DeviceLoop, Controls]:
    controls = Controls(s.gpio)
    before(controls)
    loop = assemble(s, WavFileSource(wav, realtime=realtime), controls).loop
    loop.run()
    return loop, controls


def press(button: DebouncedButton | None, bounces: int = 0) -> None:
    """A finger on a button: `bounces` chattering edges, held past the debounce time, let go."""
    assert button is not None
    for _ in range(bounces):
        button.pin.drive_low()
        button.pin.drive_high()
    button.pin.drive_low()
    time.sleep(2 * DEBOUNCE_S)
    button.pin.drive_high()
    time.sleep(2 * DEBOUNCE_S)


def offset_in(stream: np.ndarray, clip: np.ndarray) -> float:
    """Where the clip's audio sits in the source (16 kHz mono sources are copied exactly)."""
    at = int(np.argmax(np.abs(clip.astype(np.int32))))  # a probe around the loudest sample, surely voiced
    at = max(0, min(at - 640, len(clip) - 1280))
    probe = clip[at:at + 1280]
    for start in np.flatnonzero(stream == probe[0]):
        if np.array_equal(stream[start:start + len(probe)], probe):
            return float((start - at) / RATE)
    raise AssertionError("clip audio not found in the source")


@pytest.fixture
def wake_scene(speech: Speech) -> Scene:
    return (Scene().pause(1.5).speak(speech("alexa"), "wake").pause(0.1)
            .speak(speech("what time is it"), "request").pause(2.5))


def test_wake_word_then_request_yields_exactly_one_clip(data_dir: Path, tmp_path: Path,
                                                        wake_scene: Scene) -> None:
    s = settings_for(data_dir)
    before = datetime.now(UTC)
    run_device(s, wake_scene.write(tmp_path / "scene.wav"))

    [(header, audio)] = clips_in(s)
    captured = datetime.strptime(str(header["captured_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=20) <= captured <= datetime.now(UTC), "capture time is off, or in the future"
    assert header["trigger"] == "wake_word" and header["wake_word"] == "alexa"
    # The smoothed score the decision took (alexa fires on the rise, once its checks pass).
    assert rule_for(s.wake, s.wake.words[0]).threshold <= header["wake_score"] <= 1
    assert header["owner_id"] == OWNER and header["device_id"] == "test-device"
    start = offset_in(wake_scene.audio(), audio)
    end = start + len(audio) / RATE
    wake_start, _ = wake_scene.marks["wake"]
    _, speech_end = wake_scene.marks["request"]
    assert start >= wake_start - 0.5, "the clip reaches back more than 0.5 s before the wake word"
    assert start <= wake_start + 0.3, "the pre-roll lost the start of the wake word"
    assert speech_end <= end <= speech_end + 1.0, f"clip ends at {end:.2f}, speech at {speech_end:.2f}"


def test_plain_speech_without_wake_word_records_nothing(data_dir: Path, tmp_path: Path,
                                                        speech: Speech) -> None:
    s = settings_for(data_dir)
    scene = (Scene().pause(1).speak(speech("the weather is nice today and I would like a cup of tea"))
             .pause(1).speak(speech("please turn on the lights in the kitchen", "en-gb")).pause(1))
    loop, _ = run_device(s, scene.write(tmp_path / "plain.wav"))
    assert loop.stats.frames > 80
    assert clips_in(s) == []


def test_a_long_ramble_is_cut_at_the_maximum_length(data_dir: Path, tmp_path: Path,
                                                    speech: Speech) -> None:
    ramble = speech("and then I went to the market and bought apples and pears and plums "
                    "and then I walked home along the river and counted the boats " * 7)
    scene = Scene().pause(1).speak(speech("alexa")).speak(ramble).pause(1)
    assert scene.length_s > 58
    s = settings_for(data_dir)
    run_device(s, scene.write(tmp_path / "ramble.wav"))

    first = clips_in(s)[0]
    assert first[0]["duration_ms"] == 15_000
    assert len(first[1]) == 15 * RATE


def test_muted_device_reads_no_frames_until_unmuted(data_dir: Path, tmp_path: Path,
                                                    wake_scene: Scene) -> None:
    s = settings_for(data_dir, mute_kind="switch")
    controls = Controls(s.gpio)
    controls.mute.button.pin.drive_low()  # switch closed: muted from the start
    time.sleep(2 * DEBOUNCE_S)
    source = WavFileSource(wake_scene.write(tmp_path / "scene.wav"))
    loop = assemble(s, source, controls).loop
    worker = threading.Thread(target=loop.run)
    worker.start()
    wait_until(lambda: controls.light.state is LightState.MUTED, 10, "the muted light")

    assert source.frames_read == 0 and not source.is_open
    assert controls.light.state is LightState.MUTED
    assert controls.light.led.color == LIGHT_COLOURS[LightState.MUTED]
    assert worker.is_alive()

    controls.mute.button.pin.drive_high()  # switch opened
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert source.frames_read > 0
    assert len(clips_in(s)) == 1


def test_mute_midway_closes_the_stream_and_drops_the_recording(data_dir: Path, tmp_path: Path,
                                                               wake_scene: Scene) -> None:
    s = settings_for(data_dir)  # toggle button
    controls = Controls(s.gpio)
    source = WavFileSource(wake_scene.write(tmp_path / "scene.wav"), realtime=True)
    loop = assemble(s, source, controls).loop
    worker = threading.Thread(target=loop.run)
    worker.start()
    wait_until(lambda: controls.light.state is LightState.RECORDING, 20, "the recording light")

    press(controls.mute.button)  # mute
    wait_until(lambda: not source.is_open, 5, "the stream to close on mute")
    frozen = source.frames_read
    time.sleep(0.6)  # 7 frames' worth of real time
    assert source.frames_read == frozen and not source.is_open

    press(controls.mute.button)  # again: unmute
    worker.join(timeout=60)
    assert source.frames_read > frozen
    assert clips_in(s) == [], "a recording interrupted by mute must not be kept"
    assert loop.recorder.discarded == 1


def test_talk_button_records_without_a_wake_word(data_dir: Path, tmp_path: Path,
                                                 speech: Speech) -> None:
    s = settings_for(data_dir)
    scene = Scene().pause(0.5).speak(speech("remind me to water the plants"), "request").pause(2)

    run_device(s, scene.write(tmp_path / "talk.wav"), before=lambda controls: press(controls.talk.button))
    [(header, audio)] = clips_in(s)
    assert header["trigger"] == "button" and header["wake_word"] is None
    assert offset_in(scene.audio(), audio) == 0.0, "a button recording starts at the press"
    assert voiced_span(audio)[1] >= scene.marks["request"][1] - 0.05


def test_light_follows_the_recorder_on_mock_pins(data_dir: Path, tmp_path: Path,
                                                 wake_scene: Scene) -> None:
    s = settings_for(data_dir)
    _, controls = run_device(s, wake_scene.write(tmp_path / "scene.wav"))
    blue = [change.state for change in controls.pin_factory.pin(PINS.led_blue_pin).states]
    red = [change.state for change in controls.pin_factory.pin(PINS.led_red_pin).states]
    # Off, on while recording, off again when the clip is spooled; red (muted) never lit.
    assert [b for i, b in enumerate(blue) if i == 0 or b != blue[i - 1]] == [0, 1, 0]
    assert max(red) == 0
    assert controls.light.state is LightState.IDLE


def test_full_spool_refuses_the_new_clip_keeps_the_old_and_lights_error(
        data_dir: Path, tmp_path: Path, wake_scene: Scene) -> None:
    s = settings_for(data_dir)
    s = replace(s, spool=replace(s.spool, max_bytes=1024 * 1024))
    spool = Spool(s.spool_dir, s.spool.max_bytes)
    old = spool.put("00000000-0000-4000-8000-000000000000", b"x" * (1024 * 1024 - 1000))

    loop, controls = run_device(s, wake_scene.write(tmp_path / "scene.wav"))
    assert loop.stats.refused == 1 and loop.stats.clips == []
    assert [c.path for c in spool.clips()] == [old.path]
    assert controls.light.state is LightState.ERROR
    assert controls.light.led.color == LIGHT_COLOURS[LightState.ERROR]


class RecordingSpi:
    """The hardware edge of the APA102 strip: remembers every SPI transfer."""

    def __init__(self) -> None:
        self.transfers: list[list[int]] = []

    def xfer2(self, data: list[int]) -> None:
        self.transfers.append(list(data))

    def close(self) -> None:
        pass


def test_respeaker_apa102_leds_show_each_state() -> None:
    from earmark.device.controls import StatusLight

    spi = RecordingSpi()
    light = StatusLight(GpioSettings(light="apa102", apa102_count=3), None, spi=spi)
    light.show(LightState.RECORDING)
    light.show(LightState.MUTED)
    recording, muted = spi.transfers
    assert recording == [0, 0, 0, 0] + [0xE8, 255, 0, 0] * 3 + [0xFF]  # brightness 8, blue
    assert muted == [0, 0, 0, 0] + [0xE8, 0, 0, 255] * 3 + [0xFF]  # red


def test_a_clip_the_cloud_rejected_lights_the_error_light(data_dir: Path, tmp_path: Path) -> None:
    s = settings_for(data_dir)
    controls = Controls(s.gpio)
    loop = assemble(s, WavFileSource(Scene().pause(0.5).write(tmp_path / "q.wav")), controls).loop
    loop.run()
    assert controls.light.state is LightState.IDLE
    loop.flag_error()  # what the publisher's receipt callback calls on "rejected"
    assert controls.light.state is LightState.ERROR
    assert controls.light.led.color == LIGHT_COLOURS[LightState.ERROR]


class LightWatcher:
    """The WAV as the microphone, noting the light's state as each frame is read: the state it
    shows while that frame's audio is being captured (set by the frame before)."""

    def __init__(self, source: WavFileSource, controls: Controls) -> None:
        self.source, self.controls = source, controls
        self.lit: list[bool] = []

    @property
    def frames_read(self) -> int:
        return self.source.frames_read

    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def read(self) -> np.ndarray | None:
        self.lit.append(self.controls.light.state is LightState.RECORDING)
        return self.source.read()


def test_the_recording_light_is_on_for_every_kept_frame_but_the_pre_roll_and_off_otherwise(
        data_dir: Path, tmp_path: Path, speech: Speech) -> None:
    scene = (Scene().pause(1.5).speak(speech("alexa"), "wake1").pause(0.3).speak(speech("what time is it"))
             .pause(2.5).speak(speech("the weather was lovely in the park today", "en-gb")).pause(1.5)
             .speak(speech("alexa", "en", 165), "wake2").pause(0.3).speak(speech("turn on the lights")).pause(2.5))
    # (the second wake word differs from the first, or offset_in could find one clip where the other is)
    s = settings_for(data_dir)
    controls = Controls(s.gpio)
    watcher = LightWatcher(WavFileSource(scene.write(tmp_path / "scene.wav")), controls)
    assemble(s, watcher, controls).loop.run()

    clips = clips_in(s)
    assert len(clips) == 2
    frame = 1280
    kept = np.zeros(len(watcher.lit), dtype=bool)
    pre_roll = np.zeros(len(watcher.lit), dtype=bool)
    for _, audio in clips:
        first = round(offset_in(scene.audio(), audio) * RATE)
        last = first + len(audio)  # exclusive
        frames = range(first // frame, -(-last // frame))
        kept[list(frames)] = True
        # The pre-roll is the audio captured before the wake word was heard: its frames are the
        # clip's first frames, up to the detection frame, and span at most pre_roll_s.
        unlit = [f for f in frames if not watcher.lit[f]]
        assert unlit == list(range(frames.start, frames.start + len(unlit))), "an unlit frame inside a clip"
        assert len(unlit) * frame <= s.recorder.pre_roll_s * RATE + 2 * frame
        pre_roll[unlit] = True
    lit = np.array(watcher.lit)
    assert lit[kept & ~pre_roll].all(), "a kept frame was captured with the light off"
    assert not lit[~kept].any(), "the light was on for a frame that is in no clip"


def test_a_device_with_its_households_key_keeps_no_plaintext_audio_anywhere(data_dir: Path, tmp_path: Path,
                                                                             wake_scene: Scene) -> None:
    """Issue 34: with `recipients` set, the clip's audio is sealed to the household's age key
    before it reaches the spool: the clip opens with the household's identity alone, and no
    file in the device's data dir holds a stretch of the recorded audio, raw or base64. Writing
    the WAV beside the spool (what the leak check exists to catch) fails the check."""
    import pyrage
    from pyrage import x25519

    identity = x25519.Identity.generate()
    s = replace(settings_for(data_dir), recipients=(str(identity.to_public()),))
    run_device(s, wake_scene.write(tmp_path / "scene.wav"))
    [clip] = Spool(s.spool_dir, s.spool.max_bytes).clips()
    env = decode_envelope(clip.read())
    assert env.header.version == 3 and env.header.recipients == s.recipients
    wav = pyrage.decrypt(bytes(env.audio), [identity])
    pcm = np.frombuffer(wav[44:], dtype="<i2")
    assert offset_in(wake_scene.audio(), pcm) >= 0  # it is the recording
    windows = audio_windows(pcm)
    assert len(windows) > 10

    def leaks() -> list[str]:
        return [str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file()
                and any(w in p.read_bytes() for w in windows)]

    assert leaks() == []
    (s.spool_dir / "debug.wav").write_bytes(wav)  # the mutation the check must catch
    assert leaks() == [str((s.spool_dir / "debug.wav").relative_to(data_dir))]
