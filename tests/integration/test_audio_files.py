"""Audio in from real files: every sample width and channel layout sox can write converts to
the same audio, and a 48 kHz stereo WAV wakes the real model like the 16 kHz mono one."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from earmark.device.audio.source import AudioError, WavFileSource
from earmark.device.listening.decision import rule_for
from earmark.device.listening.models import locate_models
from earmark.device.listening.wake import WakeDetector
from earmark.device.settings import WakeSettings
from tests.support.speech import RATE, Scene, all_frames, tone, write_wav


@pytest.mark.parametrize(("bits", "encoding"), [(8, "unsigned-integer"), (16, "signed-integer"),
                                                (24, "signed-integer"), (32, "signed-integer")])
def test_any_sample_width_converts_to_the_same_audio(tmp_path: Path, bits: int, encoding: str) -> None:
    reference = write_wav(tmp_path / "ref.wav", tone(RATE))
    other = tmp_path / f"w{bits}.wav"
    subprocess.run(["sox", "-q", "-D", str(reference), "-b", str(bits), "-e", encoding, str(other)],
                   check=True)
    expected = all_frames(WavFileSource(reference)).astype(np.int32)
    got = all_frames(WavFileSource(other)).astype(np.int32)
    tolerance = 256 if bits == 8 else 1
    assert np.max(np.abs(got - expected)) <= tolerance


def test_the_configured_channel_is_picked_before_anything_else(tmp_path: Path) -> None:
    left = write_wav(tmp_path / "l.wav", tone(48000, 1.0, 440.0), rate=48000)
    right = write_wav(tmp_path / "r.wav", tone(48000, 1.0, 1500.0), rate=48000)
    quad = tmp_path / "quad.wav"
    subprocess.run(["sox", "-q", "-M", str(left), str(right), str(left), str(right), str(quad)], check=True)
    for channel, hz in ((1, 1500), (2, 440)):
        frames = all_frames(WavFileSource(quad, channel=channel))
        assert np.argmax(np.abs(np.fft.rfft(frames[:RATE]))) == hz
    with pytest.raises(AudioError, match="channel 4"):
        WavFileSource(quad, channel=4)


def test_a_48k_stereo_wav_is_detected_like_the_16k_mono_one(tmp_path: Path, shared_models: Path,
                                                            speech: Callable[..., np.ndarray]) -> None:
    mono = (Scene().pause(1).speak(speech("alexa")).pause(0.2).speak(speech("turn on the light"))
            .pause(1).write(tmp_path / "mono16k.wav"))
    stereo = tmp_path / "stereo48k.wav"
    subprocess.run(["sox", "-q", str(mono), "-r", "48000", "-c", "2", str(stereo)], check=True)

    def detections(path: Path) -> list[tuple[str, int, float]]:
        detector = WakeDetector(WakeSettings(), locate_models(shared_models, ["alexa"]))
        source = WavFileSource(path)
        source.start()
        found = []
        while (frame := source.read()) is not None:
            if hit := detector.process(frame):
                found.append((hit.wake_word, hit.frame_index, hit.score))
        return found

    [(word_a, frame_a, score_a)] = detections(mono)
    [(word_b, frame_b, score_b)] = detections(stereo)
    assert word_a == word_b == "alexa"
    assert abs(frame_a - frame_b) <= 2  # within 160 ms
    assert min(score_a, score_b) >= rule_for(WakeSettings(), WakeSettings().words[0]).threshold
