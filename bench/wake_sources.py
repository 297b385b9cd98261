"""The wake-word evaluation's sources, each a folder of labelled clips (bench/wake_audio.py's
Clip) under .cache/wake-eval/, made once, split into a part to tune on and a part never
tuned on:

  espeak  espeak-ng voices (bench/wake_set.py): many accents and variants, 14 h
  real    recordings made by people (bench/wake_real.py, from the folder --real names)
  piper   a neural voice, Piper's en_US "joe" (bench/wake_piper.py)

Each source's per-frame features are computed beside it (bench/wake_features.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from bench import wake_piper, wake_real, wake_set
from bench.wake_audio import Clip
from bench.wake_features import ensure

SOURCES = ("espeak", "real", "piper")
DESCRIBED = {
    "espeak": "espeak-ng voices (synthesised; 16 voices per part, 80-210 words per minute)",
    "real": "people: crowd-sourced takes of alexa (50+ speakers), other words by the same speakers as background",
    "piper": "a neural voice: Piper en_US joe at several pitches and speeds",
}


@dataclass(frozen=True)
class Source:
    name: str
    folder: Path
    clips: list[Clip]


def load(root: Path, names: list[str], models_dir: Path, real: Path, positives: int = wake_set.POSITIVES,
         minutes_scale: float = wake_set.MINUTES_SCALE) -> dict[str, Source]:
    """The named sources, made and featurised where they are missing."""
    sources = {}
    for name in names:
        if name == "espeak":
            folder = wake_set.set_folder(root, positives, minutes_scale)
            clips = [replace(c, source="espeak") for c in wake_set.build(folder, positives, minutes_scale)]
        elif name == "real":
            folder = wake_real.source_folder(root, real)
            clips = wake_real.build(folder, real)
        elif name == "piper":
            folder = wake_piper.source_folder(root)
            clips = wake_piper.build(folder)
        else:
            raise SystemExit(f"no source {name!r}: one of {', '.join(SOURCES)}")
        ensure(folder, clips, models_dir)
        sources[name] = Source(name, folder, clips)
    return sources
