"""Voice activity for the end of an utterance: Silero VAD (the ONNX model that ships with
openWakeWord's models) scored on each 80 ms frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from earmark.device.listening.features import SileroVad


class SpeechDetector:
    def __init__(self, model_path: Path, threshold: float = 0.5) -> None:
        self._vad = SileroVad(model_path)
        self.threshold = threshold

    def reset(self) -> None:
        self._vad.reset()

    def is_speech(self, frame: np.ndarray) -> bool:
        return self._vad.probability(frame) >= self.threshold
