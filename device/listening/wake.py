"""Wake-word detection: openWakeWord's models on our own onnxruntime pipeline
(features.py), one detector per stream, with per-word thresholds, patience and a
refractory period.

The detector is fed every frame the microphone delivers, recording or not, so its features
never go stale and nothing on the audio path ever recomputes them (openWakeWord's `reset`
takes 0.9 s on a Pi 3). After a detection the refractory period keeps the same wake word
from firing again; after a gap in the stream (mute) `warm_up` ignores scores until the
model's window holds only new audio.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from earmark.device.audio.source import FRAME_SECONDS
from earmark.device.listening.features import STARTUP_FRAMES, FeatureStream, WakeModel
from earmark.device.listening.models import ModelFiles
from earmark.device.settings import WakeSettings, wake_word_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    wake_word: str
    score: float
    frame_index: int  # the stream frame whose score completed the detection


class WakeDetector:
    def __init__(self, settings: WakeSettings, models: ModelFiles) -> None:
        self._features = FeatureStream(models.melspectrogram, models.embedding)
        self._models = {name: WakeModel(path) for name, path in models.wake_words.items()}
        self._thresholds = {wake_word_id(w.name): w.threshold for w in settings.words}
        self._patience = settings.patience
        self._refractory_frames = math.ceil(settings.refractory_s / FRAME_SECONDS)
        self._above = dict.fromkeys(self._thresholds, 0)
        self.scores = dict.fromkeys(self._thresholds, 0.0)  # the last frame's, for status and tuning
        self._quiet_until = STARTUP_FRAMES - 1
        self._frame_index = -1

    @property
    def window(self) -> int:
        """Frames of audio the models look at."""
        return max(model.window for model in self._models.values())

    def process(self, frame: np.ndarray) -> Detection | None:
        """Feed one 80 ms frame; a Detection when a wake word fires on it."""
        self._frame_index += 1
        self._features.push(frame)
        best: Detection | None = None
        for name, model in self._models.items():
            score = model.score(self._features)
            self.scores[name] = score
            if self._frame_index <= self._quiet_until:
                self._above[name] = 0
                continue
            self._above[name] = self._above[name] + 1 if score >= self._thresholds[name] else 0
            if self._above[name] >= self._patience and (best is None or score > best.score):
                best = Detection(name, round(score, 4), self._frame_index)
        if best is not None:
            log.info("wake word %s (score %.3f)", best.wake_word, best.score)
            self._quiet_until = self._frame_index + self._refractory_frames
            self._above = dict.fromkeys(self._above, 0)
        return best

    def warm_up(self) -> None:
        """The stream had a gap: ignore scores until the window holds only audio from after it."""
        self._quiet_until = max(self._quiet_until, self._frame_index + self.window)
        self._above = dict.fromkeys(self._above, 0)
