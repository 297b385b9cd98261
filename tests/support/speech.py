"""Test speech: espeak-ng says it, sox makes it 16 kHz mono, numpy composes the scene."""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from earmark.device.audio.source import FRAME_SAMPLES, WavFileSource

RATE = 16_000


def say(text: str, voice: str = "en", speed: int = 150) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
        subprocess.run(["sox", "-q", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)],
                       check=True)
        return read_wav(out)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def voiced_span(samples: np.ndarray, level: int = 300) -> tuple[float, float]:
    """First and last moment (s) where the signal is louder than `level`."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > level)
    return loud[0] / RATE, (loud[-1] + 1) / RATE


class Scene:
    """Concatenated parts, remembering where each spoken part starts and ends."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.marks: dict[str, tuple[float, float]] = {}

    @property
    def length_s(self) -> float:
        return sum(len(p) for p in self.parts) / RATE

    def pause(self, seconds: float) -> Scene:
        self.parts.append(silence(seconds))
        return self

    def speak(self, samples: np.ndarray, mark: str | None = None) -> Scene:
        if mark:
            start, end = voiced_span(samples)
            self.marks[mark] = (self.length_s + start, self.length_s + end)
        self.parts.append(samples)
        return self

    def audio(self) -> np.ndarray:
        return np.concatenate(self.parts)

    def write(self, path: Path) -> Path:
        return write_wav(path, self.audio())


def all_frames(source: WavFileSource) -> np.ndarray:
    """Every frame a source gives, checked for shape and type, joined."""
    source.start()
    frames = []
    while (frame := source.read()) is not None:
        assert frame.dtype == np.int16 and frame.shape == (FRAME_SAMPLES,)
        frames.append(frame)
    source.stop()
    return np.concatenate(frames)


def tone(rate: int, seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (12000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def audio_windows(pcm: np.ndarray, width: int = 1600, step: int = 2000) -> list[bytes]:
    """0.1 s stretches of a recording's voiced samples, as raw bytes and as base64 (trimmed to
    whole characters wherever a stretch starts): what a leak of its audio into a file holds."""
    import base64

    raw = [pcm[i:i + width].astype("<i2").tobytes() for i in range(0, len(pcm) - width, step)
           if np.abs(pcm[i:i + width]).max() > 500]  # voiced: silence could match anything
    return raw + [base64.b64encode(w)[8:-8] for w in raw]
