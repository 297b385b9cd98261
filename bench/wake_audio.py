"""What every source of the wake-word evaluation shares: the labelled clip, WAV and FLAC
input and output, and the conditions a clip is heard in (noise at an SNR, room reverb, a
microphone's noise floor). Made with numpy and sox; nothing here is tuned on.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

RATE = 16_000
LEAD_S = 3.0  # room before each positive: more than the detector's warm-up (features.warm_frames)
SPLITS = ("tuned", "held-out")
# The conditions a positive is heard in: as recorded, in noise, in a room, in both.
CONDITIONS = ("clean", "white", "pink", "babble", "reverb", "reverb+pink")


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the source's folder
    split: str  # "tuned" or "held-out"
    kind: str  # "positive", "negative", "enrollment" or "household" (an enrolled voice's requests)
    category: str  # positives: the condition; negatives: what it is (read, dialogue, background, ...)
    word: str | None  # positives and enrollment: the wake word
    voice: str  # the speaker (for enrollment and households: whose voice is enrolled)
    seconds: float
    source: str = "espeak"  # espeak, real or piper (bench/wake_sources.py)

    @property
    def key(self) -> str:
        """Unique across sources."""
        return f"{self.source}/{self.path}"

    @property
    def clean(self) -> bool:
        return self.category == "clean"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())


def read_audio(path: Path) -> np.ndarray:
    """Any file sox reads (FLAC, WAV at any rate), as 16 kHz mono int16."""
    raw = subprocess.run(["sox", "-q", "-V1", str(path), "-t", "raw", "-r", str(RATE), "-c", "1", "-b", "16",
                          "-e", "signed-integer", "-L", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<i2")


def reverb(audio: np.ndarray, amount: int, room: int) -> np.ndarray:
    """`audio` (floats in -1..1) in a room; the same scale back."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        write_wav(src, audio * 16000)
        subprocess.run(["sox", "-q", "-V1", "-G", str(src), str(out), "reverb", str(amount), "50", str(room),
                        "gain", "-n", "-3"], check=True)
        return read_wav(out).astype(np.float32)[: len(audio) + RATE // 2] / 16000


def noise(kind: str, samples: int, rng: np.random.Generator, babble: list[np.ndarray]) -> np.ndarray:
    if kind == "white":
        return rng.normal(0, 1, samples).astype(np.float32)
    if kind == "pink":  # 1/f: white noise shaped in the frequency domain
        spectrum = np.fft.rfft(rng.normal(0, 1, samples))
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
        return np.fft.irfft(spectrum, samples).astype(np.float32)
    out = np.zeros(samples, dtype=np.float32)  # babble: three talkers at once
    for _ in range(3):
        source = babble[int(rng.integers(len(babble)))]
        start = int(rng.integers(max(1, len(source) - samples)))
        piece = source[start:start + samples]
        out[: len(piece)] += piece
    return out


def mix(signal: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """`signal` with `background` under it at `snr_db` (power of the voiced part)."""
    voiced = signal[np.abs(signal) > 0.02 * np.abs(signal).max()] if signal.any() else signal
    p_signal = float(np.mean(voiced ** 2)) if len(voiced) else 1.0
    p_noise = float(np.mean(background ** 2)) or 1.0
    return signal + background * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


def heard_in(audio: np.ndarray, condition: str, snr: int, rng: np.random.Generator, babble: list[np.ndarray],
             room: tuple[int, int] = (35, 50)) -> tuple[np.ndarray, str]:
    """`audio` (floats) in one of CONDITIONS; the condition's label ("pink@10dB")."""
    if condition.startswith("reverb"):
        audio = reverb(audio / 2, *room)
    kind = condition.split("+")[-1]
    if kind in ("white", "pink", "babble"):
        return mix(audio, noise(kind, len(audio), rng, babble), snr), f"{condition}@{snr}dB"
    return audio, condition


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Melody over chords, with a drum every beat: harmonics, envelopes, nothing spoken."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n, dtype=np.float32)
    beat = float(rng.uniform(0.35, 0.6))
    root = float(rng.uniform(110, 220))
    scale = [0, 2, 4, 5, 7, 9, 11, 12]
    for start in np.arange(0, seconds, beat):
        i0, i1 = int(start * RATE), min(n, int((start + beat) * RATE))
        seg = t[i0:i1] - start
        env = np.exp(-seg * float(rng.uniform(2, 6)))
        note = root * 2 ** (scale[int(rng.integers(len(scale)))] / 12) * 2
        for harmonic, level in ((1, 1.0), (2, 0.4), (3, 0.2)):
            out[i0:i1] += level * env * np.sin(2 * np.pi * note * harmonic * seg)
        for step in (0, 4, 7):  # the chord
            out[i0:i1] += 0.25 * np.sin(2 * np.pi * root * 2 ** (step / 12) * seg)
        drum = min(i1 - i0, 1200)
        out[i0:i0 + drum] += 0.8 * rng.normal(0, 1, drum) * np.exp(-np.arange(drum) / 200)
    return out


def to_int16(audio: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Scaled to `peak`, over a microphone's noise floor (about -70 to -58 dBFS): openWakeWord
    scores a word in digital silence far lower than the same word in any real room."""
    top = float(np.abs(audio).max()) or 1.0
    floor = rng.normal(0, float(rng.uniform(10, 40)), len(audio))
    return np.clip(audio / top * peak + floor, -32768, 32767).astype(np.int16)


def write_clip(folder: Path, path: str, audio: np.ndarray, clip: Clip) -> Clip:
    """`audio` written to `folder`/`path`; `clip` with that path and its length."""
    (folder / path).parent.mkdir(parents=True, exist_ok=True)
    write_wav(folder / path, audio)
    return replace(clip, path=path, seconds=len(audio) / RATE)
