"""A voice assistant the device serves beside the cloud: Home Assistant, as a Wyoming voice
satellite (satellite/wyoming.py). The device loop tells it what the recorder does through
the four calls of `Satellite`, from the loop's own thread, and must never wait on it: an
adapter hands each call to its own thread. Another protocol (ESPHome's native API, which
linux-voice-assistant and Home Assistant's Voice PE speak) is another adapter behind the
same four calls; the loop does not change.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from earmark.device.controls import LightState


class Satellite(Protocol):
    def woke(self, wake_word: str | None, audio: np.ndarray) -> None:
        """A recording started: the wake word (None: the talk button) and its audio so far
        (int16, 16 kHz mono: the pre-roll up to the wake word's end)."""

    def heard(self, frame: np.ndarray) -> None:
        """The recording's next frame."""

    def ended(self) -> None:
        """The recording ended: kept, dropped for silence, cut by the mute or the mic going."""

    def resting_light(self) -> LightState | None:
        """What the light shows while the device rests (a timer running, an answer playing);
        None leaves it to the loop."""

    def status(self) -> str | None:
        """For the device's status: whether the assistant is connected (None: no assistant)."""


class NoSatellite:
    """The device on its own: nobody to tell."""

    def woke(self, wake_word: str | None, audio: np.ndarray) -> None:
        pass

    def heard(self, frame: np.ndarray) -> None:
        pass

    def ended(self) -> None:
        pass

    def resting_light(self) -> LightState | None:
        return None

    def status(self) -> str | None:
        return None
