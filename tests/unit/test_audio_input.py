"""Audio in, on synthetic audio: the streaming resampler, frame conversion, unreadable WAVs,
and the microphone's device and rate selection (a fake PyAudio stands in for the sound card)."""

from __future__ import annotations

import contextlib
import errno
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earmark.device.audio.microphone import MicInfo, Microphone, MicUnavailable, choose_mic
from earmark.device.audio.resample import StreamingResampler
from earmark.device.audio.source import FRAME_SAMPLES, AudioError, FrameConverter, SourceInterrupted, WavFileSource
from earmark.wire.errors import ConfigError
from tests.support.fakeaudio import FakeCard, FakePyAudio
from tests.support.speech import RATE, tone, write_wav


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampler_output_does_not_depend_on_chunking(rate: int) -> None:
    x = tone(rate, 2.0, 1000.0).astype(np.float64)
    whole = StreamingResampler(rate).process(x)
    resampler, rng, parts, i = StreamingResampler(rate), np.random.default_rng(rate), [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        parts.append(resampler.process(x[i:i + n]))
        i += n
    pieces = np.concatenate(parts)
    assert len(pieces) == len(whole)
    assert abs(len(whole) - 2 * RATE) <= 2
    np.testing.assert_allclose(pieces, whole, atol=1e-6)
    spectrum = np.abs(np.fft.rfft(whole[800:16800]))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over 16000 samples: the tone stays at 1 kHz


def test_resampler_removes_content_above_the_new_nyquist() -> None:
    alias = StreamingResampler(48000).process(tone(48000, 1.0, 12000.0).astype(np.float64))
    assert np.max(np.abs(alias[200:-200])) < 12000 * 0.05


def test_stopping_a_file_source_closes_it_and_starting_resumes(tmp_path: Path) -> None:
    audio = tone(RATE, 1.0)
    source = WavFileSource(write_wav(tmp_path / "t.wav", audio))
    source.start()
    first = source.read()
    source.stop()
    assert not source.is_open
    with pytest.raises(RuntimeError):
        source.read()
    source.start()
    rest = []
    while (frame := source.read()) is not None:
        rest.append(frame)
    joined = np.concatenate([first, *rest])
    np.testing.assert_array_equal(joined[: len(audio)], audio)
    assert source.frames_read == 1 + len(rest)


def test_an_unreadable_wav_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not a wav file at all")
    with pytest.raises(AudioError, match="not a usable WAV file"):
        WavFileSource(junk)
    with pytest.raises(AudioError, match="does not exist"):
        WavFileSource(tmp_path / "missing.wav")


MICS = [MicInfo(0, "bcm2835 Headphones", 0, 44100), MicInfo(1, "USB PnP Sound Device: Audio", 1, 44100),
        MicInfo(2, "seeed-2mic-voicecard: bcm2835-i2s-wm8960-hifi", 2, 48000)]


def test_mics_are_chosen_by_index_or_name_substring() -> None:
    assert choose_mic(MICS, "").index == 0
    assert choose_mic(MICS, "", default_index=2).index == 2  # "" is the system default input
    assert choose_mic(MICS, "2").index == 2
    assert choose_mic(MICS, "SEEED").index == 2
    assert choose_mic(MICS, "usb pnp").index == 1
    with pytest.raises(MicUnavailable, match="no input device named like 'respeaker'"):
        choose_mic(MICS, "respeaker")
    with pytest.raises(MicUnavailable, match="no input device with index 7"):
        choose_mic(MICS, "7")
    with pytest.raises(MicUnavailable, match="no audio input device found"):
        choose_mic([], "")


class ChunkStream:
    def __init__(self, chunks: list[bytes | OSError]) -> None:
        self.chunks, self.closed, self.reads = chunks, False, 0

    def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
        self.reads += 1
        if not self.chunks:
            time.sleep(0.05)
            raise OSError(-9999, "Unanticipated host error")
        item = self.chunks.pop(0)
        if isinstance(item, OSError):
            return self.read(n, exception_on_overflow) if not exception_on_overflow else _raise(item)
        return item

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _raise(exc: OSError) -> bytes:
    raise exc


class ChunkPyAudio:
    """The hardware edge: a 2-channel card that only opens at 48 kHz."""

    def __init__(self, chunks: list[bytes | OSError]) -> None:
        self.stream = ChunkStream(chunks)
        self.opened: dict[str, Any] = {}

    def get_device_count(self) -> int:
        return 1

    def get_device_info_by_index(self, i: int) -> dict[str, Any]:
        return {"name": "seeed-2mic-voicecard", "maxInputChannels": 2, "defaultSampleRate": 48000.0}

    def is_format_supported(self, rate: int, **_: Any) -> bool:
        if rate != 48000:
            raise ValueError("Invalid sample rate")
        return True

    def get_default_input_device_info(self) -> dict[str, Any]:
        return {"index": 0}

    def open(self, **kwargs: Any) -> ChunkStream:
        self.opened = kwargs
        return self.stream

    def terminate(self) -> None:
        pass


def test_microphone_opens_at_a_supported_rate_picks_its_channel_and_counts_overflows() -> None:
    left, right = tone(48000, 0.5, 440.0), tone(48000, 0.5, 1500.0)
    interleaved = np.stack([left, right], axis=1).astype("<i2").tobytes()
    per_read = FRAME_SAMPLES * 3 * 2 * 2  # one 80 ms frame of 48 kHz stereo 16-bit
    chunks: list[bytes | OSError] = [interleaved[i:i + per_read]
                                     for i in range(0, len(interleaved), per_read)]
    chunks.insert(2, OSError(errno.EIO, "[Errno -9981] Input overflowed"))
    pa = ChunkPyAudio(chunks)
    mic = Microphone("2mic", channel=1, pa_factory=lambda: pa)
    mic.start()
    frames = [mic.read() for _ in range(5)]
    assert mic.rate == 48000
    assert pa.opened["rate"] == 48000 and pa.opened["channels"] == 2
    assert mic.overflows == 1
    assert all(f is not None and f.shape == (FRAME_SAMPLES,) for f in frames)
    audio = np.concatenate([f for f in frames if f is not None])
    assert np.argmax(np.abs(np.fft.rfft(audio[:4000]))) * RATE / 4000 == pytest.approx(1500, abs=8)
    mic.stop()
    assert pa.stream.closed


def test_a_converter_keeps_partial_samples_across_pushes() -> None:
    converter = FrameConverter(RATE, 2, 2, channel=1)
    data = np.stack([np.zeros(FRAME_SAMPLES, np.int16), np.arange(FRAME_SAMPLES, dtype=np.int16)], 1)
    raw = data.astype("<i2").tobytes()
    frames = converter.push(raw[:1001]) + converter.push(raw[1001:])
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0], np.arange(FRAME_SAMPLES))


# -- the capture thread against a real-time card (tests/support/fakeaudio.py) -----------------


def speechlike(seconds: float) -> np.ndarray:
    """A sample counter: every sample says where it came from, so lost audio shows."""
    return (np.arange(round(seconds * RATE)) % 30000).astype(np.int16)


def read_for(mic: Microphone, frames: int) -> np.ndarray:
    return np.concatenate([f for f in (mic.read() for _ in range(frames)) if f is not None])


def first_frame_after_interruptions(mic: Microphone, tries: int = 40) -> np.ndarray | None:
    """The first frame once the mic is back; each read meanwhile raises SourceInterrupted."""
    for _ in range(tries):
        with contextlib.suppress(SourceInterrupted):
            return mic.read()
    return None


def test_the_empty_mic_setting_opens_the_system_default_with_only_the_channels_it_needs() -> None:
    # Issue 12 case 7: PipeWire's "default" reports 64 channels; `device = ""` took the first
    # input listed (here an HDMI capture) and opened every channel it reported.
    card = FakeCard(speechlike(1), name="default", channels=64, extra_inputs=(("HDMI capture", 2),))
    card.default_index = 1
    mic = Microphone("", pa_factory=lambda: FakePyAudio(card))
    mic.start()
    read_for(mic, 2)
    mic.stop()
    assert card.opened[0]["input_device_index"] == 1 and card.opened[0]["channels"] == 1


def test_a_reader_that_stalls_for_a_second_loses_nothing() -> None:
    # The card keeps 0.25 s for a late reader, as PortAudio does; the ring holds 2 s.
    card = FakeCard(speechlike(3))
    mic = Microphone("USB", pa_factory=lambda: FakePyAudio(card))
    mic.start()
    first = read_for(mic, 2)
    time.sleep(1.0)  # e.g. a slow model on a Pi 3
    rest = read_for(mic, 16)
    mic.stop()
    audio = np.concatenate([first, rest])
    np.testing.assert_array_equal(audio, speechlike(3)[:len(audio)])
    assert mic.overruns == 0 and mic.overflows == 0 and card.lost_samples == 0


def test_an_unplugged_mic_interrupts_reads_and_is_reopened_by_name_when_it_returns() -> None:
    # Issue 12 case 4: a stream error stopped the device for good (exit 2, never restarted).
    card = FakeCard(speechlike(30), name="USB PnP Sound Device", extra_inputs=(("HDMI", 2),))
    mic = Microphone("", channel=0, pa_factory=lambda: FakePyAudio(card), retry_s=(0.05, 0.2),
                     read_timeout_s=0.3)
    card.default_index = 1
    mic.start()
    read_for(mic, 2)
    card.unplug()
    with pytest.raises(SourceInterrupted, match=r"failed|waiting for the microphone"):
        while True:
            mic.read()
    assert mic.state in ("lost", "waiting")
    card.extra_inputs = (("HDMI", 2), ("bluetooth headset", 1))  # indexes move while it is away
    card.plug_in()
    frame = first_frame_after_interruptions(mic)
    mic.stop()
    assert frame is not None and mic.reopened == 1
    assert card.opened[-1]["input_device_index"] == 2  # found again by its name
    assert mic.mic is not None and mic.mic.name == "USB PnP Sound Device"


def test_at_boot_the_mic_is_waited_for_not_given_up_on() -> None:
    card = FakeCard(speechlike(5), name="seeed-2mic-voicecard", present=False)
    mic = Microphone("seeed", pa_factory=lambda: FakePyAudio(card), retry_s=(0.05, 0.2), read_timeout_s=0.2)
    mic.start()
    with pytest.raises(SourceInterrupted, match="waiting for the microphone"):
        mic.read()
    card.plug_in()
    frame = first_frame_after_interruptions(mic)
    mic.stop()
    assert frame is not None


def test_a_channel_the_mic_does_not_have_is_a_configuration_error() -> None:
    card = FakeCard(speechlike(1), name="USB", channels=2)
    mic = Microphone("USB", channel=3, pa_factory=lambda: FakePyAudio(card))
    mic.start()
    with pytest.raises(ConfigError, match=r"mic\.channel 3"):
        mic.read()
    mic.stop()
