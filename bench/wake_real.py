"""The real-speech source of the wake-word evaluation: recordings made by people
(`--real DIR`: Picovoice's wake-word benchmark, 165 crowd-sourced takes of "alexa" as
alexa/N.flac and about 40 minutes of other words by the same speakers as background/*.flac;
tests/data/people is a 7 MB sample of it laid out the same way), made into labelled clips
in .cache/wake-eval/real-<key>/.

Positives: every take, with LEAD_S of room before it and 1 s after, heard in each of
REAL_CONDITIONS: as recorded, in pink noise at 20, 10 and 5 dB SNR, in babble (three
talkers of the part's own background speech) at 10 dB, in a room (sox reverb), and in a
room with pink noise at 10 dB. A microphone's noise floor (about -65 dBFS) lies under all
of it, so the lead is never digital silence; the takes keep their recorded level.

Negatives: the background files, each cut in two halves (the first for the tuned part, the
second for the held-out part), as recorded and with pink noise at 10 dB under them.

The parts, by speaker as nearly as the set allows: it names no speakers, but one person's
takes carry consecutive numbers, and consecutive takes sound alike (cepstral mean and
spread over the voiced frames: consecutive takes are 0.7x as far apart as two takes at
random). `speaker_runs` joins consecutive takes into runs by that distance, and the runs
go to the parts in turn, so a voice in the held-out part is (nearly always) in no tuned clip.

Households: each run of at least HOUSEHOLD_TAKES takes is taken as one speaker: its first 3
takes are the enrollment samples, the others its requests, clean and in the noisy rooms
where the wake model hears people weakly (pink noise at 10, 5 and 0 dB, babble at 5 dB, a
room with pink noise at 5 dB). The set has at most 5 takes of one voice, so a household
here has 1-2 requests in 6 conditions: few, and pooled over the part's households.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.wake_audio import LEAD_S, RATE, Clip, heard_in, read_audio, write_clip

SOURCE_VERSION = 2
REAL_CONDITIONS = (("clean", 0), ("pink", 20), ("pink", 10), ("pink", 5), ("babble", 10), ("reverb", 0),
                   ("reverb+pink", 10))
HOUSEHOLD_CONDITIONS = (("clean", 0), ("pink", 10), ("pink", 5), ("pink", 0), ("babble", 5), ("reverb+pink", 5))
BACKGROUND_CONDITIONS = (("clean", 0), ("pink", 10))
RUN_DISTANCE = 6.5  # z-scored cepstral distance under which a take joins the run before it
HOUSEHOLD_TAKES = 4
ENROLLMENT_TAKES = 3


def takes(real: Path) -> dict[int, np.ndarray]:
    """Take number -> audio, in number order."""
    found = sorted((real / "alexa").glob("*.flac"), key=lambda p: int(p.stem))
    if not found:
        raise SystemExit(f"no takes in {real / 'alexa'}: point --real at the real-speech folder")
    return {int(p.stem): read_audio(p) for p in found}


def _mel_filters(bands: int = 40, size: int = 512) -> np.ndarray:
    edges = np.linspace(2595 * np.log10(1 + 50 / 700), 2595 * np.log10(1 + 7600 / 700), bands + 2)
    bins = np.floor((size + 1) * 700 * (10 ** (edges / 2595) - 1) / RATE).astype(int)
    filters = np.zeros((bands, size // 2 + 1))
    for i in range(bands):
        lo, mid, hi = bins[i], bins[i + 1], bins[i + 2]
        filters[i, lo:mid] = np.linspace(0, 1, mid - lo, endpoint=False)
        filters[i, mid:hi] = np.linspace(1, 0, hi - mid, endpoint=False)
    return filters


def voice_print(audio: np.ndarray) -> np.ndarray:
    """Mean and spread of 19 cepstral coefficients over a take's loudest 40% of 32 ms frames:
    the speaker and their microphone, roughly."""
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float32), 512)[::256]
    power = np.abs(np.fft.rfft(frames * np.hanning(512), axis=1)) ** 2
    voiced = power[power.sum(axis=1) > np.percentile(power.sum(axis=1), 60)]
    dct = np.cos(np.pi / 40 * (np.arange(40)[None] + 0.5) * np.arange(1, 20)[:, None])
    cepstra = np.log(voiced @ _mel_filters().T + 1e-2) @ dct.T
    return np.concatenate((cepstra.mean(axis=0), cepstra.std(axis=0)))


def speaker_runs(audio: dict[int, np.ndarray]) -> list[list[int]]:
    """Consecutive takes that sound alike, joined: each run is (nearly always) one speaker."""
    numbers = list(audio)
    prints = np.array([voice_print(audio[n]) for n in numbers])
    prints = (prints - prints.mean(axis=0)) / prints.std(axis=0)
    runs: list[list[int]] = [[0]]
    for i in range(1, len(numbers)):
        if np.mean([np.linalg.norm(prints[i] - prints[j]) for j in runs[-1]]) < RUN_DISTANCE:
            runs[-1].append(i)
        else:
            runs.append([i])
    return [[numbers[i] for i in run] for run in runs]


def _clip_audio(take: np.ndarray, condition: str, snr: int, rng: np.random.Generator,
                babble: list[np.ndarray]) -> tuple[np.ndarray, str]:
    audio = np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), take.astype(np.float32) / 32768,
                            np.zeros(RATE, np.float32)])
    audio, label = heard_in(audio, condition, snr, rng, babble)
    return _on_floor(audio, rng), label


def _on_floor(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    floor = rng.normal(0, float(rng.uniform(10, 30)), len(audio))
    return np.clip(audio * 32768 + floor, -32768, 32767).astype(np.int16)


def build(folder: Path, real: Path, seed: int = 0) -> list[Clip]:
    """The source in `folder` (made if its manifest is missing); returns its clips."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return [Clip(**c) for c in json.loads(manifest.read_text())]
    rng = np.random.default_rng(seed)
    audio = takes(real)
    runs = speaker_runs(audio)
    backgrounds = {p.stem: read_audio(p) for p in sorted((real / "background").glob("*.flac"))}
    clips: list[Clip] = []
    for s, split in enumerate(("tuned", "held-out")):
        halves = {name: b[len(b) // 2:] if s else b[:len(b) // 2] for name, b in backgrounds.items()}
        babble = [h.astype(np.float32) / 32768 for h in halves.values()]
        for name, half in halves.items():
            for condition, snr in BACKGROUND_CONDITIONS:
                mixed, label = heard_in(half.astype(np.float32) / 32768, condition, snr, rng, babble)
                clips.append(write_clip(folder, f"{split}/background/{name}-{label}.wav", _on_floor(mixed, rng),
                                    Clip("", split, "negative", f"background {label}", None, "mixed", 0, "real")))
        for run in runs[s::2]:
            for number in run:
                for condition, snr in REAL_CONDITIONS:
                    mixed, label = _clip_audio(audio[number], condition, snr, rng, babble)
                    clips.append(write_clip(folder, f"{split}/positive/alexa-{number:03d}-{label}.wav", mixed,
                                        Clip("", split, "positive", label, "alexa", f"real-{run[0]}", 0, "real")))
            if len(run) >= HOUSEHOLD_TAKES:
                for number in run[:ENROLLMENT_TAKES]:
                    mixed, _ = _clip_audio(audio[number], "clean", 0, rng, babble)
                    clips.append(write_clip(folder, f"{split}/household/enrollment-{number:03d}.wav", mixed,
                                        Clip("", split, "enrollment", "clean", "alexa", f"real-{run[0]}", 0, "real")))
                for number in run[ENROLLMENT_TAKES:]:
                    for condition, snr in HOUSEHOLD_CONDITIONS:
                        mixed, label = _clip_audio(audio[number], condition, snr, rng, babble)
                        clips.append(write_clip(folder, f"{split}/household/request-{number:03d}-{label}.wav", mixed,
                                            Clip("", split, "household", label, "alexa", f"real-{run[0]}", 0,
                                                 "real")))
    manifest.write_text(json.dumps([asdict(c) for c in clips], indent=1))
    return clips


def source_folder(root: Path, real: Path) -> Path:
    """A folder per version of this source and of the recordings it was made from."""
    listing = sorted(f"{p.relative_to(real)}:{p.stat().st_size}" for p in real.rglob("*.flac"))
    key = hashlib.sha256(json.dumps([SOURCE_VERSION, listing]).encode()).hexdigest()[:10]
    return root / f"real-{key}"
