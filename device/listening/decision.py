"""The wake decision: when a wake word's score becomes a recording.

Pure logic over one frame's scores at a time. The checks on a candidate are asked of an
injected `Checks`, so the device (wake.py: its models and the audio it holds) and the
evaluation harness (bench/wake_eval.py: the same checks on a recorded set) run this code.

For each wake word, every 80 ms frame:
  1. smooth: the mean of the word's last `smooth` scores;
  2. candidate: the smoothed score at or above `threshold` for `patience` frames in a row;
  3. checks on a candidate, cheapest first, each a score against its own bar:
       confirm  the word's verifier (verifier.py, shipped for the built-in words): a
                second model on the same embeddings the wake model saw, trained on the
                candidates the wake model raises in speech that is not the word;
       voice    the household's verifier, when voices are enrolled for the word
                (`earmark-device voice enroll`);
       speech   Silero VAD over the word's own audio: music, noise and a TV's jingles
                cannot wake the device, whatever the word model thinks of them.
     A check with no model for the word (a custom wake word has no word verifier; a word
     with no voices enrolled has no voice check) passes. A candidate that fails a check is
     dropped and the next frame of the same rise tries again: the verifiers on every frame
     (a dot product each; a rise's first frames hold only the start of the word), the
     speech check on at most `attempts` frames, and then the word waits for its score to
     fall;
  4. after a detection, no detection of any word for the refractory period.
Frames before `quiet_until` (start-up, the gap after mute) never make a candidate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from earmark.device.settings import WakeSettings, WakeWordSettings, wake_word_id


@dataclass(frozen=True)
class WordRule:
    """How one wake word's scores become a detection."""

    threshold: float = 0.5
    enrolled_threshold: float | None = None  # the threshold once a household voice is enrolled
    patience: int = 1  # frames in a row at or above the threshold
    smooth: int = 1  # frames averaged
    confirm: float = 0.0  # the word verifier's bar (0: no check)
    voice: float = 0.5  # the household verifier's bar, where one is enrolled
    speech: float = 0.0  # the speech check's bar (0: no check)
    attempts: int = 3  # frames of one rise that may reach the speech check


class Checks(Protocol):
    """The second looks at a candidate, each a score in 0..1 for `word` at frame `index`, or
    None where the word has no model for that check."""

    def confirm(self, word: str, index: int) -> float | None: ...

    def voice(self, word: str, index: int) -> float | None: ...

    def speech(self, word: str, index: int) -> float: ...


@dataclass(frozen=True)
class Candidate:
    word: str
    score: float  # the smoothed score that made it
    index: int
    failed: str  # "" if every check passed, else the check that dropped it


class WakeDecision:
    def __init__(self, rules: dict[str, WordRule], refractory_frames: int, quiet_until: int = -1,
                 on_refused: Callable[[Candidate], None] = lambda candidate: None) -> None:
        self.rules = rules
        self.on_refused = on_refused  # told of each candidate a check refused (logs, tuning)
        self.refractory = refractory_frames
        self.quiet_until = quiet_until
        self._recent: dict[str, deque[float]] = {word: deque(maxlen=rule.smooth) for word, rule in rules.items()}
        self._run = dict.fromkeys(rules, 0)
        self._tried = dict.fromkeys(rules, 0)
        self.smoothed = dict.fromkeys(rules, 0.0)

    def step(self, index: int, scores: dict[str, float], checks: Checks) -> Candidate | None:
        """Frame `index`'s raw scores in; the accepted detection, if any."""
        best: Candidate | None = None
        for word, rule in self.rules.items():
            recent = self._recent[word]
            recent.append(scores[word])
            smoothed = self.smoothed[word] = sum(recent) / len(recent)
            if smoothed < rule.threshold:
                self._run[word] = self._tried[word] = 0
                continue
            self._run[word] += 1
            if (index <= self.quiet_until or self._run[word] < rule.patience
                    or self._tried[word] >= rule.attempts or (best is not None and best.score >= smoothed)):
                continue
            candidate = Candidate(word, smoothed, index, self._failed(word, rule, index, checks))
            if candidate.failed:
                self.on_refused(candidate)
            else:
                best = candidate
        if best is not None:
            self.quiet_until = index + self.refractory
            self._run = dict.fromkeys(self._run, 0)
            self._tried = dict.fromkeys(self._tried, 0)
        return best

    def hold(self, frames: int, index: int) -> None:
        """No candidate until `frames` after `index` (a gap in the stream: mute, a lost mic)."""
        self.quiet_until = max(self.quiet_until, index + frames)
        self._run = dict.fromkeys(self._run, 0)
        self._tried = dict.fromkeys(self._tried, 0)

    def _failed(self, word: str, rule: WordRule, index: int, checks: Checks) -> str:
        if rule.confirm and (score := checks.confirm(word, index)) is not None and score < rule.confirm:
            return "confirm"
        if (score := checks.voice(word, index)) is not None and score < rule.voice:
            return "voice"
        if rule.speech:
            self._tried[word] += 1
            if checks.speech(word, index) < rule.speech:
                return "speech"
        return ""


GENERIC = WordRule()  # a custom model: openWakeWord's threshold, and no checks it was not tuned with
# The built-in words' rules, chosen on the tuned part of bench/wake_eval.py's set by the rule
# its --tune prints (of the rules with at least bare openWakeWord's recall, the fewest false
# accepts); its held-out part, never tuned on, gives the figures in the README.
TUNED: dict[str, WordRule] = {
    "alexa": WordRule(threshold=0.05, enrolled_threshold=0.02, confirm=0.98, voice=0.9, speech=0.5),
    "hey_jarvis": WordRule(threshold=0.1, confirm=0.99, speech=0.5),
}


def rule_for(wake: WakeSettings, word: WakeWordSettings, enrolled: bool = False) -> WordRule:
    """How this word's scores become a detection: its tuned rule (or GENERIC for a custom
    model), with whatever the config sets. With a household voice `enrolled` for the word the
    rule's enrolled threshold applies: the wake model hears some voices weakly (in noise, a
    tenth of its usual score), and the household's own verifier can tell their word at
    scores the word verifier alone could not be trusted with."""
    rule = TUNED.get(wake_word_id(word.name), GENERIC)
    if enrolled and rule.enrolled_threshold is not None:
        rule = replace(rule, threshold=rule.enrolled_threshold)
    given: dict[str, Any] = {"threshold": word.threshold, "patience": word.patience or wake.patience or None,
                             "smooth": word.smooth, "speech": word.speech_check, "confirm": word.confirm_check,
                             "voice": word.voice_check}
    return replace(rule, **{k: v for k, v in given.items() if v is not None})
