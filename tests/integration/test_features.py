"""Our onnxruntime pipeline (device/listening/features.py) against openWakeWord's own, on
the same frames: the device no longer installs openwakeword, so this is what holds its
scores to the reference. openwakeword is a dev dependency for exactly this."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from earmark.device.audio.source import FRAME_SAMPLES
from earmark.device.listening.features import FeatureStream, SileroVad, WakeModel
from earmark.device.listening.models import locate_models
from tests.support.speech import Scene

WORDS = ["alexa", "hey_jarvis"]


def frames_of(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i:i + FRAME_SAMPLES] for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def test_wake_scores_match_openwakeword_frame_for_frame(shared_models: Path,
                                                         speech: Callable[..., np.ndarray]) -> None:
    from openwakeword.model import Model

    models = locate_models(shared_models, WORDS)
    audio = (Scene().pause(1.5).speak(speech("alexa")).pause(0.5).speak(speech("what is the weather"))
             .pause(0.7).speak(speech("hey jarvis", "en-gb")).pause(1.0).audio())
    reference = Model(wakeword_models=[str(models.wake_words[w]) for w in WORDS], inference_framework="onnx",
                      melspec_model_path=str(models.melspectrogram), embedding_model_path=str(models.embedding))
    features = FeatureStream(models.melspectrogram, models.embedding)
    ours = {w: WakeModel(models.wake_words[w]) for w in WORDS}
    theirs_all, ours_all = [], []
    for frame in frames_of(audio):
        theirs = reference.predict(frame)
        features.push(frame)
        theirs_all.append([theirs[models.wake_words[w].stem] for w in WORDS])
        ours_all.append([ours[w].score(features) for w in WORDS])
    # The first 16 frames differ only by the start-up history: each side's own 4 s of noise.
    settled = slice(max(m.window for m in ours.values()), None)
    np.testing.assert_allclose(np.array(ours_all)[settled], np.array(theirs_all)[settled], atol=1e-4)
    assert max(s[0] for s in ours_all) > 0.9 and max(s[1] for s in ours_all) > 0.9  # both words found


def test_vad_matches_openwakeword_silero(shared_models: Path, speech: Callable[..., np.ndarray]) -> None:
    from openwakeword.vad import VAD

    models = locate_models(shared_models, ["alexa"])
    audio = Scene().pause(0.5).speak(speech("turn on the kitchen light")).pause(0.5).audio()
    reference, ours = VAD(model_path=str(models.vad)), SileroVad(models.vad)
    for frame in frames_of(audio):
        assert ours.probability(frame) == pytest.approx(float(reference.predict(frame, frame_size=640)), abs=1e-6)


def test_a_fresh_stream_on_a_quiet_rooms_noise_floor_does_not_score_a_wake_word(shared_models: Path) -> None:
    # Found by the wake evaluation: the stream started from a window of zero embeddings, and on
    # a quiet room's noise floor alexa scored 0.77 at the fifth frame, a wake on every start
    # (openWakeWord starts from the embeddings of noise, as the stream now does).
    models = locate_models(shared_models, WORDS)
    floor = np.random.default_rng(7).normal(0, 30, 3 * 16000).astype(np.int16)
    features = FeatureStream(models.melspectrogram, models.embedding)
    ours = {w: WakeModel(models.wake_words[w]) for w in WORDS}
    highest = 0.0
    for frame in frames_of(floor):
        features.push(frame)
        highest = max(highest, *(model.score(features) for model in ours.values()))
    assert highest < 0.1
