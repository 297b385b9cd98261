"""Wake-word detection: openWakeWord on onnxruntime, one detector state per stream, with
per-word thresholds, patience and a refractory period of our own (openWakeWord cannot
combine its patience and debounce)."""

from __future__ import annotations

import logging
import math
import sys
import types
from dataclasses import dataclass

import numpy as np

from earmark.device.audio.source import FRAME_SECONDS
from earmark.device.listening.models import ModelFiles
from earmark.device.settings import WakeSettings, wake_word_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    wake_word: str
    score: float
    frame_index: int  # the stream frame whose score completed the detection


def import_openwakeword() -> None:
    """Import openWakeWord without its custom-verifier training module, which Earmark never
    uses and which drags scikit-learn and scipy (~75 MB of resident memory on a Pi) in with it."""
    if "openwakeword" not in sys.modules:
        stub = types.ModuleType("openwakeword.custom_verifier_model")

        def train_custom_verifier(*_: object, **__: object) -> None:
            raise NotImplementedError("custom verifier training is not part of Earmark")

        stub.train_custom_verifier = train_custom_verifier  # type: ignore[attr-defined]
        sys.modules.setdefault("openwakeword.custom_verifier_model", stub)
    import openwakeword  # noqa: F401


def load_wake_model(models: ModelFiles) -> object:
    import_openwakeword()
    from openwakeword.model import Model

    return Model(
        wakeword_models=[str(path) for path in models.wake_words.values()],
        inference_framework="onnx",
        melspec_model_path=str(models.melspectrogram),
        embedding_model_path=str(models.embedding),
    )


class WakeDetector:
    def __init__(self, settings: WakeSettings, models: ModelFiles) -> None:
        self._model = load_wake_model(models)
        # openWakeWord names each model by its file stem; map those back to wake-word ids.
        self._names = {path.stem: name for name, path in models.wake_words.items()}
        self._thresholds = {wake_word_id(w.name): w.threshold for w in settings.words}
        self._patience = settings.patience
        self._refractory_frames = math.ceil(settings.refractory_s / FRAME_SECONDS)
        self._above = dict.fromkeys(self._thresholds, 0)
        self._quiet_until = -1
        self._frame_index = -1

    def process(self, frame: np.ndarray) -> Detection | None:
        """Feed one 80 ms frame; a Detection when a wake word fires on it."""
        self._frame_index += 1
        scores = self._model.predict(frame)  # type: ignore[attr-defined]
        best: Detection | None = None
        for stem, score in scores.items():
            name = self._names[stem]
            if score >= self._thresholds[name]:
                self._above[name] += 1
            else:
                self._above[name] = 0
            fires = self._above[name] >= self._patience and self._frame_index > self._quiet_until
            if fires and (best is None or score > best.score):
                best = Detection(name, round(float(score), 4), self._frame_index)
        if best is not None:
            log.info("wake word %s (score %.3f)", best.wake_word, best.score)
            self.flush()
            self._quiet_until = self._frame_index + self._refractory_frames
        return best

    def flush(self) -> None:
        """Forget all buffered audio and scores, so stale audio cannot fire again."""
        self._model.reset()  # type: ignore[attr-defined]
        self._above = dict.fromkeys(self._above, 0)

    def skip(self, frames: int = 1) -> None:
        """Advance the stream clock over frames that were not fed (e.g. while recording)."""
        self._frame_index += frames
