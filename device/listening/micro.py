"""The second wake-word model family: microWakeWord, whose errors differ from openWakeWord's.

openWakeWord's models were trained on synthetic speech; on hours of people reading English
they wake on near-words ("Alisa is not very good", "I lack the ability") about once an hour
(bench/wake_eval.py). microWakeWord's models (Kevin Ahrendt's, as ESPHome and Home
Assistant's voice satellites ship them) are a different network on different features
(TensorFlow Lite Micro's audio front end, 10 ms steps), trained with hours of real speech as
negatives. The decision (decision.py, `micro`) asks that both families hear the word: a
candidate openWakeWord admits must also have microWakeWord's probability at a bar well
below its own cut-off, within the last MICRO_FRAMES frames.

pymicro-wakeword carries the models (alexa, hey_jarvis, hey_mycroft) and TensorFlow Lite's
C library in one wheel, Apache-2.0, x86_64 and aarch64; pymicro-features (its front end, a
small C++ extension, an aarch64 wheel too). It runs on every frame, at about a tenth of
openWakeWord's CPU (bench/device_loop.py), so its score is there the moment a candidate
arises and no audio is ever recomputed. Only the words whose rule asks for it are loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MICRO_WORDS = ("alexa", "hey_jarvis", "hey_mycroft")  # the built-in words microWakeWord has a model for
MICRO_FRAMES = 6  # frames (480 ms) over which the two models' peaks may fall apart


class MicroWords:
    """microWakeWord's probability for each word it has a model for, per 80 ms frame: the
    highest of the (sliding-window) probabilities its 30 ms steps gave within the frame."""

    def __init__(self, words: list[str]) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        self._frontend = MicroWakeWordFeatures()
        self._models: dict[str, Any] = {w: MicroWakeWord.from_builtin(Model(w)) for w in words if w in MICRO_WORDS}

    @property
    def words(self) -> list[str]:
        return list(self._models)

    def push(self, frame: np.ndarray) -> dict[str, float]:
        if not self._models:
            return {}
        best = dict.fromkeys(self._models, 0.0)
        for features in self._frontend.process_streaming(frame.astype("<i2").tobytes()):
            for word, model in self._models.items():
                best[word] = max(best[word], model.process_streaming_prob(features) or 0.0)
        return best
