"""The device as Home Assistant's voice satellite (issue 35), driven as Home Assistant drives
one: the `wyoming` package's client, `run-satellite` first, a ping 2 s after each pong. Real
models, espeak-ng speech read at a live microphone's pace, gpiozero's MockFactory pins."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Info
from wyoming.pipeline import RunPipeline
from wyoming.satellite import PauseSatellite
from wyoming.timer import TimerFinished, TimerStarted
from wyoming.wake import Detection

from earmark.device.assembly import AssembledDevice, assemble
from earmark.device.audio.source import WavFileSource
from earmark.device.controls import Controls, LightState
from earmark.device.settings import DeviceSettings, SatelliteSettings
from tests.integration.test_device_loop import clips_in, press, settings_for
from tests.support.broker import free_port
from tests.support.home_assistant import HomeAssistant
from tests.support.speech import RATE, Scene

Speech = Callable[..., np.ndarray]


def satellite_settings(data_dir: Path, tmp_path: Path, **changes: object) -> DeviceSettings:
    s = settings_for(data_dir)
    return replace(s, satellite=SatelliteSettings(wyoming=f"tcp://127.0.0.1:{free_port()}", zeroconf=False,
                                                  speaker_file=str(tmp_path / "speaker.wav")), **changes)


@contextmanager
def running(s: DeviceSettings, wav: Path) -> Iterator[tuple[AssembledDevice, threading.Thread]]:
    """The device in a thread: it reads `wav` at a live mic's pace once Home Assistant runs it."""
    stop = threading.Event()
    device = assemble(s, WavFileSource(wav, realtime=True), Controls(s.gpio), stop=stop)
    assert device.satellite is not None

    def run() -> None:
        assert device.satellite is not None
        if device.satellite.wait_running(stop):
            device.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield device, thread
    finally:
        stop.set()
        thread.join(timeout=60)
        device.close()


def audio_of(chunks: list[AudioChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.audio for c in chunks), dtype="<i2")


def test_a_request_reaches_home_assistant_and_its_answer_plays_while_the_clip_is_kept(
        data_dir: Path, tmp_path: Path, speech: Speech) -> None:
    request = speech("what time is it in new york and in london today")
    wav = Scene().pause(1).speak(speech("alexa")).pause(0.2).speak(request).pause(2.5).write(tmp_path / "a.wav")
    s = satellite_settings(data_dir, tmp_path)
    answer = (0.2 * 32767 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype("<i2").tobytes()

    async def home_assistant() -> tuple[HomeAssistant, dict[str, float]]:
        ha = await HomeAssistant.connect(wyoming_port(s))
        info = Info.from_event((await ha.wait_for("info")).event)
        assert info.satellite is not None and info.satellite.installed and info.satellite.name == "test-device"
        assert info.satellite.has_vad and info.satellite.active_wake_words == ["alexa"]
        assert [(m.name, m.phrase) for w in info.wake for m in w.models] == [("alexa", "alexa")]
        detected = await ha.wait_for("detection")
        assert Detection.from_event(detected.event).name == "alexa"
        run = RunPipeline.from_event((await ha.wait_for("run-pipeline", detected.at - 1)).event)
        assert (run.start_stage, run.end_stage) == ("asr", "tts")
        # Home Assistant's speech-to-text has what it needs once 2 s of the request came: the
        # stream must stop within 0.5 s of the transcript (a chunk is 80 ms of live audio).
        while len(audio_of([AudioChunk.from_event(a.event) for a in ha.of("audio-chunk")])) < 2.5 * RATE:
            await ha.wait_for("audio-chunk", ha.events[-1].at)
        transcribed = time.monotonic()
        await ha.send(Transcript(text="what time is it in new york and in london today").event())
        await asyncio.sleep(1.5)
        last_chunk = ha.of("audio-chunk")[-1].at
        # The answer, as Home Assistant streams text-to-speech: 1 s at 22,050 Hz, then `played`.
        await ha.send(AudioStart(rate=22050, width=2, channels=1).event())
        for i in range(0, len(answer), 2048):
            await ha.send(AudioChunk(rate=22050, width=2, channels=1, audio=answer[i:i + 2048]).event())
        sent = time.monotonic()
        await ha.send(AudioStop().event())
        played = await ha.wait_for("played", sent)
        await asyncio.sleep(0.5)
        await ha.close()
        return ha, {"transcribed": transcribed, "last_chunk": last_chunk, "played": played.at}

    with running(s, wav) as (_, thread):
        ha, times = asyncio.run(home_assistant())
        thread.join(timeout=60)
    chunks = [AudioChunk.from_event(a.event) for a in ha.of("audio-chunk")]
    assert all((c.rate, c.width, c.channels) == (16000, 2, 1) for c in chunks)
    assert times["last_chunk"] - times["transcribed"] < 0.5, "the stream went on after the transcript"
    assert not ha.of("audio-stop")  # Home Assistant ended the request: nothing more to stop
    assert ha.pings >= 2 and ha.pongs >= ha.pings - 1 and not ha.late_pong
    with wave.open(str(tmp_path / "speaker.wav")) as played:
        assert (played.getframerate(), played.getsampwidth(), played.getnchannels()) == (22050, 2, 1)
        assert played.readframes(played.getnframes()) == answer
    # The whole request is also the household's clip, sealed and spooled as ever, and what
    # Home Assistant heard is the same audio, from the same ring, pre-roll first.
    [(header, clip)] = clips_in(s)
    streamed = audio_of(chunks)
    assert header["wake_word"] == "alexa" and len(clip) > len(streamed) >= 2.5 * RATE
    assert np.array_equal(clip[: len(streamed)], streamed)


def wyoming_port(s: DeviceSettings) -> int:
    return int(s.satellite.wyoming.rsplit(":", 1)[1])


def test_the_stream_ends_with_the_recording_and_timers_errors_and_pause_show_on_the_light(
        data_dir: Path, tmp_path: Path, speech: Speech, caplog: pytest.LogCaptureFixture) -> None:
    alexa = speech("alexa")
    wav = (Scene().pause(1).speak(alexa).pause(0.2).speak(speech("turn on the light")).pause(3)
           .speak(alexa).pause(0.2).speak(speech("set a timer")).pause(3).write(tmp_path / "b.wav"))
    s = satellite_settings(data_dir, tmp_path)

    async def home_assistant(light: Callable[[], LightState]) -> HomeAssistant:
        ha = await HomeAssistant.connect(wyoming_port(s))
        first = await ha.wait_for("run-pipeline")
        stopped = await ha.wait_for("audio-stop", first.at)  # the recording's own end
        await ha.send(TimerStarted(id="t1", total_seconds=60, name="tea").event())
        await wait_for_light(light, LightState.TIMER)
        await ha.send(TimerFinished(id="t1").event())
        await wait_for_light(light, LightState.TIMER_DONE)
        await ha.send(Error(text="no intent matched", code="intent").event())
        await wait_for_light(light, LightState.ERROR)
        # Paused, the next request is not streamed (and is still kept).
        await ha.send(PauseSatellite().event())
        await asyncio.sleep(4.0)
        assert not [a for a in ha.of("run-pipeline") if a.at > stopped.at]
        await ha.close()
        return ha

    caplog.set_level(logging.INFO)
    with running(s, wav) as (device, thread):
        ha = asyncio.run(home_assistant(lambda: device.controls.light.state))
        thread.join(timeout=60)
    assert len(ha.of("run-pipeline")) == 1 and len(ha.of("audio-stop")) == 1
    with wave.open(str(tmp_path / "speaker.wav")) as beep:  # the timer's beeps, on the speaker
        assert beep.getframerate() == 16000 and beep.getnframes() > 0.5 * 16000
    assert [h["wake_word"] for h, _ in clips_in(s)] == ["alexa", "alexa"]
    assert "paused the satellite" in caplog.text


async def wait_for_light(light: Callable[[], LightState], state: LightState) -> None:
    deadline = time.monotonic() + 5
    while light() is not state:
        assert time.monotonic() < deadline, f"the light shows {light()}, not {state}"
        await asyncio.sleep(0.02)


def test_bad_events_are_one_line_each_and_a_reconnecting_home_assistant_gets_a_working_satellite(
        data_dir: Path, tmp_path: Path, speech: Speech, caplog: pytest.LogCaptureFixture) -> None:
    alexa = speech("alexa")
    wav = (Scene().pause(1).speak(alexa).pause(0.2).speak(speech("what is the weather")).pause(3)
           .speak(alexa).pause(0.2).speak(speech("play some music")).pause(3).write(tmp_path / "c.wav"))
    s = satellite_settings(data_dir, tmp_path)
    port = wyoming_port(s)

    async def raw(line: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(line)
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()

    async def home_assistant() -> HomeAssistant:
        ha = await HomeAssistant.connect(port)
        first = await ha.wait_for("run-pipeline")
        await ha.wait_for("audio-chunk", first.at)
        await ha.close()  # gone mid-request
        await raw(b"this is not wyoming\n")
        await raw(b'{"type": "audio-chunk", "payload_length": 999999999999}\n')
        again = await HomeAssistant.connect(port, describe_first=True)  # other clients' order
        await again.send(AudioStart(rate=22050, width=3, channels=7).event())  # a speaker cannot take this
        await again.send(AudioStop().event())
        await again.wait_for("played")
        await again.send(Event(type="no-such-event"))
        second = await again.wait_for("run-pipeline", first.at + 1)
        await again.wait_for("audio-stop", second.at)
        await again.close()
        return again

    caplog.set_level(logging.INFO)
    with running(s, wav) as (_, thread):
        again = asyncio.run(home_assistant())
        thread.join(timeout=60)
    assert again.of("info") and again.of("detection")
    assert "not Wyoming" in caplog.text and "bytes (the limit is" in caplog.text
    assert "cannot be played" in caplog.text and "ignored an event Home Assistant sent: 'no-such-event'" in caplog.text
    assert [h["wake_word"] for h, _ in clips_in(s)] == ["alexa", "alexa"]  # nothing recorded is lost


def test_the_mute_button_stops_the_stream_and_the_clip(data_dir: Path, tmp_path: Path, speech: Speech) -> None:
    wav = (Scene().pause(1).speak(speech("alexa")).pause(0.2).speak(speech("what time is it in new york and in "
                                                                            "london today")).pause(3)
           .write(tmp_path / "d.wav"))
    s = satellite_settings(data_dir, tmp_path)

    async def home_assistant(device: AssembledDevice) -> tuple[HomeAssistant, float]:
        ha = await HomeAssistant.connect(wyoming_port(s))
        started = await ha.wait_for("run-pipeline")
        await ha.wait_for("audio-chunk", started.at + 0.5)
        press(device.controls.mute.button)
        muted = time.monotonic()
        await ha.wait_for("audio-stop", started.at)
        await asyncio.sleep(1.0)
        press(device.controls.mute.button)  # unmuted: the rest of the file is read
        await ha.close()
        return ha, muted

    with running(s, wav) as (device, thread):
        ha, muted = asyncio.run(home_assistant(device))
        thread.join(timeout=60)
    assert all(a.at < muted + 0.3 for a in ha.of("audio-chunk")), "audio streamed after the mute"
    assert clips_in(s) == [], "a recording cut by the mute is not kept"


def test_the_satellite_is_announced_by_zeroconf_under_the_device_id(tmp_path: Path) -> None:
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    from earmark.device.satellite.speaker import Speaker
    from earmark.device.satellite.wyoming import WyomingSatellite

    speaker = Speaker(tmp_path / "speaker.wav")
    satellite = WyomingSatellite(SatelliteSettings(wyoming=f"tcp://0.0.0.0:{free_port()}"), "attic-pi", ["alexa"],
                                 speaker)
    satellite.start()

    async def browse() -> AsyncServiceInfo | None:
        found: list[str] = []
        zc = AsyncZeroconf()
        browser = AsyncServiceBrowser(zc.zeroconf, "_wyoming._tcp.local.", handlers=[
            lambda zeroconf, service_type, name, state_change: found.append(name)
            if state_change is ServiceStateChange.Added else None])
        deadline = time.monotonic() + 10
        while "attic-pi._wyoming._tcp.local." not in found and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        info = AsyncServiceInfo("_wyoming._tcp.local.", "attic-pi._wyoming._tcp.local.")
        ok = await info.async_request(zc.zeroconf, 3000)
        await browser.async_cancel()
        await zc.async_close()
        return info if ok else None

    try:
        info = asyncio.run(browse())
    finally:
        satellite.close()
        speaker.close()
    assert info is not None and info.port == satellite.port


def test_with_cloud_off_home_assistant_hears_the_request_and_nothing_is_kept(
        data_dir: Path, tmp_path: Path, speech: Speech) -> None:
    """`cloud = false`: an unpaired device with no household key serves Home Assistant and
    keeps no recording (nothing sealed, nothing spooled)."""
    wav = Scene().pause(1).speak(speech("alexa")).pause(0.2).speak(speech("turn on the light")).pause(3) \
        .write(tmp_path / "e.wav")
    s = replace(satellite_settings(data_dir, tmp_path), cloud=False, device_id="", owner_id="", recipients=())
    s.require_identity()  # no identity needed to keep nothing

    async def home_assistant() -> HomeAssistant:
        ha = await HomeAssistant.connect(wyoming_port(s))
        started = await ha.wait_for("run-pipeline")
        await ha.wait_for("audio-stop", started.at)
        info = Info.from_event((await ha.wait_for("info")).event)
        assert info.satellite is not None and info.satellite.name  # the host's name stands in for a device id
        await ha.close()
        return ha

    with running(s, wav) as (_, thread):
        ha = asyncio.run(home_assistant())
        thread.join(timeout=60)
    assert len(ha.of("audio-chunk")) > 10
    assert clips_in(s) == []  # the spool holds nothing
