"""The speech check on a wake-word candidate (decision.py): Silero VAD over the audio held
when it arose. The device (wake.py) and the evaluation harness (bench/wake_eval.py) call
this same function. It runs only on a candidate that passed the cheaper checks, which is
rare, so it may cost more than a frame's worth of CPU (about 14 Silero steps).

`held` is int16 audio ending with the candidate's frame, up to HELD_FRAMES frames of it (less
at the start of a stream, which counts as silence).
"""

from __future__ import annotations

import numpy as np

from earmark.device.audio.source import FRAME_SAMPLES
from earmark.device.listening.features import SileroVad

SPEECH_FRAMES = 10  # the wake word's audio: the last 0.8 s
SPEECH_SETTLE = 4  # frames Silero hears first, so its state has settled
HELD_FRAMES = SPEECH_FRAMES + SPEECH_SETTLE


def speech_score(vad: SileroVad, held: np.ndarray) -> float:
    """Silero VAD's highest speech probability over the wake word's audio (the last
    SPEECH_FRAMES frames), the model started afresh SPEECH_SETTLE frames before them."""
    held = held[-HELD_FRAMES * FRAME_SAMPLES:]
    held = np.concatenate((np.zeros(HELD_FRAMES * FRAME_SAMPLES - len(held), np.int16), held))
    frames = held.reshape(-1, FRAME_SAMPLES)
    vad.reset()
    probabilities = [vad.probability(frame) for frame in frames]
    return max(probabilities[-SPEECH_FRAMES:])
