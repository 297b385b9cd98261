"""Makes the verifier data shipped in device/listening/ (verifier.py loads both):

  word_verifiers.npz   one verifier per built-in wake word: the decision's confirm check
  positive_bank.npz    each word as the sources say it: windows where the wake model scores
                       its positives at least POSITIVE_SCORE, an even sample of at most
                       --bank-windows per word; what household marks are told apart from
                       (marks.py)
  negative_bank.npz    what a household's voice verifier learns to refuse (voices.py):
                       speech, music and noise. Not other voices saying the wake word:
                       with those in it, the tuned household's recall fell from 1.0 to
                       0.34-0.49 (5 enrollment samples are too few to learn a voice apart
                       from its word)

Both come from the TUNED parts of the wake-word evaluation's sources only (bench/wake_sources.py:
espeak-ng voices, people's recordings, a neural voice): the held-out parts, their voices and
texts, stay unseen, so bench/wake_eval.py's held-out figures are fair. A word verifier
learns, on the windows of 16 embeddings the wake model sees, to tell the word from what else raises the word's score:

  positives  frames of the word's positives where the wake model scores it at least 0.2
  negatives  frames of the negatives (read text, dialogue, near misses, music, TV, people's
             other words) and of the other word's positives where the wake model scores the word at least 0.05,
             plus an even sample of all the negatives' frames

Usage: .venv/bin/python bench/make_verifiers.py [--bank-windows 3000] [--sources espeak,real,piper]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.wake_audio import Clip  # noqa: E402
from bench.wake_features import load  # noqa: E402
from bench.wake_set import WORDS  # noqa: E402
from bench.wake_sources import SOURCES  # noqa: E402
from bench.wake_sources import load as load_sources  # noqa: E402
from earmark.device.listening.features import STARTUP_FRAMES  # noqa: E402
from earmark.device.listening.verifier import WINDOW, Verifier, pooled_at, train  # noqa: E402

OUT = ROOT / "device" / "listening"
POSITIVE_SCORE = 0.2
NEGATIVE_SCORE = 0.05
SAMPLE_EVERY = 50  # frames: the even sample of the negatives (4 s)


def windows(embeddings: np.ndarray, frames: np.ndarray) -> list[np.ndarray]:
    return list(pooled_at(embeddings, frames[frames >= max(WINDOW, STARTUP_FRAMES)]))


def word_examples(features: dict[str, dict[str, np.ndarray]], clips: list[Clip],
                  word: str) -> tuple[np.ndarray, np.ndarray]:
    positives: list[np.ndarray] = []
    negatives: list[np.ndarray] = []
    for clip in clips:
        f = features[clip.key]
        scores = f[f"score_{word}"]
        if clip.kind == "positive" and clip.word == word:
            positives += windows(f["embeddings"], np.flatnonzero(scores >= POSITIVE_SCORE))
        else:
            near = set(np.flatnonzero(scores >= NEGATIVE_SCORE).tolist())
            if clip.kind == "negative":
                near |= set(range(0, len(scores), SAMPLE_EVERY))
            negatives += windows(f["embeddings"], np.array(sorted(near), dtype=int))
    return np.array(positives), np.array(negatives)


def word_verifier(features: dict[str, dict[str, np.ndarray]], clips: list[Clip], word: str) -> Verifier:
    return train(*word_examples(features, clips, word))


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    path.write_bytes(buffer.getvalue())
    print(f"  -> {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank-windows", type=int, default=3000)
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, of " + ", ".join(SOURCES))
    parser.add_argument("--models", type=Path, default=ROOT / ".cache" / "wake-eval" / "device" / "models")
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "speech" / "real")
    args = parser.parse_args()
    sources = load_sources(ROOT / ".cache" / "wake-eval", args.sources.split(","), args.models, args.real.resolve())
    clips = [c for s in sources.values() for c in s.clips if c.split == "tuned" and c.kind in ("positive", "negative")]
    features = {c.key: load(sources[c.source].folder, c) for c in clips}
    arrays: dict[str, np.ndarray] = {}
    for word in WORDS:
        positives, negatives = word_examples(features, clips, word)
        verifier = train(positives, negatives)
        print(f"{word}: {len(positives)} positive and {len(negatives)} negative windows")
        arrays |= {f"{word}/weights": verifier.weights, f"{word}/bias": np.array(verifier.bias),
                   f"{word}/mean": verifier.mean, f"{word}/scale": verifier.scale}
    save(OUT / "word_verifiers.npz", arrays)
    said: dict[str, np.ndarray] = {}
    for word in WORDS:
        positives, _ = word_examples(features, [c for c in clips if c.kind == "positive"], word)
        said[word] = positives[:: max(1, len(positives) // args.bank_windows)][: args.bank_windows].astype(np.float16)
        print(f"positive bank, {word}: {len(said[word])} of {len(positives)} windows")
    save(OUT / "positive_bank.npz", said)
    negatives_only = [c for c in clips if c.kind == "negative"]
    frames = sum(len(features[c.key]["embeddings"]) for c in negatives_only)
    step = max(1, frames // args.bank_windows)
    rows: list[np.ndarray] = []
    for clip in negatives_only:
        embeddings = features[clip.key]["embeddings"]
        rows += windows(embeddings, np.arange(WINDOW + 4, len(embeddings), step))
    bank = {"examples": np.array(rows[: args.bank_windows], dtype=np.float16)}
    print(f"negative bank: {len(bank['examples'])} windows from {len(negatives_only)} clips "
          f"({frames * 0.08 / 3600:.1f} h)")
    save(OUT / "negative_bank.npz", bank)


if __name__ == "__main__":
    main()
