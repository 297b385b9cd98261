"""Optional feedback sounds: a WAV played when a recording starts (the wake sound) and when
a clip is kept (the done sound), through PyAudio's output on a thread of their own, so the
audio path never waits for the speaker. Files are read once at start; a missing or
unreadable one is a configuration error then, not a surprise at the first wake word.

The wake sound is heard by the microphone too and ends up in the clip, as on every voice
assistant; keep it short.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from earmark.device.audio.wavfile import WavError, open_wav
from earmark.wire.errors import ConfigError

log = logging.getLogger(__name__)


class Sound:
    def __init__(self, path: Path) -> None:
        try:
            f, self.info = open_wav(path)
        except (OSError, WavError) as exc:
            raise ConfigError(f"feedback sound {path}: {exc}") from None
        with f:
            f.seek(self.info.data_offset)
            self.data = f.read(self.info.data_bytes)
        if self.info.is_float:
            raise ConfigError(f"feedback sound {path}: use 16-bit PCM (`sox IN -b 16 OUT.wav`)")


class SoundPlayer:
    """Plays sounds one after another on its own thread; `play` never blocks."""

    def __init__(self, sounds: dict[str, Path], pa_factory: Callable[[], Any] | None = None) -> None:
        from earmark.device.audio.microphone import open_pyaudio

        self.sounds = {event: Sound(path) for event, path in sounds.items()}
        self._pa_factory = pa_factory or open_pyaudio
        self._queue: queue.Queue[Sound | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, name="feedback", daemon=True)
        self._thread.start()
        self.played = 0

    def play(self, event: str) -> None:
        sound = self.sounds.get(event)
        if sound is not None:
            with contextlib.suppress(queue.Full):  # a backlog of beeps helps nobody
                self._queue.put_nowait(sound)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        pa = None
        while (sound := self._queue.get()) is not None:
            try:
                pa = pa or self._pa_factory()
                stream = pa.open(format=pa.get_format_from_width(sound.info.width), channels=sound.info.channels,
                                 rate=sound.info.rate, output=True)
                stream.write(sound.data)
                stream.stop_stream()
                stream.close()
                self.played += 1
            except OSError as exc:  # no speaker is no reason to stop listening
                log.warning("feedback sound not played: %s", exc)
        if pa is not None:
            pa.terminate()
