"""Audio in: any WAV file or microphone, converted to 16 kHz mono 16-bit frames of 80 ms."""

from earmark.device.audio.source import FRAME_SAMPLES, FRAME_SECONDS, AudioError, AudioSource, WavFileSource

__all__ = ["FRAME_SAMPLES", "FRAME_SECONDS", "AudioError", "AudioSource", "WavFileSource"]
