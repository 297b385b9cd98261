"""A live microphone through PyAudio (PortAudio/ALSA), read on its own thread.

The capture thread does nothing but read the stream and convert it into 80 ms frames in a
ring buffer (2 s by default), so a slow step on the audio path (a wake-word model on a
Pi 3, a full disk) delays frames instead of losing them; frames lost anyway are counted
(`overruns`). When the stream fails (a USB mic unplugged, a HAT whose driver resets) the
thread closes it, re-enumerates the inputs and reopens the same one by name, backing off
up to 10 s; at boot it waits the same way for a mic not enumerated yet. Meanwhile `read`
raises `SourceInterrupted`, so the loop can keep what it had, show the error light and
report it. Only a configuration that cannot work (a channel the mic does not have, no
usable rate) stops the device.

Runs on the Pi; here it is exercised with a fake PyAudio at the hardware edge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from earmark.device.audio.resample import TARGET_RATE
from earmark.device.audio.source import FRAME_SAMPLES, FRAME_SECONDS, FrameConverter, SourceInterrupted
from earmark.wire.errors import ConfigError, TransientError

log = logging.getLogger(__name__)
# Rates tried, in order, when the configured rate is 0 (16 kHz avoids resampling).
CANDIDATE_RATES = (16_000, 48_000, 44_100, 32_000, 22_050, 8_000)
PA_INT16 = 8  # pyaudio.paInt16
PA_INPUT_OVERFLOWED = -9981


@dataclass(frozen=True)
class MicInfo:
    index: int
    name: str
    channels: int
    default_rate: int


class MicUnavailable(TransientError):
    """No microphone matches (yet): unplugged, or not enumerated this early in boot. The
    capture thread waits for it; it never stops the device."""


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


def open_pyaudio() -> Any:
    """A fresh PortAudio session: it enumerates devices only when it starts."""
    try:
        import pyaudio
    except ImportError:
        raise ConfigError(
            "PyAudio is not installed: install the device extra (pip install 'earmark[device]')"
        ) from None
    with _native_stderr_silenced():
        return pyaudio.PyAudio()


def list_mics(pa: Any | None = None) -> list[MicInfo]:
    pa = pa or open_pyaudio()
    mics = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get("maxInputChannels", 0)) > 0:
            mics.append(MicInfo(i, str(info["name"]), int(info["maxInputChannels"]),
                                int(info["defaultSampleRate"])))
    return mics


def default_input_index(pa: Any) -> int | None:
    """The system's default input (ALSA's `default`, PulseAudio's or PipeWire's), if any."""
    try:
        return int(pa.get_default_input_device_info()["index"])
    except (OSError, KeyError, ValueError):
        return None


def choose_mic(mics: list[MicInfo], wanted: str, default_index: int | None = None) -> MicInfo:
    """By index ("2"), by name substring ("ReSpeaker", case-insensitive), or ("") the system
    default input, else the first one."""
    if not mics:
        raise MicUnavailable("no audio input device found: is the microphone plugged in? "
                             "(`earmark-device mics` lists inputs)")
    if wanted == "":
        return next((m for m in mics if m.index == default_index), mics[0])
    if wanted.isdigit():
        for mic in mics:
            if mic.index == int(wanted):
                return mic
        raise MicUnavailable(f"no input device with index {wanted}; `earmark-device mics` lists inputs")
    matches = [m for m in mics if wanted.lower() in m.name.lower()]
    if not matches:
        raise MicUnavailable(f"no input device named like {wanted!r}; `earmark-device mics` lists inputs")
    return matches[0]


def choose_format(pa: Any, mic: MicInfo, channel: int, rate: int) -> tuple[int, int]:
    """(rate, channels) to open at: the configured rate or the first candidate the device
    takes, with the fewest channels that include `channel`. Sound servers (PulseAudio,
    PipeWire) report 32-128 channels and mix to any count; ALSA hw devices want their own."""
    if channel >= mic.channels:
        raise ConfigError(f"mic.channel {channel} but {mic.name!r} has {mic.channels} channel(s)")
    counts = sorted({c for c in (channel + 1, 2, 4, 6, 8) if channel < c <= mic.channels} | {mic.channels})
    for candidate in (rate,) if rate else (*CANDIDATE_RATES, mic.default_rate):
        for count in counts:
            try:
                if pa.is_format_supported(candidate, input_device=mic.index, input_channels=count,
                                          input_format=PA_INT16):
                    return candidate, count
            except ValueError:
                continue
    raise ConfigError(f"{mic.name!r} supports none of the rates {(rate,) if rate else CANDIDATE_RATES}")


class Microphone:
    """Frames from a live input; see the module docstring. `stop` closes the PortAudio stream:
    a muted device reads nothing from the hardware."""

    def __init__(self, wanted: str = "", channel: int = 0, rate: int = 0,
                 pa_factory: Callable[[], Any] = open_pyaudio, ring_s: float = 2.0,
                 retry_s: tuple[float, float] = (0.5, 10.0), read_timeout_s: float = 1.0) -> None:
        self.wanted, self.channel, self.wanted_rate = wanted, channel, rate
        self._pa_factory = pa_factory
        self._retry_s = retry_s
        self._read_timeout_s = read_timeout_s
        self.frames_read = 0
        self.overflows = 0  # reads PortAudio reported as overflowed
        self.overruns = 0  # frames dropped because the ring was full
        self.reopened = 0
        self.mic: MicInfo | None = None
        self.rate = 0
        self.channels = 0
        self.state = "closed"  # closed, waiting, open, lost
        self.problem = ""
        self._ring: deque[np.ndarray] = deque(maxlen=max(1, round(ring_s / FRAME_SECONDS)))
        self._cond = threading.Condition()
        self._running = False
        self._fatal: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- the loop's side --------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._running, self._fatal = True, None
            self._thread = threading.Thread(target=self._capture, name="microphone", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        with self._cond:
            self._ring.clear()
        self.state = "closed"

    def read(self) -> np.ndarray | None:
        """The next frame. While there is no audio (no mic, a failed stream, a stall) it raises
        SourceInterrupted after `read_timeout_s`, so the caller stays responsive."""
        with self._cond:
            if self._thread is None:
                raise RuntimeError("read() on a stopped microphone")
            self._cond.wait_for(lambda: self._ring or self._fatal is not None, self._read_timeout_s)
            if self._fatal is not None:
                raise self._fatal
            if not self._ring:
                raise SourceInterrupted(self.problem or "no audio from the microphone for "
                                        f"{self._read_timeout_s:.0f} s")
            self.frames_read += 1
            return self._ring.popleft()

    # -- the capture thread -----------------------------------------------------------------

    def _capture(self) -> None:
        delay = self._retry_s[0]
        while self._running:
            pa = stream = None
            try:
                pa = self._pa_factory()
                stream, per_read, converter = self._open(pa)
                delay = self._retry_s[0]
                self._pump(stream, per_read, converter)
            except ConfigError as exc:
                with self._cond:
                    self._fatal = exc
                    self._cond.notify_all()
                return
            except (MicUnavailable, OSError) as exc:
                self._lost(exc)
            finally:
                _close(stream, pa)
            with self._cond:
                self._cond.wait_for(lambda: not self._running, delay)
            delay = min(delay * 2, self._retry_s[1])

    def _open(self, pa: Any) -> tuple[Any, int, FrameConverter]:
        # After the first open, the same mic is found again by its name (indexes change).
        wanted = self.mic.name if self.mic is not None else self.wanted
        mic = choose_mic(list_mics(pa), wanted, default_input_index(pa) if wanted == "" else None)
        rate, channels = choose_format(pa, mic, self.channel, self.wanted_rate)
        per_read = max(1, FRAME_SAMPLES * rate // TARGET_RATE)
        stream = pa.open(format=PA_INT16, channels=channels, rate=rate, input=True,
                         input_device_index=mic.index, frames_per_buffer=per_read)
        if self.state in ("lost", "waiting") and self.mic is not None:
            self.reopened += 1
        self.mic, self.rate, self.channels = mic, rate, channels
        self.state, self.problem = "open", ""
        log.info("microphone %r open at %d Hz, %d of its %d channel(s), keeping channel %d",
                 mic.name, rate, channels, mic.channels, self.channel)
        return stream, per_read, FrameConverter(rate, channels, 2, self.channel)

    def _pump(self, stream: Any, per_read: int, converter: FrameConverter) -> None:
        while self._running:
            try:
                raw = stream.read(per_read, exception_on_overflow=True)
            except OSError as exc:
                if getattr(exc, "errno", None) != PA_INPUT_OVERFLOWED and "overflow" not in str(exc).lower():
                    raise
                self.overflows += 1
                log.warning("input overflow #%d: the capture thread fell behind and lost some audio",
                            self.overflows)
                continue
            frames = converter.push(raw)
            with self._cond:
                for frame in frames:
                    if len(self._ring) == self._ring.maxlen:
                        self.overruns += 1
                    self._ring.append(frame)
                self._cond.notify_all()

    def _lost(self, exc: BaseException) -> None:
        was = self.state
        if isinstance(exc, MicUnavailable):
            self.state, self.problem = "waiting", f"waiting for the microphone: {exc}"
        else:
            name = self.mic.name if self.mic is not None else self.wanted
            self.state, self.problem = "lost", f"microphone {name!r} failed: {exc}"
        if self.state != was:  # the loop reports it (once per interruption); here only for debugging
            log.debug("%s; retrying", self.problem)


def _close(stream: Any, pa: Any) -> None:
    with contextlib.suppress(Exception):
        if stream is not None:
            stream.stop_stream()
            stream.close()
    with contextlib.suppress(Exception):
        if pa is not None:
            pa.terminate()
