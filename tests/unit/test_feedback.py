"""Feedback sounds: played whole through the output on their own thread, never blocking the
caller; a bad file is a configuration error at start."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from earmark.device.feedback import SoundPlayer
from earmark.wire.errors import ConfigError
from tests.support.speech import tone, write_wav


class Speaker:
    def __init__(self, delay: threading.Event) -> None:
        self.written: list[bytes] = []
        self.opened: list[dict[str, Any]] = []
        self.delay = delay

    def get_format_from_width(self, width: int) -> int:
        return {2: 8}[width]

    def open(self, **kwargs: Any) -> Speaker:
        self.opened.append(kwargs)
        return self

    def write(self, data: bytes) -> None:
        self.delay.wait(5)  # a slow speaker
        self.written.append(data)

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass


def test_sounds_play_whole_and_play_never_blocks(tmp_path: Path) -> None:
    beep = tone(16000, 0.2, 880.0)
    speaker = Speaker(threading.Event())
    player = SoundPlayer({"wake": write_wav(tmp_path / "wake.wav", beep)}, pa_factory=lambda: speaker)
    player.play("wake")  # returns at once although the speaker has not finished
    player.play("done")  # no sound configured for it: nothing
    assert speaker.written == []
    speaker.delay.set()
    player.close()
    assert speaker.written == [beep.astype("<i2").tobytes()]
    assert speaker.opened == [{"format": 8, "channels": 1, "rate": 16000, "output": True}]


def test_a_missing_sound_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="feedback sound"):
        SoundPlayer({"wake": tmp_path / "nope.wav"}, pa_factory=lambda: None)
