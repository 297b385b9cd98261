"""What the device has learnt from its household, in its data dir, for the wake decision:
the enrolled voices (voices.py: a verifier per word that admits their weak scores) and the
marks (marks.py: a check per word that refuses what lies nearer a mark than the word).
`run`, `detect` and the benchmarks load it through here, so they decide alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earmark.device.listening.marks import NotMeant, not_meant
from earmark.device.listening.marks import load as load_marks
from earmark.device.listening.verifier import Verifier
from earmark.device.listening.voices import load


@dataclass(frozen=True)
class Learnt:
    voices: dict[str, Verifier] = field(default_factory=dict)
    not_meant: dict[str, NotMeant] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)  # recordings marked, per word: all the status tells


def learnt(data_dir: Path, words: list[str]) -> Learnt:
    """Each file read once: the voices and the marks of `words`."""
    enrolled = {word: e for word in words if (e := load(data_dir, word)) is not None}
    own = {word: np.vstack([m.positives for m in e.members.values()]) for word, e in enrolled.items()}
    marked = {word: load_marks(data_dir, word) for word in words}
    return Learnt({word: e.verifier() for word, e in enrolled.items()}, not_meant(marked, own),
                  {word: len(m.marks) for word, m in marked.items() if m.marks})
