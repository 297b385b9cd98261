"""`earmark-device voice enroll|list|remove`: a household's voices for a wake word.

Each recording is read like the microphone (any WAV: rate, width and channels converted) and
run through the device's own feature pipeline and wake model, so the verifier learns from
exactly what the detector will show it; and again with pink noise under it at NOISY_SNRS,
because a household is heard weakest in a noisy room, which a few samples recorded in a
quiet one never show the verifier (bench/wake_eval.py: without these copies, enrolled
people in 5 dB of noise were refused at wake scores near 0.4). voices.py holds the
verifier and its file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from earmark.device.audio.source import FRAME_SAMPLES, WavFileSource
from earmark.device.listening.features import FeatureStream, WakeModel
from earmark.device.listening.models import ModelFiles
from earmark.device.listening.verifier import WINDOW, pooled_at
from earmark.device.listening.voices import (
    MEMBER_PATTERN,
    Enrolled,
    Member,
    VoiceError,
    examples,
    load,
    save,
    voice_file,
)
from earmark.wire.timestamps import utc_now

MIN_SAMPLES = 3
HEARD = 0.1  # a sample whose best wake score is below this does not hold the word
NOISY_SNRS = (10.0, 5.0)  # dB: each sample is also learnt with pink noise this far under it


def read_frames(path: Path) -> np.ndarray:
    """A recording as the microphone would deliver it: 16 kHz mono int16, whole frames."""
    source = WavFileSource(path)
    frames = []
    source.start()
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.stop()
    return np.concatenate(frames) if frames else np.zeros(0, np.int16)


def features(audio: np.ndarray, files: ModelFiles, word: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame embeddings and wake scores of 16 kHz int16 audio."""
    stream = FeatureStream(files.melspectrogram, files.embedding)
    model = WakeModel(files.wake_words[word])
    embeddings, scores = [], []
    for frame in audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES):
        stream.push(frame)
        embeddings.append(stream.embeddings[-1].copy())
        scores.append(model.score(stream))
    return np.array(embeddings).reshape(-1, 96), np.array(scores)


def in_pink_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """`audio` with pink (1/f) noise `snr_db` below its voiced part's level."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=len(audio)))
    pink = np.fft.irfft(spectrum / np.sqrt(np.arange(1, len(spectrum) + 1)), len(audio))
    signal = audio.astype(np.float64)
    voiced = signal[np.abs(signal) > 0.02 * (np.abs(signal).max() or 1)]
    level = float(np.sqrt(np.mean(voiced ** 2))) if len(voiced) else 1.0
    noisy = signal + pink / (pink.std() or 1) * level / 10 ** (snr_db / 20)
    return np.clip(noisy, -32768, 32767).astype(np.int16)


def sample_examples(audio: np.ndarray, files: ModelFiles, word: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(positives, negatives, best wake score) from one enrollment sample: the sample as
    recorded and in noise at each of NOISY_SNRS. Raises VoiceError if the word is not in it."""
    embeddings, scores = features(audio, files, word)
    top = float(scores.max()) if len(scores) else 0.0
    if top < HEARD:
        raise VoiceError(f"the {word} model scores it {top:.2f} at best, so it does not hold the wake word: "
                         "record it again, spoken clearly, with a second of quiet before it")
    positives, negatives = examples(embeddings, scores)
    found, others = [positives], [negatives]
    for i, snr in enumerate(NOISY_SNRS):
        noisy_embeddings, noisy_scores = features(in_pink_noise(audio, snr, seed=i), files, word)
        p, n = examples(noisy_embeddings, noisy_scores)
        found.append(p)
        others.append(n)
    return np.vstack(found), np.vstack(others), top


def enroll(data_dir: Path, files: ModelFiles, word: str, positives: list[Path], negatives: list[Path],
           name: str) -> tuple[Enrolled, list[float]]:
    """Add (or replace) `name`'s voice for `word`, retrain the word's verifier from every
    member, and save it. Returns the enrollment and each sample's best wake score."""
    if not MEMBER_PATTERN.fullmatch(name):
        raise VoiceError(f"--name {name[:40]!r}: 1-40 letters, digits, spaces, '.', '_' or '-'")
    if len(positives) < MIN_SAMPLES:
        raise VoiceError(f"{len(positives)} sample(s): record the wake word at least {MIN_SAMPLES} times "
                         "(5 is better), each a separate WAV with a second of quiet before it")
    found, others, best = [], [], []
    for path in positives:
        try:
            p, n, top = sample_examples(read_frames(path), files, word)
        except VoiceError as exc:
            raise VoiceError(f"{path}: {exc}") from None
        found.append(p)
        others.append(n)
        best.append(top)
    for path in negatives:
        embeddings, _ = features(read_frames(path), files, word)
        others.append(pooled_at(embeddings, range(WINDOW, len(embeddings), 2)))
    before = load(data_dir, word)
    members = dict(before.members) if before else {}
    members[name] = Member(np.vstack(found), np.vstack(others), utc_now(), len(positives))
    enrolled = Enrolled(word, members)
    enrolled.verifier()  # trains: a failure here must not leave a half-written file
    save(data_dir, enrolled)
    return enrolled, best


def remove(data_dir: Path, word: str, name: str | None) -> list[str]:
    """Forget `name`'s voice for `word` (every voice, with no name). Returns who was removed."""
    enrolled = load(data_dir, word)
    if enrolled is None:
        raise VoiceError(f"no voices are enrolled for {word}")
    if name is None or set(enrolled.members) == {name}:
        voice_file(data_dir, word).unlink()
        return sorted(enrolled.members)
    if name not in enrolled.members:
        raise VoiceError(f"{name!r} is not enrolled for {word} (enrolled: {', '.join(sorted(enrolled.members))})")
    save(data_dir, Enrolled(word, {k: v for k, v in enrolled.members.items() if k != name}))
    return [name]
