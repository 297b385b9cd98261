"""Streaming conversion to 16 kHz: an anti-alias FIR with carried state, then linear
interpolation on an exact rational clock, so any chunking of the input gives the same output."""

from __future__ import annotations

import numpy as np

TARGET_RATE = 16_000


def lowpass_taps(count: int, cutoff_hz: float, rate: int) -> np.ndarray:
    """A Hamming-windowed sinc low-pass with unit gain at DC (as scipy's firwin designs it;
    numpy alone keeps scipy.signal's ~55 MB out of the device process)."""
    n = np.arange(count) - (count - 1) / 2
    taps = np.sinc(2 * cutoff_hz / rate * n) * np.hamming(count)
    return np.asarray(taps / taps.sum(), dtype=np.float64)


class StreamingResampler:
    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._taps: np.ndarray | None = None
        self._history = np.zeros(0)
        if in_rate > out_rate:
            # Cut a little below the new Nyquist (8 kHz at 16 kHz) so nothing folds back.
            self._taps = lowpass_taps(63, 0.45 * out_rate, in_rate)
            self._history = np.zeros(len(self._taps) - 1)
        # Position of the next output sample, in input samples times out_rate (exact integer).
        self._next = 0
        self._carry: np.ndarray = np.zeros(0)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Float or int samples in, float64 samples at `out_rate` out."""
        x = samples.astype(np.float64)
        if self.in_rate == self.out_rate:
            return x
        if self._taps is not None:
            padded = np.concatenate((self._history, x))
            self._history = padded[len(padded) - (len(self._taps) - 1):]
            x = np.convolve(padded, self._taps, mode="valid")
        buf = np.concatenate((self._carry, x))
        last = len(buf) - 1  # interpolation needs a sample on each side
        if last < 1:
            self._carry = buf
            return np.zeros(0)
        # Output k sits at input position (next + k*in_rate) / out_rate and needs the input
        # sample after it, so it must lie strictly before the last sample.
        limit = last * self.out_rate
        count = max(0, -(-(limit - self._next) // self.in_rate))
        positions = self._next + np.arange(count, dtype=np.int64) * self.in_rate
        index = positions // self.out_rate
        frac = (positions % self.out_rate) / self.out_rate
        out = buf[index] * (1.0 - frac) + buf[index + 1] * frac
        self._next += count * self.in_rate
        # Keep the input from the last used sample on, and rebase the clock onto it.
        keep_from = min(self._next // self.out_rate, last)
        self._carry = buf[keep_from:]
        self._next -= keep_from * self.out_rate
        return out
