"""Household marks: "not meant for you". What the household says should not have woken the
device (a false wake it recorded, or any recording of a name, an advert, a phrase that wakes
it) teaches the device, on the device, what is *not* its wake word.

A mark keeps features, never audio: the windows of openWakeWord embeddings the wake model saw
where the word's score rose (pooled as verifier.py pools them: 192 values, under 1 KB each),
in <data-dir>/marks/<word>.npz (0600).

The check (decision.py's `marked`): a small model of what is *not* the word, trained on
the device from the marked windows against the word as people and voices say it
(positive_bank.npz, shipped; and the household's own enrolled samples, voices.py). A
candidate is refused when that model is sure (the rule's bar, 0.9) and the candidate lies
nearer a mark than any example of the word. The second condition keeps it to what was
marked: a voice or a word it never learnt from is judged as before (bench/wake_marks.py:
with the household's Alexis and Alessia marked, 1 in 1,600 positives of every source lost,
against 1 in 7 for nearness alone, which refused the marked voice's own "alexa").
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earmark.device.listening.enrollment import features, read_frames
from earmark.device.listening.models import ModelFiles
from earmark.device.listening.verifier import WINDOW, pooled, pooled_at, positive_bank, train
from earmark.runtime.durable import write_file
from earmark.wire.envelope import CLIP_ID_PATTERN
from earmark.wire.errors import UsageError
from earmark.wire.marks import MarksMessage
from earmark.wire.timestamps import utc_now

MARK_FROM = 0.1  # frames whose wake score reaches this are what a mark learns from
MOST_PER_RECORDING = 12  # of them, the best-scoring


class MarkError(UsageError, ValueError):
    """A mark that cannot be made or read as asked; the message says what to do."""


def examples_in(embeddings: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The windows of one recording a mark learns from: at most MOST_PER_RECORDING frames
    whose wake score reaches MARK_FROM, the best first (empty if there is none)."""
    usable = np.arange(WINDOW - 1, len(scores))
    rising = usable[scores[usable] >= MARK_FROM]
    best = rising[np.argsort(scores[rising])[::-1][:MOST_PER_RECORDING]]
    return pooled_at(embeddings, np.sort(best))


@dataclass(frozen=True)
class Mark:
    source: str  # the recording's file name, or the clip id the mark named
    created: str  # UTC
    examples: int
    by: str = "device"  # "device" (`voice not-meant`) or "portal" (the household's mark, wire/marks.py)


@dataclass(frozen=True)
class Marks:
    word: str
    examples: np.ndarray  # (n, 192): each mark's rows in turn
    marks: tuple[Mark, ...]

    def plus(self, examples: np.ndarray, mark: Mark) -> Marks:
        return Marks(self.word, np.vstack((self.examples, examples)), (*self.marks, mark))

    def without(self, sources: set[str]) -> Marks:
        """The marks whose source is not in `sources`, with their rows."""
        ends = np.cumsum([m.examples for m in self.marks], dtype=int)
        keep = [(m, end - m.examples, end) for m, end in zip(self.marks, ends, strict=True) if m.source not in sources]
        rows = [self.examples[start:end] for _, start, end in keep]
        return Marks(self.word, np.vstack(rows) if rows else self.examples[:0], tuple(m for m, _, _ in keep))


def marks_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "marks"


def marks_file(data_dir: Path, word: str) -> Path:
    return marks_dir(data_dir) / f"{word}.npz"


def load(data_dir: Path, word: str) -> Marks:
    path = marks_file(data_dir, word)
    if not path.exists():
        return Marks(word, np.zeros((0, 2 * 96), np.float32), ())
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return Marks(word, data["examples"].astype(np.float32), tuple(Mark(**m) for m in meta["marks"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MarkError(f"{path} is unreadable ({type(exc).__name__}): `earmark-device voice forget-marks "
                        f"--wake-word {word}` and mark again") from None


def save(data_dir: Path, marks: Marks) -> Path:
    marks_dir(data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    buffer = io.BytesIO()
    meta = json.dumps({"marks": [m.__dict__ for m in marks.marks]})
    np.savez(buffer, meta=np.array(meta), examples=marks.examples.astype(np.float16))
    path = marks_file(data_dir, marks.word)
    write_file(path, buffer.getvalue())  # 0600: what the household said near the device
    return path


def mark_recordings(data_dir: Path, files: ModelFiles, word: str, recordings: list[Path]) -> Marks:
    """`earmark-device voice not-meant`: each recording's windows learnt as not `word`. Every
    recording is read and checked before anything is saved, so a bad one teaches nothing."""
    learnt = load(data_dir, word)
    found = []
    for path in recordings:
        embeddings, scores = features(read_frames(path), files, word)
        examples = examples_in(embeddings, scores)
        if not len(examples):
            raise MarkError(f"{path}: the {word} model never scores it {MARK_FROM} or more, so nothing in it "
                            f"sounds like {word} to the device: nothing to learn")
        found.append((path, examples))
    for path, examples in found:
        learnt = learnt.plus(examples, Mark(path.name, utc_now(), len(examples)))
    save(data_dir, learnt)
    return learnt


def kept_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "wake-features"


def keep_wake(data_dir: Path, clip_id: str, word: str, examples: np.ndarray, keep_days: int, keep_clips: int) -> None:
    """Keep the wake model's view of a recorded clip (0600), for a mark that may come later;
    then drop what is older than `keep_days` or beyond the newest `keep_clips`."""
    if not CLIP_ID_PATTERN.fullmatch(clip_id) or not len(examples):
        return
    folder = kept_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    buffer = io.BytesIO()
    np.savez(buffer, word=np.array(word), examples=examples.astype(np.float16))
    write_file(folder / f"{clip_id}.npz", buffer.getvalue())
    kept = sorted(((p.stat().st_mtime, p) for p in folder.glob("*.npz")), reverse=True)
    too_old = time.time() - keep_days * 86400
    for number, (mtime, path) in enumerate(kept):
        if number >= keep_clips or mtime < too_old:
            path.unlink(missing_ok=True)


def mark_clips(data_dir: Path, clip_ids: list[str], keep_days: int,
               by: str = "device") -> tuple[dict[str, Marks], list[str]]:
    """Marks for recorded clips, from what was kept of them: ({word: its marks now}, a line
    for each clip nothing could be learnt from). A clip already learnt is not learnt twice;
    what was kept of it stays until its time (keep_days, keep_clips) or its deletion, so a
    mark taken off and made again is learnt again."""
    learnt: dict[str, Marks] = {}
    refused: list[str] = []
    known = learnt_clips(every_word(data_dir))
    for clip_id in dict.fromkeys(clip_ids):
        path = kept_dir(data_dir) / f"{clip_id}.npz"
        if not CLIP_ID_PATTERN.fullmatch(clip_id):
            refused.append(f"{clip_id!r} is not a clip id (a lowercase UUID)")
            continue
        if clip_id in known:
            refused.append(f"clip {clip_id}: learnt already")
            continue
        if not path.exists():
            refused.append(f"clip {clip_id}: nothing kept of it (not recorded here, or recorded more than "
                           f"{keep_days} days or [marks] keep_clips recordings ago, or deleted by its owner)")
            continue
        try:
            with np.load(path) as data:
                word, examples = str(data["word"]), data["examples"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            refused.append(f"clip {clip_id}: what was kept of it is unreadable ({type(exc).__name__})")
            continue
        marks = learnt.get(word) or load(data_dir, word)
        learnt[word] = marks.plus(examples, Mark(clip_id, utc_now(), len(examples), by))
    for marks in learnt.values():
        save(data_dir, marks)
    return learnt, refused


def learnt_clips(held: list[Marks]) -> set[str]:
    """The clip ids these marks were learnt from."""
    return {m.source for marks in held for m in marks.marks if CLIP_ID_PATTERN.fullmatch(m.source)}


@dataclass(frozen=True)
class Followed:
    """What a household's marks message (wire/marks.py) changed on the device."""

    learnt: tuple[str, ...]  # clip ids learnt now
    forgotten: tuple[str, ...]  # clip ids whose mark was taken off
    dropped: int  # recordings' kept features deleted with them
    not_learnt: tuple[str, ...]  # a line each: listed, but nothing could be learnt

    @property
    def changed(self) -> bool:
        return bool(self.learnt or self.forgotten)

    def describe(self) -> str:
        said = [f"learnt {len(self.learnt)}", f"forgot {len(self.forgotten)} taken off",
                f"dropped what was kept of {self.dropped} deleted recording(s)"]
        gaps = f"; nothing learnt from {len(self.not_learnt)}: {self.not_learnt[0]}" if self.not_learnt else ""
        return "household marks: " + ", ".join(said) + gaps


def follow(data_dir: Path, message: MarksMessage, keep_days: int) -> Followed:
    """Make the device's portal marks what the household's message says: learn the listed
    clips not learnt yet (from what was kept of them), forget those learnt from the portal
    that are no longer listed, and delete what was kept of the recordings deleted."""
    held = every_word(data_dir)
    earlier = learnt_clips(held)
    gone = {m.source for marks in held for m in marks.marks if m.by == "portal"} - set(message.not_meant)
    for marks in held:
        kept = marks.without(gone)
        if len(kept.marks) < len(marks.marks):
            save(data_dir, kept)
    fresh = [clip_id for clip_id in message.not_meant if clip_id not in earlier]  # (none of them is gone)
    learnt, refused = mark_clips(data_dir, fresh, keep_days, by="portal") if fresh else ({}, [])
    done = {m.source for marks in learnt.values() for m in marks.marks} & set(fresh)
    dropped = 0
    for clip_id in message.deleted:
        path = kept_dir(data_dir) / f"{clip_id}.npz"
        if path.exists():
            path.unlink()
            dropped += 1
    return Followed(tuple(c for c in fresh if c in done), tuple(sorted(gone)), dropped, tuple(refused))


def forget(data_dir: Path, word: str | None = None) -> list[str]:
    """Drop the marks of `word` (of every word if None); the words forgotten."""
    folder = marks_dir(data_dir)
    gone = []
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        if word is None or path.stem == word:
            path.unlink()
            gone.append(path.stem)
    return gone


def marked_words(data_dir: Path) -> list[str]:
    """The words that have a marks file (none read)."""
    folder = marks_dir(data_dir)
    return [p.stem for p in sorted(folder.glob("*.npz"))] if folder.is_dir() else []


def every_word(data_dir: Path) -> list[Marks]:
    """The marks of every word that has a file, each file read once."""
    return [load(data_dir, word) for word in marked_words(data_dir)]


def counts(data_dir: Path) -> dict[str, int]:
    """Marks learnt per word: all a device ever says of them."""
    return {marks.word: len(marks.marks) for marks in every_word(data_dir)}


class NotMeant:
    """The household's model of what is not the word: a verifier (verifier.py's logistic
    regression) trained to tell the marked windows from the word as it is said. It speaks
    only near the marks: for a window nearer the word than every mark its score is 0."""

    def __init__(self, marked: np.ndarray, word: np.ndarray) -> None:
        self._verifier = train(marked, word)
        self._mean, self._scale = word.mean(axis=0), word.std(axis=0) + 1e-3
        self._marked = self._z(marked)
        self._word = self._z(word)

    def _z(self, examples: np.ndarray) -> np.ndarray:
        z: np.ndarray = ((examples - self._mean) / self._scale).astype(np.float32)
        return z

    def nearer_a_mark(self, window: np.ndarray) -> bool:
        z = self._z(pooled(window)[None])[0]
        to_mark = float(((self._marked - z) ** 2).sum(axis=1).min())
        to_word = float(((self._word - z) ** 2).sum(axis=1).min())
        return to_mark < to_word

    def score(self, window: np.ndarray) -> float:
        """0..1: how sure the model is that this window is what was marked, not the word."""
        return self._verifier.score(window) if self.nearer_a_mark(window) else 0.0


def not_meant(marked: dict[str, Marks], household: dict[str, np.ndarray] | None = None) -> dict[str, NotMeant]:
    """The check of each word that has marks (`marked`, as `load` gives them): against the
    shipped examples of the word and the household's own enrolled ones (`household`, by
    word). The shipped examples are read only when some word has marks."""
    words = [word for word, marks in marked.items() if len(marks.examples)]
    if not words:
        return {}
    bank = positive_bank()
    found = {}
    for word in words:
        if word in bank:
            own = (household or {}).get(word)
            said = bank[word] if own is None else np.vstack((bank[word], own))
            found[word] = NotMeant(marked[word].examples, said)
    return found
