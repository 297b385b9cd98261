"""The recorder: a state machine with one method per state, idle → recording → done.

It holds no I/O. Frames come in one at a time with the wake detection (if any) for that
frame; a finished `Recording` comes out. Whether a frame holds speech is asked of an
injected function, so the logic is tested with any VAD.

Endpointing follows Home Assistant's voice command segmenter. The end of speech is armed
only by `speech_to_arm_s` (0.3 s) of speech, and speech in the first `WAKE_TAIL_S` after a
detection never counts: openWakeWord fires up to ~0.4 s before the word ends (slow
speakers), so that speech is the word's own tail. A person may then wait for the light
before speaking. Once armed, `silence_end_s` of silence ends the recording, but not before
`min_command_s` of command; a recording never armed within `no_speech_timeout_s` is
dropped. The price: a command shorter than ~0.3 s spoken straight on ("alexa, stop")
is not heard as one; a short pause before it is.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from earmark.device.audio.resample import TARGET_RATE
from earmark.device.audio.source import FRAME_SAMPLES
from earmark.device.listening.wake import Detection
from earmark.device.settings import RecorderSettings


class State(enum.Enum):
    IDLE = "idle"
    RECORDING = "recording"
    DONE = "done"


@dataclass(frozen=True)
class Recording:
    audio: np.ndarray  # int16, 16 kHz mono
    start_sample: int  # position of the first sample in the stream
    trigger: str  # "wake_word" or "button"
    wake_word: str | None
    wake_score: float | None
    end_reason: str  # "end_of_speech", "max_length" or "end_of_input"

    @property
    def duration_s(self) -> float:
        return len(self.audio) / TARGET_RATE


WAKE_TAIL_S = 0.4  # after a detection, speech this soon is still the wake word
REARM_SILENCE_S = 1.0  # silence before arming that starts the 0.3 s count again


class Recorder:
    def __init__(self, settings: RecorderSettings, is_speech: Callable[[np.ndarray], bool],
                 on_start: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self._is_speech = is_speech
        self._on_start = on_start
        self._pre_roll_samples = round(settings.pre_roll_s * TARGET_RATE)
        self._max_samples = round(settings.max_length_s * TARGET_RATE)
        self._silence_frames = frames_in(settings.end_silence_s)
        self._no_speech_frames = frames_in(settings.no_speech_timeout_s)
        self._arm_frames = frames_in(settings.speech_to_arm_s)
        self._command_frames = frames_in(settings.min_command_s)
        self._tail_frames = frames_in(WAKE_TAIL_S)
        self._rearm_frames = frames_in(REARM_SILENCE_S)
        self._history: deque[np.ndarray] = deque(
            maxlen=math.ceil(self._pre_roll_samples / FRAME_SAMPLES) + 1)
        self.state = State.IDLE
        self.discarded = 0
        self._samples_seen = 0
        self._begin_idle()

    def _begin_idle(self) -> None:
        self.state = State.IDLE
        self._chunks: list[np.ndarray] = []
        self._length = 0
        self._start_sample = 0
        self._armed = False  # heard enough speech that is not the wake word's tail
        self._speech_run = 0  # speech frames counted toward arming
        self._frames_in = 0  # frames since the recording started
        self._armed_at = 0
        self._silent_run = 0
        self._trigger: tuple[str, str | None, float | None] = ("", None, None)

    @property
    def idle(self) -> bool:
        return self.state is State.IDLE

    def feed(self, frame: np.ndarray, detection: Detection | None = None,
             button: bool = False) -> Recording | None:
        """One frame in; a Recording when this frame finished one."""
        handler = {State.IDLE: self._idle, State.RECORDING: self._recording}[self.state]
        result = handler(frame, detection, button)
        self._samples_seen += len(frame)
        return result

    def so_far(self) -> np.ndarray:
        """The recording in progress, as recorded so far (at its start: the pre-roll)."""
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)

    def abort(self) -> None:
        """Drop a recording in progress (the user muted) and forget the pre-roll."""
        if self.state is State.RECORDING:
            self.discarded += 1
        self._history.clear()
        self._begin_idle()

    def finish(self, reason: str = "end_of_input") -> Recording | None:
        """The input ended (or the mic went away): a recording in progress that heard a
        request is kept."""
        if self.state is State.RECORDING and self._armed:
            return self._done(reason)
        self.abort()
        return None

    # -- states ---------------------------------------------------------------------------

    def _idle(self, frame: np.ndarray, detection: Detection | None, button: bool) -> None:
        if detection is not None:
            # The detection frame ends the wake word: keep pre-roll samples up to its end.
            self._history.append(frame)
            joined = np.concatenate(self._history)[-self._pre_roll_samples:] \
                if self._pre_roll_samples else np.zeros(0, dtype=np.int16)
            self._start(joined, self._samples_seen + len(frame) - len(joined),
                        ("wake_word", detection.wake_word, detection.score))
        elif button:
            # A button recording starts at the press: nothing from before it is kept.
            self._start(frame, self._samples_seen, ("button", None, None))
            self._count_speech(frame)
        else:
            self._history.append(frame)
        return None

    def _recording(self, frame: np.ndarray, detection: Detection | None, button: bool) -> Recording | None:
        room = self._max_samples - self._length
        self._chunks.append(frame[:room])
        self._length += min(room, len(frame))
        if self._length >= self._max_samples:
            return self._done("max_length")
        self._count_speech(frame)
        if (self._armed and self._silent_run >= self._silence_frames
                and self._frames_in - self._armed_at >= self._command_frames):
            return self._done("end_of_speech")
        if not self._armed and self._frames_in >= self._no_speech_frames:
            # Woken, but nobody spoke: keep nothing.
            self.discarded += 1
            self._history.clear()
            self._begin_idle()
        return None

    def _done(self, reason: str) -> Recording:
        self.state = State.DONE
        word_trigger, word, score = self._trigger
        recording = Recording(np.concatenate(self._chunks), self._start_sample,
                              word_trigger, word, score, reason)
        self._history.clear()
        self._begin_idle()
        return recording

    # -- helpers --------------------------------------------------------------------------

    def _start(self, audio: np.ndarray, start_sample: int,
               trigger: tuple[str, str | None, float | None]) -> None:
        self.state = State.RECORDING
        self._chunks = [audio[: self._max_samples]]
        self._length = len(self._chunks[0])
        self._start_sample = start_sample
        self._trigger = trigger
        self._history.clear()
        self._on_start()

    def _count_speech(self, frame: np.ndarray) -> None:
        self._frames_in += 1
        speech = self._is_speech(frame)
        in_tail = self._trigger[0] == "wake_word" and self._frames_in <= self._tail_frames
        if speech:
            self._silent_run = 0
            if not in_tail:
                self._speech_run += 1
        else:
            self._silent_run += 1
            if not self._armed and self._silent_run >= self._rearm_frames:
                self._speech_run = 0
        if not self._armed and self._speech_run >= self._arm_frames:
            self._armed, self._armed_at = True, self._frames_in - self._speech_run


def frames_in(seconds: float) -> int:
    return math.ceil(round(seconds * TARGET_RATE / FRAME_SAMPLES, 6))
