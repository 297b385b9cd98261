"""The "household with an Alexis and an Alessia" scenario of the household marks
(device/listening/marks.py): people near the device say names close to the wake word,
the household marks what woke it, and the device must stop waking on those names in
other sentences and other voices, while hearing the word as well as before.

Clips, in .cache/wake-eval/marks-<key>/ (made once, featurised like every source):
each name in NAMES inside each sentence of a part, said by each voice of the part, clean
and with pink noise at 10 dB under it, with a second of room either side.

  marks     espeak-ng voices MARK_VOICES and Piper's joe at pitches -300, 0, +200;
            sentences SENTENCES[0::2]: what the household marks
  held-out  espeak-ng voices HELD_VOICES and joe at -200, +100, +300; SENTENCES[1::2]:
            the same names, never marked, in other voices and other sentences

The household marks every clip of the marks part (as `earmark-device voice not-meant` does:
the windows where alexa's score rose), and the device's decision is replayed with what it
learnt, and without, on the held-out part and on every part of every source of
bench/wake_eval.py: recall and false accepts must not move, except where the marks are.

Usage: .venv/bin/python bench/wake_marks.py [--sources espeak,real,piper] [--real DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.wake_audio import RATE, Clip, heard_in, write_clip  # noqa: E402

SOURCE_VERSION = 1
NAMES = ("Alexis", "Alessia")
SENTENCES = ("{n} is not very good at volleyball", "I asked {n} to call me back tonight",
             "{n}, dinner is ready", "have you seen {n}'s keys anywhere", "tell {n} the bus is late",
             "{n} said the film was too long", "can {n} come to the party on Saturday",
             "I think {n} left the door open", "{n} likes the farmer's market", "we should ask {n} about it",
             "did {n} finish the homework", "{n} and I went for a walk")
MARK_VOICES = ("en-us", "en-gb+f3", "en-gb-x-rp+m4", "en-029+f2")
HELD_VOICES = ("en-gb-scotland+f2", "en-us-nyc+m3", "en-gb-x-gbclan", "en-gb-x-gbcwmd+f5")
PITCHES = {"marks": (-300, 0, 200), "held-out": (-200, 100, 300)}
CONDITIONS = (("clean", 0), ("pink", 10))


def build(folder: Path, seed: int = 0) -> list[Clip]:
    """The scenario's clips in `folder` (made if its manifest is missing)."""
    from bench.wake_piper import Piper
    from bench.wake_set import say

    manifest = folder / "manifest.json"
    if manifest.exists():
        return [Clip(**c) for c in json.loads(manifest.read_text())]
    rng, pick = np.random.default_rng(seed), random.Random(seed)
    piper = Piper()
    clips: list[Clip] = []
    for s, (split, voices) in enumerate((("marks", MARK_VOICES), ("held-out", HELD_VOICES))):
        speakers = [(f"espeak {v}", v) for v in voices] + [(f"joe {p:+d}", p) for p in PITCHES[split]]
        for name in NAMES:
            for i, sentence in enumerate(SENTENCES[s::2]):
                text = sentence.format(n=name)
                for who, voice in speakers:
                    if isinstance(voice, str):
                        spoken = say(text, voice, pick.randint(120, 190), pick.randint(30, 70))
                        spoken /= np.abs(spoken).max() or 1
                    else:
                        spoken = piper.say(text, voice, pick)
                    room = np.zeros(RATE, np.float32)
                    audio = np.concatenate((room, 0.5 * spoken, room))
                    for condition, snr in CONDITIONS:
                        heard, label = heard_in(audio, condition, snr, rng, [])
                        floor = rng.normal(0, 20, len(heard))
                        samples = np.clip(heard * 32768 + floor, -32768, 32767).astype(np.int16)
                        path = f"{split}/{name}-{i:02d}-{who.replace(' ', '_')}-{label}.wav"
                        clips.append(write_clip(folder, path, samples, Clip("", split, "negative",
                                                                             f"{name} {label}", None, who, 0,
                                                                             "marks")))
    manifest.write_text(json.dumps([asdict(c) for c in clips], indent=1))
    return clips


def source_folder(root: Path) -> Path:
    key = hashlib.sha256(json.dumps([SOURCE_VERSION, NAMES, SENTENCES, MARK_VOICES, HELD_VOICES,
                                     PITCHES]).encode()).hexdigest()[:10]
    return root / f"marks-{key}"


def main() -> None:
    from bench.wake_eval import REAL, SPLITS, Evaluation, fa_cell, recall_cell
    from bench.wake_features import ensure, load, models
    from bench.wake_sources import SOURCES, Source
    from bench.wake_sources import load as load_sources
    from earmark.device.listening.decision import TUNED, rule_for
    from earmark.device.listening.marks import NotMeant, examples_in
    from earmark.device.listening.verifier import positive_bank
    from earmark.device.settings import WakeSettings, WakeWordSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, of " + ", ".join(SOURCES))
    parser.add_argument("--real", type=Path, default=REAL)
    parser.add_argument("--models", type=Path, default=ROOT / ".cache" / "wake-eval" / "device" / "models")
    args = parser.parse_args()
    root = ROOT / ".cache" / "wake-eval"
    sources = load_sources(root, args.sources.split(","), args.models, args.real.resolve())
    folder = source_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    scenario = build(folder)
    ensure(folder, scenario, args.models)
    sources["household"] = Source("household", folder, scenario)
    evaluation = Evaluation(sources, models(args.models))
    word = "alexa"
    marked = [c for c in scenario if c.split == "marks"]
    learnt = np.vstack([examples_in((f := load(folder, c))["embeddings"].astype(np.float32), f[f"score_{word}"])
                        for c in marked])
    print(f"marked {len(marked)} recordings of the household's marks part: {len(learnt)} windows learnt")
    enrolled = rule_for(WakeSettings(), WakeWordSettings(word), enrolled=True)
    table = ["| source, part | decision | recall clean | recall noisy/room | false accepts |", "|---|---|---|---|---|"]
    try:
        for name, check in (("before the marks", None), ("after the marks", NotMeant(learnt, positive_bank()[word]))):
            evaluation.checks.not_meant = {word: check} if check is not None else {}
            for split in ("marks", "held-out"):
                row = evaluation.row([], evaluation.part("household", split, "negative"), word, TUNED[word])
                table.append(f"| household names, {split} | {name} | - | - | {row['fa']:.0f} wakes in "
                             f"{len(evaluation.part('household', split, 'negative'))} sentences |")
            for source in args.sources.split(","):
                for split in SPLITS:
                    row = evaluation.source_row(source, split, word, TUNED[word])
                    table.append(f"| {source}, {split} | {name} | {recall_cell(row, 'clean')} | "
                                 f"{recall_cell(row, 'noisy')} | {fa_cell(row)} |")
                    if evaluation.households(source, split):
                        row = evaluation.household_row(source, split, enrolled, True)
                        table.append(f"| {source}, {split}, households enrolled | {name} | "
                                     f"{recall_cell(row, 'all')} | | {fa_cell(row)} |")
                print("\n".join(table[-4:]), flush=True)
    finally:
        evaluation.checks.save()
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
