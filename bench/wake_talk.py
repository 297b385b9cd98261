"""Should a talk-button press just after a near miss teach the device the household's word?
(issue 36: "the device was asked and did not hear"). Measured, not shipped.

A near miss: a request the default decision did not take whose wake score still rose to
NEAR (0.1) or more. If the person then presses the talk button, the rise's windows could be
learnt as their way of saying the word: a positive mark, trained the way `voice enroll`
trains a member (voices.py's examples: the best frames of the rise against the clip's other
windows), after which the household verifier admits weak scores that it scores 0.99 or more.

On each household of the people's recordings (bench/wake_real.py: a speaker with 4-5
takes; its first 3 are the ones `voice enroll` would use, the rest its requests, clean and
in noisy rooms): the household used the device with its first 3 takes, heard as recorded,
in pink noise at 20, 10 and 5 dB, in babble and in a room (the people's positives), and
pressed the talk button after each near miss among them. Those rises are learnt, and the
household's requests (its other takes) are decided with what was learnt. Printed per part,
beside the default decision without marks and with the household enrolled on purpose:

  near misses    the first takes' copies missed, and how many rose to NEAR (what a press teaches)
  recall         the household's requests taken: defaults, with the presses, enrolled
  false accepts  on the part's other people's speech, without and with (per hour)
  others         other people's takes of the word taken, without and with
  background     near misses per hour in other people's speech: a press within seconds of
                 one of those would teach the device a wrong word

Usage: .venv/bin/python bench/wake_talk.py [--real DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.wake_audio import Clip  # noqa: E402
from bench.wake_eval import SPLITS, Evaluation  # noqa: E402
from bench.wake_features import models  # noqa: E402
from bench.wake_sources import load as load_sources  # noqa: E402
from earmark.device.listening.decision import TUNED, rule_for  # noqa: E402
from earmark.device.listening.verifier import Verifier  # noqa: E402
from earmark.device.listening.voices import Enrolled, Member, examples  # noqa: E402
from earmark.device.settings import WakeSettings, WakeWordSettings  # noqa: E402

NEAR = 0.1  # a missed request whose score rose this far: a near miss a press could teach
WORD = "alexa"


def take_of(clip: Clip) -> int:
    """The recorded take a clip was made from (alexa-NNN-…, enrollment-NNN, request-NNN-…)."""
    return int(Path(clip.path).stem.split("-")[1])


def mark_from(evaluation: Evaluation, clips: list[Clip]) -> Verifier | None:
    """A household verifier from positive marks on these missed requests, as `voice enroll`
    would learn them; None if there are none."""
    if not clips:
        return None
    positives, negatives = [], []
    for clip in clips:
        f = evaluation.features[clip.key]
        p, n = examples(f["embeddings"], f[f"score_{WORD}"])
        positives.append(p)
        negatives.append(n)
    return Enrolled(WORD, {"household": Member(np.vstack(positives), np.vstack(negatives), "")}).verifier()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "speech" / "real")
    args = parser.parse_args()
    folder = ROOT / ".cache" / "wake-eval"
    files = models(folder / "device" / "models")
    evaluation = Evaluation(load_sources(folder, ["real"], folder / "device" / "models", args.real), files)
    rule = TUNED[WORD]
    voiced = rule_for(WakeSettings(), WakeWordSettings(WORD), True)
    for split in SPLITS:
        negatives = evaluation.part("real", split, "negative")
        hours = sum(c.seconds for c in negatives) / 3600
        others_all = evaluation.part("real", split, "positive", WORD)
        totals = dict.fromkeys(("requests", "copies", "missed", "near", "before", "after", "enrolled", "fa_before",
                                "fa_after", "others", "others_before", "others_after"), 0)
        for voice, (enrollment, requests) in evaluation.households("real", split).items():
            first = {take_of(c) for c in enrollment}
            used = [c for c in others_all if c.voice == voice and take_of(c) in first]
            missed = [c for c in used if not evaluation.detected(c, WORD, rule)]
            near = [c for c in missed if float(evaluation.features[c.key][f"score_{WORD}"].max()) >= NEAR]
            verifier = mark_from(evaluation, near)
            after_rule = voiced if verifier is not None else rule
            others = [c for c in others_all if c.voice != voice]
            totals["copies"] += len(used)
            totals["missed"] += len(missed)
            totals["near"] += len(near)
            totals["requests"] += len(requests)
            totals["before"] += evaluation.recall(requests, WORD, rule)[0]
            totals["after"] += evaluation.recall(requests, WORD, after_rule, verifier)[0]
            totals["enrolled"] += evaluation.recall(requests, WORD, voiced, evaluation.enroll(enrollment))[0]
            totals["fa_before"] += evaluation.false_accepts(negatives, WORD, rule)[0]
            totals["fa_after"] += evaluation.false_accepts(negatives, WORD, after_rule, verifier)[0]
            totals["others"] += len(others)
            totals["others_before"] += evaluation.recall(others, WORD, rule)[0]
            totals["others_after"] += evaluation.recall(others, WORD, after_rule, verifier)[0]
        households = len(evaluation.households("real", split))
        rises = sum(rise_count(evaluation.features[c.key][f"score_{WORD}"]) for c in negatives)
        print(f"== people, {split}: {households} households, {totals['requests']} requests, "
              f"{hours:.2f} h of other people's speech")
        print(f"  near misses     {totals['missed']} of the first takes' {totals['copies']} copies missed, "
              f"{totals['near']} of them rose to {NEAR}")
        print(f"  recall          defaults {totals['before']}/{totals['requests']}, with the presses "
              f"{totals['after']}/{totals['requests']}, enrolled {totals['enrolled']}/{totals['requests']}")
        print(f"  false accepts   {totals['fa_before'] / households / hours:.2f}/h -> "
              f"{totals['fa_after'] / households / hours:.2f}/h (over the {households} households: "
              f"{totals['fa_before']} -> {totals['fa_after']})")
        print(f"  others' takes   {totals['others_before']}/{totals['others']} -> "
              f"{totals['others_after']}/{totals['others']}")
        print(f"  background      {rises} rises to {NEAR} "
              f"({rises / hours:.1f}/h): each a near miss a press could follow")


def rise_count(scores: np.ndarray) -> int:
    """Separate rises of the score to NEAR (frames apart by more than a second)."""
    frames = np.flatnonzero(scores >= NEAR)
    return int(len(frames) and 1 + np.count_nonzero(np.diff(frames) > 12))


if __name__ == "__main__":
    main()
