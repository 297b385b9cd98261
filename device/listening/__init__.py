"""Listening: the wake-word detector (openWakeWord on onnxruntime), the speech detector
(Silero VAD), their model files, and the recorder that turns frames into a recording."""

from earmark.device.listening.models import ModelError, fetch_models, locate_models
from earmark.device.listening.recorder import Recorder, Recording

__all__ = ["ModelError", "Recorder", "Recording", "fetch_models", "locate_models"]
