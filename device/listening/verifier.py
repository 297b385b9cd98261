"""A verifier: a small model that looks again at a wake-word candidate's embeddings (the
window of 16 the wake model saw, pooled to their mean and standard deviation: 192 values)
and says how likely it is what we want. Logistic regression on standardised features,
L2-regularised, fitted by Newton's method: milliseconds on a Pi, numpy only.

Two kinds use it: the word verifiers shipped with Earmark (word_verifiers.npz, one per
built-in wake word: the decision's confirm check), and a household's voices
(voices.py: the voice check).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

WINDOW = 16  # embeddings per example: what the built-in wake models look at
L2 = 1.0


def pooled(window: np.ndarray) -> np.ndarray:
    """One example from a (WINDOW, 96) block of embeddings: mean and std of each value."""
    block = window.astype(np.float32)
    return np.concatenate((block.mean(axis=0), block.std(axis=0)))


def pooled_at(embeddings: np.ndarray, frames: np.ndarray | range) -> np.ndarray:
    """(len(frames), 192) examples: the pooled WINDOW embeddings ending at each frame."""
    return np.array([pooled(embeddings[i - WINDOW + 1:i + 1]) for i in frames]).reshape(-1, 2 * 96)


@dataclass(frozen=True)
class Verifier:
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray

    def score(self, window: np.ndarray) -> float:
        """How likely this window of embeddings is what the verifier was trained to accept."""
        z = (pooled(window) - self.mean) / self.scale
        return float(1 / (1 + np.exp(-(z @ self.weights + self.bias))))


def train(positives: np.ndarray, negatives: np.ndarray) -> Verifier:
    """L2-regularised logistic regression, Newton's method; the classes weighted equally."""
    x = np.vstack((positives, negatives)).astype(np.float64)
    y = np.concatenate((np.ones(len(positives)), np.zeros(len(negatives))))
    weight = np.where(y == 1, len(y) / (2 * len(positives)), len(y) / (2 * len(negatives)))
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = np.hstack(((x - mean) / scale, np.ones((len(x), 1))))
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], L2)
    penalty[-1] = 0.0  # no penalty on the bias
    for _ in range(25):
        p = 1 / (1 + np.exp(-(z @ w)))
        gradient = z.T @ (weight * (p - y)) + penalty * w
        hessian = (z * (weight * p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return Verifier(w[:-1].astype(np.float32), float(w[-1]), mean.astype(np.float32), scale.astype(np.float32))


def _package_npz(name: str) -> dict[str, np.ndarray]:
    data = resources.files(__package__ or "earmark.device.listening").joinpath(name)
    with data.open("rb") as f, np.load(f) as arrays:
        return {key: arrays[key] for key in arrays.files}


def word_verifiers() -> dict[str, Verifier]:
    """The shipped word verifiers (bench/make_verifiers.py made them), by wake word."""
    arrays = _package_npz("word_verifiers.npz")
    words = {key.split("/")[0] for key in arrays}
    return {word: Verifier(arrays[f"{word}/weights"], float(arrays[f"{word}/bias"]), arrays[f"{word}/mean"],
                           arrays[f"{word}/scale"]) for word in sorted(words)}


def negative_bank() -> np.ndarray:
    """Speech, music and noise (bench/make_verifiers.py made it): what a household verifier
    learns to refuse besides the household's own other sounds."""
    return _package_npz("negative_bank.npz")["examples"].astype(np.float32)


def positive_bank() -> dict[str, np.ndarray]:
    """Each built-in word as people, espeak-ng voices and a neural voice say it, the windows
    the wake model saw (bench/make_verifiers.py made it): what the household marks
    (marks.py) are told apart from."""
    return {word: examples.astype(np.float32) for word, examples in _package_npz("positive_bank.npz").items()}
