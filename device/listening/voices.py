"""Household voices: a verifier per wake word (verifier.py), trained on a few recordings of
the household saying it: openWakeWord's "custom verifier", trained here with numpy (no
scikit-learn on the Pi).

Positives: in each enrollment recording, the frames where the wake model scores the word
highest. Negatives: every window of the enrollment recordings that does not hold the whole
word (the household's own room and voice saying something else, or nothing), the
`--negative` recordings, and a bank of speech, music and noise shipped with Earmark
(negative_bank.npz; bench/make_verifiers.py made it from the evaluation's tuned parts
only: espeak-ng, people's other words, a neural voice). So the verifier learns how the
household says the word, against everything that is not the word: it lets the device admit
the household's word at scores too weak to trust otherwise (decision.py's voice way). It
is not a lock against other voices (bench/wake_eval.py counts how many of other voices'
wake words it still takes). Each word's examples live in <data-dir>/voices/<word>.npz
(0600) by member, so adding or removing a member retrains from all that remain.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earmark.device.listening.verifier import WINDOW, Verifier, negative_bank, pooled_at, train
from earmark.runtime.durable import write_file
from earmark.wire.errors import UsageError

BEST_FRAMES = 3  # positives per enrollment recording: its best-scoring frames
MEMBER_PATTERN = re.compile(r"^[A-Za-z0-9 ._-]{1,40}$")


class VoiceError(UsageError, ValueError):
    """An enrollment that cannot be made as asked; the message says what to do."""


def examples(embeddings: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) from one enrollment recording's per-frame embeddings and wake
    scores: the BEST_FRAMES best-scoring frames, and every frame at least a window away
    from the best one."""
    usable = np.arange(WINDOW + 4, len(scores))
    if len(usable) == 0:
        raise VoiceError("a recording is too short: say the wake word with a second of quiet before it")
    best = usable[np.argsort(scores[usable])[::-1][:BEST_FRAMES]]
    far = usable[np.abs(usable - best[0]) >= WINDOW]
    return pooled_at(embeddings, best), pooled_at(embeddings, far)


@dataclass(frozen=True)
class Member:
    """One person's enrollment for a word: the examples of their saying it, and the other
    windows of their recordings and --negative files. Removing them removes both."""

    positives: np.ndarray
    negatives: np.ndarray
    created: str  # UTC
    samples: int = 0  # recordings enrolled (each gives several positives: best frames, noisy copies)


@dataclass(frozen=True)
class Enrolled:
    word: str
    members: dict[str, Member]

    def verifier(self) -> Verifier:
        positives = np.vstack([m.positives for m in self.members.values()])
        negatives = np.vstack([*(m.negatives for m in self.members.values()), negative_bank()])
        return train(positives, negatives)


def voices_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "voices"


def voice_file(data_dir: Path, word: str) -> Path:
    return voices_dir(data_dir) / f"{word}.npz"


def load(data_dir: Path, word: str) -> Enrolled | None:
    path = voice_file(data_dir, word)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            counts = meta.get("samples", {})  # files enrolled before it was kept: BEST_FRAMES per sample
            return Enrolled(word, {name: Member(data[f"positives_{i}"], data[f"negatives_{i}"], meta["created"][name],
                                                counts.get(name, len(data[f"positives_{i}"]) // BEST_FRAMES))
                                   for i, name in enumerate(meta["members"])})
    except (OSError, ValueError, KeyError) as exc:
        raise VoiceError(f"{path} is unreadable ({type(exc).__name__}): `earmark-device voice remove "
                         f"--wake-word {word}` and enroll again") from None


def save(data_dir: Path, enrolled: Enrolled) -> Path:
    voices_dir(data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    path = voice_file(data_dir, enrolled.word)
    names = sorted(enrolled.members)
    meta = json.dumps({"members": names, "created": {n: enrolled.members[n].created for n in names},
                       "samples": {n: enrolled.members[n].samples for n in names}})
    arrays: dict[str, np.ndarray] = {"meta": np.array(meta)}
    for i, name in enumerate(names):
        arrays[f"positives_{i}"] = enrolled.members[name].positives.astype(np.float32)
        arrays[f"negatives_{i}"] = enrolled.members[name].negatives.astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    write_file(path, buffer.getvalue())  # 0600: a voice's features are the household's own
    return path


def enrolled_words(data_dir: Path) -> list[str]:
    folder = voices_dir(data_dir)
    return sorted(p.stem for p in folder.glob("*.npz")) if folder.is_dir() else []
