"""Voice activity detection for the end of an utterance: Silero VAD (the ONNX model that
ships with openWakeWord's models) scored on each 80 ms frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SpeechDetector:
    def __init__(self, model_path: Path, threshold: float = 0.5) -> None:
        from earmark.device.listening.wake import import_openwakeword

        import_openwakeword()
        from openwakeword.vad import VAD

        self._vad = VAD(model_path=str(model_path))
        self.threshold = threshold

    def reset(self) -> None:
        self._vad.reset_states()

    def is_speech(self, frame: np.ndarray) -> bool:
        # Silero takes 30-64 ms windows; two 640-sample halves cover the 80 ms frame.
        return float(self._vad.predict(frame, frame_size=640)) >= self.threshold
