"""The hardware edge of the microphone: a fake PyAudio whose input delivers audio in real
time and, like PortAudio, keeps only a few reads' worth for a reader that falls behind
(the rest is lost and the next read reports an overflow). The card can be unplugged and
plugged back; a fresh PyAudio() is what re-enumerates, as with the real one."""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import numpy as np

PA_INPUT_OVERFLOWED = -9981


class FakeCard:
    """One input device's audio and presence, shared by every FakePyAudio made for it."""

    def __init__(self, audio: np.ndarray, rate: int = 16_000, name: str = "USB PnP Sound Device",
                 channels: int = 1, buffer_s: float = 0.25, present: bool = True,
                 extra_inputs: tuple[tuple[str, int], ...] = ()) -> None:
        self.audio = audio if audio.ndim == 2 else audio[:, None]
        self.rate, self.name, self.channels, self.buffer_s = rate, name, channels, buffer_s
        self.extra_inputs = extra_inputs  # (name, channels) listed before this card
        self.present = threading.Event()
        if present:
            self.present.set()
        self.lost_samples = 0  # delivered by the card but never read
        self.opened: list[dict[str, Any]] = []
        self.default_index: int | None = None
        self.started: float | None = None  # the room's clock: the first open; audio goes on meanwhile

    def unplug(self) -> None:
        self.present.clear()

    def plug_in(self) -> None:
        self.present.set()


class FakeStream:
    def __init__(self, card: FakeCard, channels: int, frames_per_buffer: int) -> None:
        self.card, self.channels = card, channels
        self.capacity = max(frames_per_buffer, round(card.buffer_s * card.rate))
        if card.started is None:
            card.started = time.monotonic()
        self.consumed = self._due()  # a stream opened later hears the room from now on
        self.closed = False

    def _due(self) -> int:
        assert self.card.started is not None
        return int((time.monotonic() - self.card.started) * self.card.rate)

    def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
        if not self.card.present.is_set():
            raise OSError(-9999, "Unanticipated host error")
        overflowed = False
        if self._due() - self.consumed > self.capacity:  # the reader fell behind: PortAudio drops
            dropped = self._due() - self.consumed - self.capacity
            self.consumed += dropped
            self.card.lost_samples += dropped
            overflowed = True
        while self._due() - self.consumed < n:
            time.sleep(min(0.01, (n - (self._due() - self.consumed)) / self.card.rate))
            if not self.card.present.is_set():
                raise OSError(-9999, "Unanticipated host error")
        start, self.consumed = self.consumed, self.consumed + n
        if overflowed and exception_on_overflow:
            self.card.lost_samples += n
            raise OSError(PA_INPUT_OVERFLOWED, "Input overflowed")
        block = np.zeros((n, self.card.audio.shape[1]), dtype=np.int16)
        part = self.card.audio[start:start + n]
        block[:len(part)] = part
        out = np.zeros((n, self.channels), dtype=np.int16)
        out[:, :min(self.channels, block.shape[1])] = block[:, :self.channels]
        return out.astype("<i2").tobytes()

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakePyAudio:
    def __init__(self, card: FakeCard) -> None:
        self.card = card
        self.terminated = False
        inputs = [*card.extra_inputs, *([(card.name, card.channels)] if card.present.is_set() else [])]
        self.devices = [{"index": i, "name": name, "maxInputChannels": ch, "defaultSampleRate": 44100.0}
                        for i, (name, ch) in enumerate(inputs)]

    def get_device_count(self) -> int:
        return len(self.devices)

    def get_device_info_by_index(self, i: int) -> dict[str, Any]:
        return self.devices[i]

    def get_default_input_device_info(self) -> dict[str, Any]:
        if self.card.default_index is None or self.card.default_index >= len(self.devices):
            raise OSError(errno.ENODEV, "No Default Input Device Available")
        return self.devices[self.card.default_index]

    def is_format_supported(self, rate: int, input_device: int, input_channels: int, **_: Any) -> bool:
        device = self.devices[input_device]
        if rate != self.card.rate or input_channels > device["maxInputChannels"]:
            raise ValueError("Invalid sample rate" if rate != self.card.rate else "Invalid number of channels")
        return True

    def open(self, **kwargs: Any) -> FakeStream:
        if not self.card.present.is_set() or self.devices[kwargs["input_device_index"]]["name"] != self.card.name:
            raise OSError(-9996, "Invalid input device (no default output device)")
        self.card.opened.append(kwargs)
        return FakeStream(self.card, kwargs["channels"], kwargs["frames_per_buffer"])

    def terminate(self) -> None:
        self.terminated = True
