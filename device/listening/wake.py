"""Wake-word detection: openWakeWord's models on our own onnxruntime pipeline (features.py),
and Earmark's decision on their scores (decision.py), one detector per stream.

The detector is fed every frame the microphone delivers, recording or not, so its features
never go stale and nothing on the audio path ever recomputes them (openWakeWord's `reset`
takes 0.9 s on a Pi 3). microWakeWord (micro.py) runs on every frame beside it, a tenth of
its cost. The checks on a candidate run only then: the word and voice
verifiers on the embeddings the wake model just saw (a dot product each), and Silero VAD on
the last HELD_FRAMES frames of audio it holds (checks.py; the VAD is loaded the first time
a candidate needs it). After a gap in the stream (mute) `warm_up` keeps every
word quiet until the model's window holds only new audio.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from earmark.device.audio.source import FRAME_SECONDS
from earmark.device.listening.checks import HELD_FRAMES, speech_score
from earmark.device.listening.decision import Candidate, WakeDecision, rule_for
from earmark.device.listening.features import STARTUP_FRAMES, FeatureStream, SileroVad, WakeModel
from earmark.device.listening.learnt import Learnt
from earmark.device.listening.marks import examples_in
from earmark.device.listening.micro import MICRO_FRAMES, MicroWords
from earmark.device.listening.models import ModelFiles
from earmark.device.listening.verifier import WINDOW, word_verifiers
from earmark.device.settings import WakeSettings, wake_word_id

log = logging.getLogger(__name__)
RISE_FRAMES = 25  # 2 s of scores: a detection's rise, for what is kept of each recording


@dataclass(frozen=True)
class Detection:
    wake_word: str
    score: float
    frame_index: int  # the stream frame whose score completed the detection


def _log_refused(candidate: Candidate) -> None:
    log.debug("wake word %s (score %.3f) not taken: the %s check refused it", candidate.word, candidate.score,
             candidate.failed)


class _HeldAudioChecks:
    """The decision's checks on the audio and embeddings the detector holds right now."""

    def __init__(self, detector: WakeDetector, files: ModelFiles, learnt: Learnt) -> None:
        self._detector, self._files, self.learnt = detector, files, learnt
        self._words = word_verifiers()
        self._vad: SileroVad | None = None

    def _window(self) -> np.ndarray:
        return self._detector.features.embeddings[-WINDOW:]

    def confirm(self, word: str, index: int) -> float | None:
        verifier = self._words.get(word)
        return None if verifier is None else verifier.score(self._window())

    def voice(self, word: str, index: int) -> float | None:
        verifier = self.learnt.voices.get(word)
        return None if verifier is None else verifier.score(self._window())

    def marked(self, word: str, index: int) -> float | None:
        check = self.learnt.not_meant.get(word)
        return None if check is None else check.score(self._window())

    def micro(self, word: str, index: int) -> float | None:
        heard = [frame[word] for frame in self._detector.micro_scores if word in frame]
        return max(heard) if heard else None

    def speech(self, word: str, index: int) -> float:
        self._vad = self._vad or SileroVad(self._files.vad)
        return speech_score(self._vad, np.concatenate(self._detector.held))


class WakeDetector:
    def __init__(self, settings: WakeSettings, models: ModelFiles, learnt: Learnt | None = None) -> None:
        self.features = FeatureStream(models.melspectrogram, models.embedding)
        self.models = {name: WakeModel(path) for name, path in models.wake_words.items()}
        self.learnt = learnt = learnt or Learnt()
        rules = {wake_word_id(w.name): rule_for(settings, w, wake_word_id(w.name) in learnt.voices)
                 for w in settings.words}
        self._decision = WakeDecision(rules, math.ceil(settings.refractory_s / FRAME_SECONDS), STARTUP_FRAMES - 1,
                                      on_refused=_log_refused)
        self._checks = _HeldAudioChecks(self, models, learnt)
        self.micro = MicroWords([word for word, rule in rules.items() if rule.micro])
        self.micro_scores: deque[dict[str, float]] = deque(maxlen=MICRO_FRAMES)
        self.held: deque[np.ndarray] = deque(maxlen=HELD_FRAMES)
        self.scores = dict.fromkeys(rules, 0.0)  # the last frame's, for status and tuning
        self._recent = {word: deque[float](maxlen=RISE_FRAMES) for word in rules}  # what a mark may learn from
        self._frame_index = -1

    def learn(self, learnt: Learnt) -> None:
        """What the household taught it since it started (new marks from the portal): the
        next candidate is decided with it. Called from another thread; one assignment each."""
        self.learnt = learnt
        self._checks.learnt = learnt

    @property
    def window(self) -> int:
        """Frames of audio the models look at."""
        return max(model.window for model in self.models.values())

    def process(self, frame: np.ndarray) -> Detection | None:
        """Feed one 80 ms frame; a Detection when a wake word fires on it."""
        self._frame_index += 1
        self.features.push(frame)
        self.held.append(frame)
        self.scores = {name: model.score(self.features) for name, model in self.models.items()}
        for word, recent in self._recent.items():
            recent.append(self.scores[word])
        self.micro_scores.append(self.micro.push(frame))
        found = self._decision.step(self._frame_index, self.scores, self._checks)
        if found is None:
            return None
        log.info("wake word %s (score %.3f)", found.word, found.score)
        return Detection(found.word, round(found.score, 4), found.index)

    def rise_examples(self, word: str) -> np.ndarray:
        """The windows of the last RISE_FRAMES frames a mark of this wake would learn from
        (marks.examples_in): kept with the clip, so the household can mark it later."""
        scores = np.array(self._recent[word], dtype=np.float32)
        embeddings = self.features.embeddings[-(len(scores) + WINDOW - 1):]
        aligned = np.concatenate((np.zeros(len(embeddings) - len(scores), np.float32), scores))
        return examples_in(embeddings, aligned)

    def warm_up(self) -> None:
        """The stream had a gap: ignore scores until the window holds only audio from after it."""
        self._decision.hold(self.window, self._frame_index)
