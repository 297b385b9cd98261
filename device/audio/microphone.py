"""A live microphone through PyAudio (PortAudio/ALSA). Runs on the Pi; here only its
selection logic is exercised, with a fake PyAudio at the hardware edge."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from earmark.device.audio.resample import TARGET_RATE
from earmark.device.audio.source import FRAME_SAMPLES, AudioError, FrameConverter
from earmark.wire.errors import EXIT_TEMPFAIL, TransientError

log = logging.getLogger(__name__)
# Rates tried, in order, when the configured rate is 0 (16 kHz avoids resampling).
CANDIDATE_RATES = (16_000, 48_000, 44_100, 32_000, 22_050, 8_000)


@dataclass(frozen=True)
class MicInfo:
    index: int
    name: str
    channels: int
    default_rate: int


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """PortAudio's ALSA and JACK probes print dozens of lines straight to fd 2 while they
    look for sound cards; they are noise to a user, so fd 2 points at /dev/null meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class MicUnavailable(AudioError, TransientError):
    """No microphone is there (yet): unplugged, or not enumerated this early in boot."""

    exit_code = EXIT_TEMPFAIL


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError:
        raise AudioError(
            "PyAudio is not installed: install the device extra (pip install 'earmark[device]')"
        ) from None
    with _native_stderr_silenced():
        return pyaudio.PyAudio()


def list_mics(pa: Any | None = None) -> list[MicInfo]:
    pa = pa or _pyaudio()
    mics = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get("maxInputChannels", 0)) > 0:
            mics.append(MicInfo(i, str(info["name"]), int(info["maxInputChannels"]),
                                int(info["defaultSampleRate"])))
    return mics


def choose_mic(mics: list[MicInfo], wanted: str) -> MicInfo:
    """By index ("2"), by name substring ("ReSpeaker", case-insensitive), or the first input."""
    if not mics:
        raise MicUnavailable("no audio input device found: is the microphone plugged in? "
                         "(`earmark-device mics` lists inputs)")
    if wanted == "":
        return mics[0]
    if wanted.isdigit():
        for mic in mics:
            if mic.index == int(wanted):
                return mic
        raise AudioError(f"no input device with index {wanted}; `earmark-device mics` lists inputs")
    matches = [m for m in mics if wanted.lower() in m.name.lower()]
    if not matches:
        raise AudioError(f"no input device named like {wanted!r}; `earmark-device mics` lists inputs")
    return matches[0]


class Microphone:
    """Opens the chosen input at a rate it supports and converts to 16 kHz mono frames.
    `stop` closes the PortAudio stream: a muted device reads nothing from the hardware."""

    def __init__(self, wanted: str = "", channel: int = 0, rate: int = 0, pa: Any | None = None) -> None:
        self._pa = pa or _pyaudio()
        self.mic = choose_mic(list_mics(self._pa), wanted)
        if channel >= self.mic.channels:
            raise AudioError(f"mic.channel {channel} but {self.mic.name!r} has "
                             f"{self.mic.channels} channel(s)")
        self.channel = channel
        self.rate = rate or self._supported_rate()
        self.frames_read = 0
        self.overflows = 0
        self._stream: Any = None
        self._converter = FrameConverter(self.rate, self.mic.channels, 2, channel)
        self._queue: list[np.ndarray] = []

    def _supported_rate(self) -> int:
        import pyaudio

        for rate in (*CANDIDATE_RATES, self.mic.default_rate):
            try:
                if self._pa.is_format_supported(rate, input_device=self.mic.index,
                                                input_channels=self.mic.channels,
                                                input_format=pyaudio.paInt16):
                    return rate
            except ValueError:
                continue
        raise AudioError(f"{self.mic.name!r} supports none of the rates {CANDIDATE_RATES}")

    def start(self) -> None:
        if self._stream is None:
            import pyaudio

            per_read = max(1, FRAME_SAMPLES * self.rate // TARGET_RATE)
            self._stream = self._pa.open(format=pyaudio.paInt16, channels=self.mic.channels,
                                         rate=self.rate, input=True,
                                         input_device_index=self.mic.index,
                                         frames_per_buffer=per_read)
            self._per_read = per_read
            log.info("microphone %r open at %d Hz, %d channel(s), keeping channel %d",
                     self.mic.name, self.rate, self.mic.channels, self.channel)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
            self._stream = None
            self._queue.clear()

    def read(self) -> np.ndarray | None:
        if self._stream is None:
            raise RuntimeError("read() on a stopped microphone")
        while not self._queue:
            try:
                raw = self._stream.read(self._per_read, exception_on_overflow=True)
            except OSError as exc:
                # An overflow means we fell behind and PortAudio dropped input; count it, go on.
                if "overflow" not in str(exc).lower() and getattr(exc, "errno", None) != -9981:
                    raise
                self.overflows += 1
                log.warning("input overflow #%d: the device fell behind and lost some audio",
                            self.overflows)
                raw = self._stream.read(self._per_read, exception_on_overflow=False)
            self._queue.extend(self._converter.push(raw))
        self.frames_read += 1
        return self._queue.pop(0)
