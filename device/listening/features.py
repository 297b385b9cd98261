"""openWakeWord's streaming pipeline on onnxruntime, without the openwakeword package.

The package (0.6) requires tflite-runtime on Linux, which has no wheels for Python 3.12+
(Raspberry Pi OS Trixie ships 3.13), and pulls scipy, scikit-learn, requests and tqdm onto
the Pi. What inference needs is three small steps, done here exactly as openWakeWord's
`AudioFeatures` and `Model.predict` do them for 80 ms frames:

    1280 new samples (+480 of context) → melspectrogram model → mel rows (x/10 + 2)
    the last 76 mel rows → embedding model → one 96-value embedding per frame
    the last N embeddings (N = the wake-word model's input length) → the wake-word model

tests/integration/test_features.py holds the scores to openWakeWord's own on the same audio.
Nothing here is slower than a frame: there is no reset that recomputes embeddings; a gap in
the stream is handled by `warm_up`, which ignores scores until the window holds only new audio.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from earmark.device.audio.source import FRAME_SAMPLES

MEL_CONTEXT = 160 * 3  # samples of the previous frame the melspectrogram needs
MEL_WINDOW = 76  # mel rows per embedding
MEL_ROWS_KEPT = 10 * 97  # about 10 s
EMBEDDINGS_KEPT = 120
STARTUP_FRAMES = 5  # openWakeWord scores its first five frames as 0
PRIMING_SECONDS = 4  # of noise whose embeddings a stream starts from, as openWakeWord's does


def onnx_session(path: Path) -> Any:
    """One single-threaded CPU session: the device runs several models per frame on a small
    CPU, and one thread each is what openWakeWord's published figures use."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class FeatureStream:
    """Embeddings for a stream of 80 ms int16 frames."""

    def __init__(self, melspectrogram: Path, embedding: Path, primed: bool = True) -> None:
        self._mel = onnx_session(melspectrogram)
        self._embed = onnx_session(embedding)
        self._raw = np.zeros(0, dtype=np.int16)
        self._mel_rows = np.ones((MEL_WINDOW, 32), dtype=np.float32)
        self.frames = 0
        # openWakeWord starts from the embeddings of 4 s of noise. A window of zeros is not the
        # same: over a quiet room's noise floor it made the alexa model score 0.77 at the fifth
        # frame, a wake on every start.
        self.embeddings = (_noise_embeddings(melspectrogram, embedding).copy() if primed
                           else np.zeros((EMBEDDINGS_KEPT, 96), dtype=np.float32))

    def push(self, frame: np.ndarray) -> None:
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"frames are {FRAME_SAMPLES} samples, not {len(frame)}")
        self._raw = np.concatenate((self._raw, frame))[-(FRAME_SAMPLES + MEL_CONTEXT):]
        mel = self._mel.run(None, {"input": self._raw[None, :].astype(np.float32)})[0]
        rows = np.squeeze(mel) / 10 + 2
        self._mel_rows = np.vstack((self._mel_rows, rows))[-MEL_ROWS_KEPT:]
        window = self._mel_rows[-MEL_WINDOW:].astype(np.float32)[None, :, :, None]
        embedding = self._embed.run(None, {"input_1": window})[0].reshape(1, -1)
        self.embeddings = np.vstack((self.embeddings[1:], embedding))
        self.frames += 1

    def last(self, count: int) -> np.ndarray:
        return self.embeddings[-count:][None, :, :]


@functools.cache
def _noise_embeddings(melspectrogram: Path, embedding: Path) -> np.ndarray:
    """The embeddings of PRIMING_SECONDS of noise (uniform ±1000, as openWakeWord's), once per process."""
    stream = FeatureStream(melspectrogram, embedding, primed=False)
    noise = np.random.default_rng(0).integers(-1000, 1000, PRIMING_SECONDS * 16_000).astype(np.int16)
    for frame in noise.reshape(-1, FRAME_SAMPLES):
        stream.push(frame)
    return stream.embeddings


class WakeModel:
    """One wake-word classifier over the last `window` embeddings."""

    def __init__(self, path: Path) -> None:
        self._session = onnx_session(path)
        self._input = self._session.get_inputs()[0].name
        self.window = int(self._session.get_inputs()[0].shape[1])

    def score(self, features: FeatureStream) -> float:
        return float(self._session.run(None, {self._input: features.last(self.window)})[0].reshape(-1)[0])


class SileroVad:
    """Silero VAD (the ONNX model shipped with openWakeWord's models): a speech probability
    for each 40 ms half of an 80 ms frame, averaged, with the model's state carried over."""

    def __init__(self, path: Path) -> None:
        self._session = onnx_session(path)
        self._rate = np.array(16_000, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((2, 1, 64), dtype=np.float32)
        self._c = np.zeros((2, 1, 64), dtype=np.float32)

    def probability(self, frame: np.ndarray, window: int = 640) -> float:
        scores = []
        for start in range(0, len(frame), window):
            chunk = (frame[start:start + window] / 32767).astype(np.float32)[None, :]
            out, self._h, self._c = self._session.run(
                None, {"input": chunk, "h": self._h, "c": self._c, "sr": self._rate})
            scores.append(float(out[0][0]))
        return float(np.mean(scores))
