"""Where a satellite's answers play: the speaker (PyAudio's output, ALSA on a Pi), or a WAV
file (`satellite.speaker_file`: tests and headless devices). An answer is streamed as it
arrives, on the speaker's own thread: `begin`, `write`…, `end`, and `end`'s callback runs once
the last sample has played. An answer in a format the speaker cannot take is skipped, with
one log line, and still ends (Home Assistant waits for `played`).
"""

from __future__ import annotations

import logging
import queue
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WIDTHS = (1, 2, 4)  # bytes per sample a sound card takes (8, 16 and 32-bit PCM)
RATES = (8000, 48_000)


@dataclass(frozen=True)
class Format:
    rate: int
    width: int
    channels: int

    def problem(self) -> str | None:
        if self.width not in WIDTHS:
            return f"{self.width * 8}-bit samples"
        if not 1 <= self.channels <= 2:
            return f"{self.channels} channels"
        if not RATES[0] <= self.rate <= RATES[1]:
            return f"a rate of {self.rate} Hz"
        return None


class Speaker:
    """Plays answers one after another on its own thread; no call blocks."""

    def __init__(self, file: Path | None = None, device: str = "",
                 pa_factory: Callable[[], Any] | None = None) -> None:
        self.file, self.device = file, device
        self._pa_factory = pa_factory
        self._pa: Any = None
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()
        self.played = 0  # answers played to their end

    def begin(self, fmt: Format) -> None:
        self._queue.put(("begin", fmt))

    def write(self, audio: bytes) -> None:
        self._queue.put(("write", audio))

    def end(self, done: Callable[[], None]) -> None:
        """After the answer's last sample has played (or it was skipped), `done` runs."""
        self._queue.put(("end", done))

    def close(self) -> None:
        self._queue.put(("close", None))
        self._thread.join(timeout=5)

    def _run(self) -> None:
        out: Any = None
        skipping = False
        while True:
            kind, value = self._queue.get()
            try:
                if kind == "begin":
                    out = self._close(out)
                    skipping = (why := value.problem()) is not None
                    if why:
                        log.warning("an answer in %s cannot be played: skipped", why)
                    else:
                        out = self._open(value)
                elif kind == "write" and out is not None and not skipping:
                    if isinstance(out, wave.Wave_write):
                        out.writeframes(value)
                    else:
                        out.write(value)
                elif kind == "end":
                    if out is not None:
                        self.played += 1
                    out = self._close(out)
                    value()
                elif kind == "close":
                    self._close(out)
                    if self._pa is not None:
                        self._pa.terminate()
                    return
            except OSError as exc:  # no speaker is no reason to stop serving
                log.warning("answer not played: %s", exc)
                out = None
                if kind == "end":
                    value()

    def _open(self, fmt: Format) -> Any:
        if self.file is not None:
            out = wave.open(str(self.file), "wb")  # noqa: SIM115 (closed at the answer's end)
            out.setnchannels(fmt.channels)
            out.setsampwidth(fmt.width)
            out.setframerate(fmt.rate)
            return out
        from earmark.device.audio.microphone import open_pyaudio

        self._pa = self._pa or (self._pa_factory or open_pyaudio)()
        index = _output_index(self._pa, self.device) if self.device else None
        return self._pa.open(format=self._pa.get_format_from_width(fmt.width), channels=fmt.channels,
                             rate=fmt.rate, output=True, output_device_index=index)

    @staticmethod
    def _close(out: Any) -> Any:
        if isinstance(out, wave.Wave_write):
            out.close()
        elif out is not None:
            out.stop_stream()  # returns once what was written has played
            out.close()
        return None


def _output_index(pa: Any, wanted: str) -> int:
    """The output device `wanted` names: an index, or part of its name."""
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info.get("maxOutputChannels", 0) > 0 and (wanted == str(i) or wanted.lower() in str(info["name"]).lower()):
            return i
    raise OSError(f"no audio output matches {wanted!r}")
