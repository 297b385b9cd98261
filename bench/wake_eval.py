"""Benchmark: how often the device wakes when it should, and when it should not, on every
source of speech at once (bench/wake_sources.py: espeak-ng voices, people's recordings, a
neural voice), each with a tuned part and a held-out part reported apart.

Builds (once) each source's labelled clips and their per-frame features, then replays every
frame through the device's own decision (device/listening/decision.py, its verifiers on the
clip's embeddings and its speech check, device/listening/checks.py, on the clip's audio) and
prints, per source and part, for bare openWakeWord at 0.5 and for Earmark's defaults:

  recall         positives (the word starting a request) with a detection: clean, and in
                 noise or a room
  false accepts  detections in the negatives (other speech; for espeak also music and TV),
                 per hour of them
  households     a voice enrolled from its enrollment samples: recall on its own requests,
                 false accepts on the part's negatives, other voices' alexa still taken
  an ROC         recall and false accepts as the threshold moves, bare | Earmark

`--tune` prints the grid the defaults are chosen from, on the tuned parts of all sources
together, and the rule chosen as the goals read: of the rules that on every source's tuned
part hear at least as many positives as bare openWakeWord and wake no more often in its
negatives, the most of people's takes (the real source), then the fewest false accepts (the
mean over sources of each one's rate); then, over that rule, the word verifier's veto: the
strictest bar that still hears as many of every source's tuned positives as bare openWakeWord.
In that grid a clip is checked by a word verifier trained on the other half of the tuned parts
(2-fold). `--summary` prints only the table (markdown).
The speech check's scores are cached beside each source, so a second run only replays.

Usage: .venv/bin/python bench/wake_eval.py [--sources espeak,real,piper] [--tune] [--summary]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.make_verifiers import word_verifier  # noqa: E402
from bench.wake_audio import Clip, read_wav  # noqa: E402
from bench.wake_features import load, models  # noqa: E402
from bench.wake_set import WORDS  # noqa: E402
from bench.wake_sources import DESCRIBED, SOURCES, Source  # noqa: E402
from bench.wake_sources import load as load_sources  # noqa: E402
from earmark.device.audio.source import FRAME_SAMPLES  # noqa: E402
from earmark.device.listening.checks import HELD_FRAMES, speech_score  # noqa: E402
from earmark.device.listening.decision import TUNED, WakeDecision, WordRule, rule_for  # noqa: E402
from earmark.device.listening.enrollment import sample_examples  # noqa: E402
from earmark.device.listening.features import STARTUP_FRAMES, FeatureStream, SileroVad  # noqa: E402
from earmark.device.listening.marks import NotMeant  # noqa: E402
from earmark.device.listening.micro import MICRO_FRAMES  # noqa: E402
from earmark.device.listening.models import ModelFiles  # noqa: E402
from earmark.device.listening.verifier import WINDOW, Verifier, word_verifiers  # noqa: E402
from earmark.device.listening.voices import Enrolled, Member  # noqa: E402
from earmark.device.settings import WakeSettings, WakeWordSettings  # noqa: E402

BARE = WordRule(threshold=0.5)
SPLITS = ("tuned", "held-out")
REFRACTORY = round(WakeSettings().refractory_s / 0.08)
REAL = ROOT.parent / "shared" / "speech" / "real"
COUNTS = ("_hits", "_total", "fa", "hours", "others")  # the row keys that add up over households


class SetChecks:
    """The decision's checks on a recorded clip: the device's own verifiers on the clip's
    embeddings, and its speech check on the audio up to the candidate's frame (those scores
    cached beside each source: they do not depend on the rules)."""

    def __init__(self, sources: dict[str, Source], files: ModelFiles) -> None:
        self.sources = sources
        self.cache: dict[str, dict[str, float]] = {
            name: json.loads(p.read_text()) if (p := s.folder / "checks.json").exists() else {}
            for name, s in sources.items()}
        self._vad = SileroVad(files.vad)
        self.words = word_verifiers()
        self._start = FeatureStream(files.melspectrogram, files.embedding).embeddings[-WINDOW:]  # the priming
        self.folds: dict[str, dict[str, Verifier]] = {}  # clip key -> word verifiers that never saw it (--tune)
        self.clip: Clip | None = None
        self._audio: np.ndarray | None = None
        self.embeddings: np.ndarray | None = None
        self.features: dict[str, np.ndarray] = {}
        self.not_meant: dict[str, NotMeant] = {}  # the household's marks, where a run has learnt some
        self.verifier: Verifier | None = None

    def save(self) -> None:
        for name, cache in self.cache.items():
            (self.sources[name].folder / "checks.json").write_text(json.dumps(cache))

    def on(self, clip: Clip, features: dict[str, np.ndarray], verifier: Verifier | None = None) -> SetChecks:
        self.clip, self._audio, self.verifier = clip, None, verifier
        self.embeddings, self.features = features["embeddings"], features
        return self

    def _window(self, index: int) -> np.ndarray:
        """The WINDOW embeddings the wake model saw at frame `index`, as the device holds them:
        a clip's first frames follow the stream's priming."""
        assert self.embeddings is not None
        if index >= WINDOW - 1:
            return self.embeddings[index - WINDOW + 1:index + 1]
        return np.vstack((self._start[index + 1:], self.embeddings[:index + 1]))

    def confirm(self, word: str, index: int) -> float | None:
        assert self.clip is not None
        verifier = self.folds.get(self.clip.key, self.words).get(word)
        return None if verifier is None else verifier.score(self._window(index))

    def voice(self, word: str, index: int) -> float | None:
        return None if self.verifier is None or word != "alexa" else self.verifier.score(self._window(index))

    def micro(self, word: str, index: int) -> float | None:
        heard = self.features.get(f"micro_{word}")
        return None if heard is None else float(heard[max(0, index + 1 - MICRO_FRAMES):index + 1].max())

    def marked(self, word: str, index: int) -> float | None:
        check = self.not_meant.get(word)
        return None if check is None else check.score(self._window(index))

    def speech(self, word: str, index: int) -> float:
        assert self.clip is not None
        cache = self.cache[self.clip.source]
        key = f"{self.clip.path}|speech|{index}"
        if key not in cache:
            if self._audio is None:
                self._audio = read_wav(self.sources[self.clip.source].folder / self.clip.path)
            held = self._audio[max(0, (index + 1 - HELD_FRAMES) * FRAME_SAMPLES):(index + 1) * FRAME_SAMPLES]
            cache[key] = speech_score(self._vad, held)
        return cache[key]


def busy_frames(scores: np.ndarray, rule: WordRule) -> np.ndarray:
    """The frames the decision must see to decide exactly as over the whole clip: every frame
    within `smooth` frames of a score at the rule's floor. Between them the scores are below
    the floor for at least `smooth` frames, so the decision rests there with a window of low
    scores, as it would have (the evaluation's shortcut: most frames of speech score ~0)."""
    near = np.convolve((scores >= rule.floor).astype(np.int32), np.ones(2 * rule.smooth + 1, np.int32), "same")
    return np.flatnonzero(near > 0)


def detections(scores: np.ndarray, word: str, rule: WordRule, checks: SetChecks) -> list[int]:
    """The frames where the device's decision, fed this clip's scores, detects `word`."""
    decision = WakeDecision({word: rule}, REFRACTORY, STARTUP_FRAMES - 1)
    return [i for i in busy_frames(scores, rule).tolist() if decision.step(i, {word: float(scores[i])}, checks)]


class Evaluation:
    def __init__(self, sources: dict[str, Source], files: ModelFiles) -> None:
        self.sources, self.files = sources, files
        self.checks = SetChecks(sources, files)
        self._enrolled: dict[str, Verifier] = {}
        self.features = {c.key: load(s.folder, c) for s in sources.values() for c in s.clips}

    def part(self, source: str, split: str, kind: str, word: str | None = None) -> list[Clip]:
        return [c for c in self.sources[source].clips
                if c.split == split and c.kind == kind and (word is None or c.word == word)]

    def detected(self, clip: Clip, word: str, rule: WordRule, verifier: Verifier | None = None) -> list[int]:
        f = self.features[clip.key]
        return detections(f[f"score_{word}"], word, rule, self.checks.on(clip, f, verifier))

    def recall(self, clips: list[Clip], word: str, rule: WordRule, verifier: Verifier | None = None) -> tuple[int, int]:
        return sum(bool(self.detected(c, word, rule, verifier)) for c in clips), len(clips)

    def false_accepts(self, clips: list[Clip], word: str, rule: WordRule,
                      verifier: Verifier | None = None) -> tuple[int, float]:
        return sum(len(self.detected(c, word, rule, verifier)) for c in clips), sum(c.seconds for c in clips) / 3600

    def row(self, positives: list[Clip], negatives: list[Clip], word: str, rule: WordRule,
            verifier: Verifier | None = None) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, clips in (("all", positives), ("clean", [c for c in positives if c.clean]),
                            ("noisy", [c for c in positives if not c.clean])):
            hits, total = self.recall(clips, word, rule, verifier)
            out |= {f"{name}_hits": hits, f"{name}_total": total, f"{name}": hits / total if total else float("nan")}
        fa, hours = self.false_accepts(negatives, word, rule, verifier)
        return out | {"fa": fa, "hours": hours, "fa_per_h": fa / hours if hours else float("nan")}

    def source_row(self, source: str, split: str, word: str, rule: WordRule) -> dict[str, float]:
        return self.row(self.part(source, split, "positive", word), self.part(source, split, "negative"), word, rule)

    def households(self, source: str, split: str) -> dict[str, tuple[list[Clip], list[Clip]]]:
        """voice -> (its enrollment clips, its requests)."""
        voices = sorted({c.voice for c in self.part(source, split, "enrollment")})
        return {v: ([c for c in self.part(source, split, "enrollment") if c.voice == v],
                    [c for c in self.part(source, split, "household") if c.voice == v]) for v in voices}

    def enroll(self, clips: list[Clip]) -> Verifier:
        """A household verifier from enrollment clips, as `earmark-device voice enroll` trains it
        (the device's own code on each clip's audio, clean and in noise), once per set of clips."""
        key = "|".join(c.key for c in clips)
        if key not in self._enrolled:
            positives, negatives = [], []
            for clip in clips:
                p, n, _ = sample_examples(read_wav(self.sources[clip.source].folder / clip.path), self.files, "alexa")
                positives.append(p)
                negatives.append(n)
            member = Member(np.vstack(positives), np.vstack(negatives), "")
            self._enrolled[key] = Enrolled("alexa", {"household": member}).verifier()
        return self._enrolled[key]

    def household_row(self, source: str, split: str, rule: WordRule, enrolled: bool) -> dict[str, float]:
        """Pooled over the part's households: recall on each one's requests, false accepts on
        the part's negatives (other voices), and other voices' alexa requests still taken."""
        total: dict[str, float] = {}
        for voice, (enrollment, requests) in self.households(source, split).items():
            verifier = self.enroll(enrollment) if enrolled else None
            others = [c for c in self.part(source, split, "positive", "alexa") if c.voice != voice]
            row = self.row(requests, self.part(source, split, "negative"), "alexa", rule, verifier)
            taken, offered = self.recall(others, "alexa", rule, verifier)
            for key, value in (row | {"others": taken, "others_total": offered}).items():
                if key.endswith(COUNTS):
                    total[key] = total.get(key, 0) + value
        for name in ("all", "clean", "noisy"):
            total[name] = total[f"{name}_hits"] / total[f"{name}_total"] if total.get(f"{name}_total") else float("nan")
        total["fa_per_h"] = total["fa"] / total["hours"] if total.get("hours") else float("nan")
        return total


def recall_cell(row: dict[str, float], name: str) -> str:
    if not row.get(f"{name}_total"):
        return "-"
    return f"{row[name]:.3f} ({row[f'{name}_hits']:.0f}/{row[f'{name}_total']:.0f})"


def fa_cell(row: dict[str, float]) -> str:
    return f"{row['fa_per_h']:.2f}/h ({row['fa']:.0f} in {row['hours']:.2f} h)"


def print_sources(evaluation: Evaluation) -> list[str]:
    """Every source's parts, bare and Earmark side by side; returns the markdown table."""
    table = ["| source, part | word | decision | recall clean | recall noisy/room | false accepts |",
             "|---|---|---|---|---|---|"]
    for source in evaluation.sources:
        print(f"\n== {source}: {DESCRIBED[source]}")
        for split in SPLITS:
            negatives = evaluation.part(source, split, "negative")
            print(f"  {split}: {sum(c.seconds for c in negatives) / 3600:.2f} h of negatives")
            for word in WORDS:
                for name, rule in (("bare openWakeWord @0.5", BARE), ("Earmark defaults", TUNED[word])):
                    row = evaluation.source_row(source, split, word, rule)
                    print(f"    {word:<11} {name:<23} recall clean {recall_cell(row, 'clean'):<20} "
                          f"noisy/room {recall_cell(row, 'noisy'):<20} false accepts {fa_cell(row)}", flush=True)
                    table.append(f"| {source}, {split} | {word} | {name} | {recall_cell(row, 'clean')} | "
                                 f"{recall_cell(row, 'noisy')} | {fa_cell(row)} |")
    return table


# The settings a deployment can change per word (deploy/earmark-device.example.toml), each measured
# against the default on every held-out part (the README's options table; --tune chose the defaults).
OPTIONS = {
    "without microWakeWord (micro_check 0)": {"micro": 0.0},
    "microWakeWord at 0.05 (micro_check 0.05)": {"micro": 0.05},
    "threshold 0.2 without the word verifier (confirm_check 0)": {"threshold": 0.2, "confirm": 0.0},
    "+ word verifier (confirm_check 0.995, confirm_from 0.3)": {"confirm": 0.995, "confirm_from": 0.3},
    "+ word verifier (confirm_check 0.98, confirm_from 0.05)": {"confirm": 0.98, "confirm_from": 0.05},
    "+ speech check 0.5": {"speech": 0.5},
    "without the word verifier's veto (veto_check 0)": {"veto": 0.0},
    "+ word verifier's veto at 0.9 (veto_check 0.9)": {"veto": 0.9},
    "+ smooth 2": {"smooth": 2},
    "+ patience 2": {"patience": 2},
}


def print_options(evaluation: Evaluation) -> list[str]:
    table = ["| held-out part | word | decision | recall clean | recall noisy/room | false accepts |",
             "|---|---|---|---|---|---|"]
    print("\n== options, against the defaults, on the held-out parts")
    for source in evaluation.sources:
        for word in WORDS:
            for name, change in {"defaults": {}, **OPTIONS}.items():
                row = evaluation.source_row(source, "held-out", word, replace(TUNED[word], **change))
                print(f"  {source:<7} {word:<11} {name:<56} recall {recall_cell(row, 'clean'):<18} "
                      f"{recall_cell(row, 'noisy'):<20} false accepts {fa_cell(row)}", flush=True)
                table.append(f"| {source} | {word} | {name} | {recall_cell(row, 'clean')} | "
                             f"{recall_cell(row, 'noisy')} | {fa_cell(row)} |")
    return table


def print_households(evaluation: Evaluation) -> list[str]:
    table = ["| source, part | households | decision | recall, own requests | false accepts (other voices) | "
             "others' alexa taken |", "|---|---|---|---|---|---|"]
    print("\n== households: alexa, each voice enrolled from its enrollment samples")
    enrolled = rule_for(WakeSettings(), WakeWordSettings("alexa"), enrolled=True)
    for source in evaluation.sources:
        for split in SPLITS:
            households = evaluation.households(source, split)
            if not households:
                continue
            sizes = ", ".join(f"{v} ({len(e)} samples)" for v, (e, _) in households.items())
            print(f"  {source}, {split}: {sizes}")
            for name, rule, enroll in (("bare openWakeWord @0.5", BARE, False),
                                       ("Earmark, not enrolled", TUNED["alexa"], False),
                                       ("Earmark, enrolled", enrolled, True)):
                row = evaluation.household_row(source, split, rule, enroll)
                others = f"{row['others']:.0f}/{row['others_total']:.0f}"
                print(f"    {name:<23} recall {recall_cell(row, 'all'):<20} false accepts {fa_cell(row)}   "
                      f"others' alexa taken {others}", flush=True)
                table.append(f"| {source}, {split} | {len(households)} | {name} | {recall_cell(row, 'all')} | "
                             f"{fa_cell(row)} | {others} |")
    return table


def print_roc(evaluation: Evaluation) -> None:
    for source in evaluation.sources:
        for split in SPLITS:
            print(f"\nROC, {source}, {split}: threshold: recall / false accepts per hour (bare | Earmark)")
            for word in WORDS:
                if not evaluation.part(source, split, "positive", word):
                    continue
                print(f"  {word}")
                for threshold in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
                    bare = evaluation.source_row(source, split, word, replace(BARE, threshold=threshold))
                    ours = evaluation.source_row(source, split, word, replace(TUNED[word], threshold=threshold))
                    print(f"    {threshold}: {bare['all']:.3f}/{bare['fa_per_h']:.2f} | "
                          f"{ours['all']:.3f}/{ours['fa_per_h']:.2f}", flush=True)


def cells(rows: dict[str, dict[str, float]]) -> str:
    """Recall / false accepts per hour, one cell per source: the tuning grids' lines."""
    return "  ".join(f"{r['all']:.3f}/{r['fa_per_h']:.2f}" for r in rows.values())


def tune(evaluation: Evaluation) -> None:
    """Each word's rule on the tuned parts of every source together (see the module's docstring)."""
    tuned = [c for s in evaluation.sources for kind in ("positive", "negative")
             for c in evaluation.part(s, "tuned", kind)]
    halves = [tuned[0::2], tuned[1::2]]
    for half, other in ((halves[0], halves[1]), (halves[1], halves[0])):
        verifiers = {word: word_verifier(evaluation.features, other, word) for word in WORDS}
        evaluation.checks.folds |= dict.fromkeys((c.key for c in half), verifiers)
    grid = [WordRule(threshold, patience, smooth, micro=micro)
            for threshold, patience, smooth, micro in itertools.product(
                (0.2, 0.3, 0.4, 0.5, 0.6), (1, 2), (1, 2), (0.0, 0.02, 0.05, 0.1, 0.3))]
    grid += [WordRule(threshold, patience, micro=0.05, speech=0.5)
             for threshold, patience in itertools.product((0.2, 0.3, 0.4, 0.5, 0.6), (1, 2))]
    grid += [WordRule(threshold, confirm=confirm, confirm_from=confirm_from, micro=micro)
             for threshold, micro in itertools.product((0.3, 0.5), (0.0, 0.05))
             for confirm, confirm_from in itertools.product((0.9, 0.98, 0.995), (0.05, 0.1, 0.2, 0.3))]
    for word in WORDS:
        sources = [s for s in evaluation.sources if evaluation.part(s, "tuned", "positive", word)]
        bare = {s: evaluation.source_row(s, "tuned", word, BARE) for s in evaluation.sources}
        print(f"\n{word}, tuned parts: threshold patience smooth confirm confirm_from micro speech: "
              f"recall / false accepts per hour per source ({', '.join(evaluation.sources)})")
        print("  bare @0.5: " + cells(bare))
        chosen: tuple[float, float, WordRule, float] | None = None
        for rule in grid:
            rows = {s: evaluation.source_row(s, "tuned", word, rule) for s in evaluation.sources}
            fa = float(np.mean([r["fa_per_h"] for r in rows.values()]))
            recall = float(np.mean([rows[s]["all"] for s in sources]))
            ok = (all(rows[s]["all"] >= bare[s]["all"] for s in sources)
                  and all(rows[s]["fa_per_h"] <= bare[s]["fa_per_h"] for s in rows))
            print(f"  {rule.threshold:<4} {rule.patience} {rule.smooth} {rule.confirm:<5} {rule.confirm_from:<4} "
                  f"{rule.micro:<4} {rule.speech:<3}: "
                  + cells(rows) + ("" if ok else "   (worse than bare somewhere)"), flush=True)
            people = rows["real"]["all"] if "real" in rows else recall
            if ok and (chosen is None or (-people, fa, -recall) < (-chosen[3], chosen[0], -chosen[1])):
                chosen = (fa, recall, rule, people)
        print(f"  chosen: {chosen[2] if chosen else None} (mean false accepts {chosen[0] if chosen else 0:.2f}/h, "
              f"mean recall {chosen[1] if chosen else 0:.3f})")
        if chosen:
            tune_veto(evaluation, word, chosen[2], sources, bare)
    tune_enrolled(evaluation)


VETOES = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def tune_veto(evaluation: Evaluation, word: str, rule: WordRule, sources: list[str],
              bare: dict[str, dict[str, float]]) -> None:
    """The word verifier's bar for what the score alone admits (`veto`). The tuned parts'
    false accepts are already none under the chosen rule, so they cannot choose it: the bar
    is the strictest that still hears at least as many positives as bare openWakeWord on
    every source's tuned part (each clip judged by a verifier that never saw it), the whole
    of the recall goal spent on refusing near-words. The held-out parts then show what it
    refuses there. `bare`: each source's tuned row for bare openWakeWord."""
    plain = {s: evaluation.source_row(s, "tuned", word, rule) for s in evaluation.sources}
    print(f"\n{word}, tuned parts, the word verifier's veto over the chosen rule: recall / false accepts per "
          f"hour per source ({', '.join(evaluation.sources)}), and the share of the takes it heard that each "
          "veto refuses")
    print("  bare @0.5: " + cells(bare))
    print("  no veto:   " + cells(plain))
    chosen = 0.0
    for veto in VETOES:
        rows = {s: evaluation.source_row(s, "tuned", word, replace(rule, veto=veto)) for s in evaluation.sources}
        ok = all(rows[s]["all"] >= bare[s]["all"] for s in sources)
        lost = ", ".join(f"{1 - rows[s]['all_hits'] / plain[s]['all_hits']:.1%}" for s in sources)
        print(f"  {veto:<9}: {cells(rows)}   refused {lost}" + ("" if ok else "   (hears fewer than bare somewhere)"),
              flush=True)
        if ok:
            chosen = veto
    print(f"  chosen: veto {chosen}")


def tune_enrolled(evaluation: Evaluation) -> None:
    """alexa's voice way, with each tuned part's households enrolled: of the (voice_from,
    voice) pairs that wake no more often in any source's negatives than the default does
    without enrollment, the most household recall (the mean over sources), then the fewest
    false accepts, then the lowest floor (the wake model's score is what loses a weakly heard
    voice), then the lowest bar."""
    default = rule_for(WakeSettings(), WakeWordSettings("alexa"))
    sources = [s for s in evaluation.sources if evaluation.households(s, "tuned")]
    plain = {s: evaluation.household_row(s, "tuned", default, False) for s in sources}
    print(f"\nalexa, tuned households enrolled ({', '.join(sources)}): voice_from voice: household recall / false "
          "accepts per hour per source")
    print("  not enrolled: " + cells(plain))
    chosen: tuple[float, float, WordRule] | None = None
    for voice_from, voice in itertools.product((0.005, 0.01, 0.02, 0.05, 0.1), (0.5, 0.8, 0.9, 0.95, 0.99)):
        rule = replace(default, voice=voice, voice_from=voice_from)
        rows = {s: evaluation.household_row(s, "tuned", rule, True) for s in sources}
        ok = all(rows[s]["fa_per_h"] <= plain[s]["fa_per_h"] for s in sources)
        recall = float(np.mean([r["all"] for r in rows.values()]))
        fa = float(np.mean([r["fa_per_h"] for r in rows.values()]))
        print(f"  {voice_from:<5} {voice:<4}: {cells(rows)}" + ("" if ok else "   (more false accepts than without)"),
              flush=True)
        if ok and (chosen is None or (-recall, fa, voice_from, voice)
                   < (-chosen[0], chosen[1], chosen[2].voice_from, chosen[2].voice)):
            chosen = (recall, fa, rule)
    print(f"  chosen: voice_from {chosen[2].voice_from}, voice {chosen[2].voice}" if chosen else "  chosen: none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, of " + ", ".join(SOURCES))
    parser.add_argument("--real", type=Path, default=REAL,
                        help="the folder of people's recordings, laid out as tests/data/people "
                             "(its README: where the whole set comes from)")
    parser.add_argument("--models", type=Path, default=ROOT / ".cache" / "wake-eval" / "device" / "models")
    parser.add_argument("--no-roc", action="store_true")
    parser.add_argument("--summary", action="store_true", help="only the tables, as markdown")
    parser.add_argument("--tune", action="store_true", help="print the grid the defaults were chosen from "
                                                             "(tuned parts only) and stop")
    args = parser.parse_args()
    files = models(args.models)
    sources = load_sources(ROOT / ".cache" / "wake-eval", args.sources.split(","), args.models, args.real.resolve())
    evaluation = Evaluation(sources, files)
    try:
        if args.tune:
            tune(evaluation)
            return
        tables = [*print_sources(evaluation), "", *print_households(evaluation), "", *print_options(evaluation)]
        if not args.no_roc and not args.summary:
            print_roc(evaluation)
        print("\n" + "\n".join(tables))
    finally:
        evaluation.checks.save()


if __name__ == "__main__":
    main()
