"""Audio in: one small source interface, and the conversion every source shares.

Every source delivers the same thing: 16 kHz mono int16 frames of 1280 samples (80 ms),
the unit openWakeWord works in. Conversion order matters: the configured channel is picked
out first, then the sample width is normalised, then the rate is converted.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Protocol

import numpy as np

from device.resample import TARGET_RATE, StreamingResampler

FRAME_SAMPLES = 1280
FRAME_SECONDS = FRAME_SAMPLES / TARGET_RATE


class AudioError(RuntimeError):
    """An audio input a user can fix (missing file, unknown mic); the message says how."""


class AudioSource(Protocol):
    """Opened with `start`, closed with `stop`; while stopped no audio is read at all."""

    frames_read: int

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self) -> np.ndarray | None:
        """The next frame, or None when the input has ended for good."""
        ...


def to_int16(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM of 1-4 bytes per sample to int16 (keeping the top 16 bits)."""
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if width == 1:  # 8-bit WAV is unsigned
        return ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        return (b[:, 1].astype(np.uint16) | (b[:, 2].astype(np.uint16) << 8)).view(np.int16)
    if width == 4:
        return (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    raise AudioError(f"unsupported sample width of {width} bytes")


class FrameConverter:
    """Raw interleaved PCM at any rate, width and channel count in; 80 ms frames out."""

    def __init__(self, rate: int, channels: int, width: int, channel: int = 0) -> None:
        if not 0 <= channel < channels:
            raise AudioError(
                f"channel {channel} was configured but the input has {channels} channel(s) "
                f"(0..{channels - 1})"
            )
        self.channels, self.width, self.channel = channels, width, channel
        self._resampler = StreamingResampler(rate)
        self._pending = np.zeros(0, dtype=np.int16)
        self._partial = b""

    def push(self, raw: bytes) -> list[np.ndarray]:
        raw = self._partial + raw
        whole = len(raw) - len(raw) % (self.width * self.channels)
        raw, self._partial = raw[:whole], raw[whole:]
        picked = to_int16(raw, self.width).reshape(-1, self.channels)[:, self.channel]
        converted = self._resampler.process(picked)
        samples = np.clip(np.rint(converted), -32768, 32767).astype(np.int16)
        self._pending = np.concatenate((self._pending, samples))
        count = len(self._pending) // FRAME_SAMPLES
        frames = [self._pending[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES] for i in range(count)]
        self._pending = self._pending[count * FRAME_SAMPLES:]
        return frames

    def flush(self) -> list[np.ndarray]:
        """At the end of the input: the last partial frame, padded with silence."""
        if not len(self._pending):
            return []
        frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        frame[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, dtype=np.int16)
        return [frame]


class WavFileSource:
    """A WAV file as the microphone. Fast by default; `realtime` paces it like a live mic.
    Stopping closes the file (as muting closes a mic); starting again resumes where it was."""

    def __init__(self, path: Path, channel: int = 0, realtime: bool = False) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.frames_read = 0
        self._channel = channel
        self._wav: wave.Wave_read | None = None
        self._position = 0
        self._queue: list[np.ndarray] = []
        self._ended = False
        self._next_due = 0.0
        with self._open() as wav:
            self.rate, self.channels, self.width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            self.duration_s = wav.getnframes() / self.rate
        self._converter = FrameConverter(self.rate, self.channels, self.width, channel)

    def _open(self) -> wave.Wave_read:
        try:
            return wave.open(str(self.path), "rb")
        except FileNotFoundError:
            raise AudioError(f"audio file {self.path} does not exist") from None
        except (wave.Error, EOFError) as exc:
            raise AudioError(
                f"audio file {self.path} is not a PCM WAV file ({exc}); convert it with "
                "`sox IN.wav -b 16 OUT.wav`"
            ) from None

    @property
    def is_open(self) -> bool:
        return self._wav is not None

    def start(self) -> None:
        if self._wav is None:
            self._wav = self._open()
            self._wav.setpos(self._position)
            self._next_due = time.monotonic()

    def stop(self) -> None:
        if self._wav is not None:
            self._position = self._wav.tell()
            self._wav.close()
            self._wav = None

    def read(self) -> np.ndarray | None:
        if self._wav is None:
            raise RuntimeError("read() on a stopped audio source")
        while not self._queue and not self._ended:
            raw = self._wav.readframes(FRAME_SAMPLES)
            if not raw:
                self._ended = True
                self._queue.extend(self._converter.flush())
                break
            self._queue.extend(self._converter.push(raw))
        if not self._queue:
            return None
        if self.realtime:
            self._next_due += FRAME_SECONDS
            delay = self._next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.frames_read += 1
        return self._queue.pop(0)
