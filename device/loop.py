"""The device's main loop: source → wake detector → recorder → sealed envelope → spool.

Data flows one way; the loop only moves frames and results between the parts and keeps
the status light in step with them. Nothing here waits on the network. Every frame goes to
the wake detector, recording or not, so its features never go stale; a detection while
recording is ignored. When the microphone goes away the recording in progress is kept if
it heard a request, the error light shows, and the loop waits for the mic to come back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from earmark.device.audio.source import AudioSource, SourceInterrupted
from earmark.device.controls import Controls, LightState
from earmark.device.listening.recorder import Recorder, Recording
from earmark.device.listening.wake import WakeDetector
from earmark.device.satellite import NoSatellite, Satellite
from earmark.device.sync.identity import Sealer
from earmark.device.sync.spool import Spool, SpoolFull
from earmark.wire.timestamps import format_utc

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    frames: int = 0
    clips: list[str] = field(default_factory=list)
    refused: int = 0  # recordings the spool could not take
    mic_problem: str = ""  # why there is no audio right now; "" while the mic delivers
    mic_interruptions: int = 0
    last_wake: str = ""  # UTC time and word of the last detection


class DeviceLoop:
    def __init__(self, source: AudioSource, detector: WakeDetector, recorder: Recorder,
                 sealer: Sealer, spool: Spool, controls: Controls,
                 stop: threading.Event | None = None) -> None:
        self.source, self.detector, self.recorder = source, detector, recorder
        self.sealer, self.spool, self.controls = sealer, spool, controls
        self.stop = stop or threading.Event()
        self.on_spooled: Callable[[], None] = lambda: None  # e.g. Publisher.notify; must not block
        self.on_status: Callable[[], None] = lambda: None  # mic or mute changed; must not block
        self.feedback: Callable[[str], None] = lambda event: None  # "wake", "done"; must not block
        self.satellite: Satellite = NoSatellite()  # Home Assistant, told what the recorder does
        self.keep_clips = True  # False (cloud = false): a recording is heard by the satellite only
        # told (clip id, wake word, the rise's windows) for each spooled wake: marks.keep_wake
        self.on_wake_kept: Callable[[str, str, np.ndarray], None] = lambda clip_id, word, examples: None
        self._wake: tuple[str, np.ndarray] | None = None
        self.stats = RunStats()
        self._error = False

    def run(self) -> RunStats:
        """Until the input ends or `stop` is set."""
        light = self.controls.light
        light.show(LightState.IDLE)
        started = False
        try:
            while not self.stop.is_set():
                if self.controls.mute.muted:
                    self._sit_out_mute(started)
                    started = False
                    continue
                if not started:
                    self.source.start()
                    started = True
                    self._show_resting()
                try:
                    frame = self.source.read()
                except SourceInterrupted as exc:
                    self._interrupted(str(exc))
                    continue
                if frame is None:
                    self._end(self.recorder.finish())
                    break
                if self.stats.mic_problem:
                    self._resumed()
                self.stats.frames += 1
                self._step(frame)
        finally:
            if started:
                self.source.stop()
        return self.stats

    def _step(self, frame: np.ndarray) -> None:
        button = self.controls.talk.take_press()
        detection = self.detector.process(frame)
        was_idle = self.recorder.idle
        if detection is not None and was_idle:
            self.stats.last_wake = f"{format_utc(datetime.now(UTC))} {detection.wake_word}"
            self._wake = (detection.wake_word, self.detector.rise_examples(detection.wake_word))
        recording = self.recorder.feed(frame, detection if was_idle else None, button=button and was_idle)
        if was_idle and not self.recorder.idle:
            self.controls.light.show(LightState.RECORDING)
            self.feedback("wake")
            self.satellite.woke(detection.wake_word if detection is not None else None, self.recorder.so_far())
        elif not was_idle:
            self.satellite.heard(frame)
        if recording is not None or (not was_idle and self.recorder.idle):
            self._end(recording)
            self._show_resting()

    def _interrupted(self, why: str) -> None:
        """No audio right now. The first time: keep what was being recorded, light the error."""
        if self.stats.mic_problem:
            return
        self.stats.mic_problem = why
        self.stats.mic_interruptions += 1
        log.warning("no audio: %s", why)
        if not self.recorder.idle:
            self._end(self.recorder.finish("mic_lost"))
        self.recorder.abort()
        self.controls.light.show(LightState.ERROR)
        self.on_status()

    def _resumed(self) -> None:
        log.info("audio is back after: %s", self.stats.mic_problem)
        self.stats.mic_problem = ""
        self.detector.warm_up()  # the gap: nothing from before it may fire
        self._show_resting()
        self.on_status()

    def _sit_out_mute(self, started: bool) -> None:
        if started:
            self.source.stop()  # close the stream: no frame is read while muted
        if not self.recorder.idle:
            log.info("muted while recording: the recording is dropped")
            self.satellite.ended()  # and nothing more is streamed
        self.recorder.abort()
        self.controls.light.show(LightState.MUTED)
        log.info("muted: microphone closed")
        self.on_status()
        self.controls.mute.wait_unmuted(self.stop)
        self.detector.warm_up()
        if not self.stop.is_set():
            log.info("unmuted: microphone open")
            self.on_status()

    def _end(self, recording: Recording | None) -> None:
        """The recording in progress ended: the satellite stops hearing it, and it is kept."""
        self.satellite.ended()
        self._keep(recording)

    def _keep(self, recording: Recording | None) -> None:
        if recording is None:
            return
        if not self.keep_clips:
            log.info("recording of %.1f s not kept (cloud = false)", recording.duration_s)
            return
        # The recording's last sample was read just now: it began one duration ago. (Exact for a
        # live mic; a WAV read faster than real time gets plausible, never future, times.)
        captured = datetime.now(UTC) - timedelta(seconds=recording.duration_s)
        clip_id, envelope = self.sealer.seal(recording, captured)
        try:
            self.spool.put(clip_id, envelope)
        except SpoolFull as exc:
            self.stats.refused += 1
            self._error = True
            log.error("%s", exc)
            return
        self.sealer.spooled(envelope)
        self._error = False
        self.stats.clips.append(clip_id)
        if recording.trigger == "wake_word" and self._wake is not None:
            self.on_wake_kept(clip_id, *self._wake)
        self._wake = None
        self.on_spooled()
        self.feedback("done")
        what = (f"wake word {recording.wake_word} ({recording.wake_score:.2f})"
                if recording.trigger == "wake_word" else "talk button")
        log.info("clip %s spooled: %.1f s, %s, ended by %s", clip_id, recording.duration_s,
                 what, recording.end_reason.replace("_", " "))

    def flag_error(self) -> None:
        """Something outside the loop failed (the cloud rejected a clip): show the error light."""
        self._error = True
        if self.recorder.idle and not self.controls.mute.muted:
            self.controls.light.show(LightState.ERROR)

    def refresh_light(self) -> None:
        """Show the resting light again if the device rests (the satellite's changed: a timer
        started or ended, an answer began or finished playing). Called from other threads."""
        if self.recorder.idle and not self.controls.mute.muted and not self.stop.is_set():
            self._show_resting()

    def _show_resting(self) -> None:
        if self._error or self.stats.mic_problem:
            self.controls.light.show(LightState.ERROR)
        else:
            self.controls.light.show(self.satellite.resting_light() or LightState.IDLE)
