"""Audio in: one small source interface, and the conversion every source shares.

Every source delivers the same thing: 16 kHz mono int16 frames of 1280 samples (80 ms),
the unit openWakeWord works in. Conversion order matters: the configured channel is picked
out first, then the sample width is normalised, then the rate is converted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from earmark.device.audio.resample import TARGET_RATE, StreamingResampler
from earmark.device.audio.wavfile import WavError, WavInfo, open_wav
from earmark.wire.errors import TransientError, UsageError

FRAME_SAMPLES = 1280
FRAME_SECONDS = FRAME_SAMPLES / TARGET_RATE


class AudioError(UsageError, RuntimeError):
    """An audio input a user can fix (missing file, unknown mic); the message says how."""


class SourceInterrupted(TransientError):
    """A live input has no audio right now (mic lost, not there yet, stalled); ask again.
    The message says why. The loop handles it; it never ends a command."""


class AudioSource(Protocol):
    """Opened with `start`, closed with `stop`; while stopped no audio is read at all.
    `read` may raise SourceInterrupted while a live input is unavailable."""

    frames_read: int

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self) -> np.ndarray | None:
        """The next frame, or None when the input has ended for good."""
        ...


def to_int16(raw: bytes, width: int, is_float: bool = False) -> np.ndarray:
    """Little-endian PCM of 1-4 bytes per sample (or float32) to int16, keeping the top 16 bits."""
    if is_float:
        scaled = np.rint(np.frombuffer(raw, dtype="<f4").astype(np.float64) * 32767)
        return np.asarray(np.clip(scaled, -32768, 32767), dtype=np.int16)
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

    def __init__(self, rate: int, channels: int, width: int, channel: int = 0,
                 is_float: bool = False) -> None:
        if not 0 <= channel < channels:
            raise AudioError(
                f"channel {channel} was configured but the input has {channels} channel(s) "
                f"(0..{channels - 1})"
            )
        self.channels, self.width, self.channel, self.is_float = channels, width, channel, is_float
        self._resampler = StreamingResampler(rate)
        self._pending = np.zeros(0, dtype=np.int16)
        self._partial = b""

    def push(self, raw: bytes) -> list[np.ndarray]:
        raw = self._partial + raw
        whole = len(raw) - len(raw) % (self.width * self.channels)
        raw, self._partial = raw[:whole], raw[whole:]
        picked = to_int16(raw, self.width, self.is_float).reshape(-1, self.channels)[:, self.channel]
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
        self._file: BinaryIO | None = None
        self._position = 0  # bytes of audio data consumed
        self._queue: list[np.ndarray] = []
        self._ended = False
        self._next_due = 0.0
        f, self.info = self._open()
        f.close()
        self._converter = FrameConverter(self.info.rate, self.info.channels, self.info.width, channel,
                                         self.info.is_float)

    def _open(self) -> tuple[BinaryIO, WavInfo]:
        try:
            return open_wav(self.path)
        except FileNotFoundError:
            raise AudioError(f"audio file {self.path} does not exist") from None
        except WavError as exc:
            raise AudioError(
                f"audio file {self.path} is not a usable WAV file ({exc}); convert it with "
                "`sox IN -b 16 OUT.wav`"
            ) from None

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def start(self) -> None:
        if self._file is None:
            self._file, _ = self._open()
            self._file.seek(self.info.data_offset + self._position)
            self._next_due = time.monotonic()

    def stop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self) -> np.ndarray | None:
        if self._file is None:
            raise RuntimeError("read() on a stopped audio source")
        chunk = FRAME_SAMPLES * self.info.frame_bytes
        while not self._queue and not self._ended:
            raw = self._file.read(min(chunk, self.info.data_bytes - self._position))
            self._position += len(raw)
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
