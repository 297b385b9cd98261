"""`earmark-device voice enroll|list|remove`: a household's voices for a wake word.

Each recording is read like the microphone (any WAV: rate, width and channels converted) and
run through the device's own feature pipeline and wake model, so the verifier learns from
exactly what the detector will show it. voices.py holds the verifier and its file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from earmark.device.audio.source import WavFileSource
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


def _run(path: Path, files: ModelFiles, word: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame embeddings and wake scores of one recording."""
    stream = FeatureStream(files.melspectrogram, files.embedding)
    model = WakeModel(files.wake_words[word])
    source = WavFileSource(path)
    embeddings, scores = [], []
    source.start()
    while (frame := source.read()) is not None:
        stream.push(frame)
        embeddings.append(stream.embeddings[-1].copy())
        scores.append(model.score(stream))
    source.stop()
    return np.array(embeddings).reshape(-1, 96), np.array(scores)


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
        embeddings, scores = _run(path, files, word)
        top = float(scores.max()) if len(scores) else 0.0
        if top < HEARD:
            raise VoiceError(f"{path}: the {word} model scores it {top:.2f} at best, so it does not hold the "
                             "wake word: record it again, spoken clearly, with a second of quiet before it")
        p, n = examples(embeddings, scores)
        found.append(p)
        others.append(n)
        best.append(top)
    for path in negatives:
        embeddings, _ = _run(path, files, word)
        others.append(pooled_at(embeddings, range(WINDOW, len(embeddings), 2)))
    before = load(data_dir, word)
    members = dict(before.members) if before else {}
    members[name] = Member(np.vstack(found), np.vstack(others), utc_now())
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
