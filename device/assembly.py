"""The one place a running device is put together from its settings: audio source → wake
detector → recorder → sealer → spool → publisher, with the controls (buttons, light) beside
them. The CLI, the tests and the benchmarks all build their device here, so there is one
wiring to trust.

    with assemble(settings, source) as device:
        stats = device.run()                 # until the source ends or `stop` is set
        device.wait_drained(30)              # with a broker: until the cloud has every clip
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

from earmark.device.audio.source import AudioSource
from earmark.device.controls import Controls
from earmark.device.feedback import SoundPlayer
from earmark.device.listening.learnt import learnt
from earmark.device.listening.marks import follow, keep_wake
from earmark.device.listening.models import locate_models
from earmark.device.listening.recorder import Recorder
from earmark.device.listening.speech import SpeechDetector
from earmark.device.listening.wake import WakeDetector
from earmark.device.loop import DeviceLoop, RunStats
from earmark.device.satellite.speaker import Speaker
from earmark.device.satellite.wyoming import WyomingSatellite
from earmark.device.settings import DeviceSettings
from earmark.device.status import StatusReport
from earmark.device.sync.chain import Chain
from earmark.device.sync.identity import Sealer, load_or_create_key, public_key_of
from earmark.device.sync.publisher import Publisher
from earmark.device.sync.spool import Spool
from earmark.wire.errors import EarmarkError
from earmark.wire.marks import MarksMessage

log = logging.getLogger(__name__)


class AssembledDevice(AbstractContextManager["AssembledDevice"]):
    """A device ready to run: its loop, its controls and (with a broker) its publisher.
    Closing it stops the publisher and releases the pins; closing twice is harmless."""

    def __init__(self, loop: DeviceLoop, controls: Controls, publisher: Publisher | None,
                 player: SoundPlayer | None = None, satellite: WyomingSatellite | None = None,
                 speaker: Speaker | None = None) -> None:
        self.loop, self.controls, self.publisher, self.player = loop, controls, publisher, player
        self.satellite, self.speaker = satellite, speaker
        self._closed = False

    @property
    def spool(self) -> Spool:
        return self.loop.spool

    def run(self) -> RunStats:
        if self.publisher is not None:
            self.publisher.start()
        return self.loop.run()

    def wait_drained(self, timeout: float) -> bool:
        """True once the spool is empty (every clip receipted); True at once with no broker."""
        return self.publisher.wait_drained(timeout) if self.publisher is not None else True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.satellite is not None:
            self.satellite.close()
        if self.speaker is not None:
            self.speaker.close()
        if self.publisher is not None:
            self.publisher.stop()
        if self.player is not None:
            self.player.close()
        self.controls.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def follow_household(s: DeviceSettings, detector: WakeDetector, words: list[str], message: MarksMessage,
                     publisher: Publisher | None) -> None:
    """The household's marks from the portal (wire/marks.py), on the publisher's thread: learnt
    (or forgotten) in the data dir, then the detector decides with them from its next frame,
    and the status says the new counts."""
    try:
        followed = follow(Path(s.data_dir), message, s.marks.keep_days)
        log.info("%s", followed.describe())
        if followed.changed:
            detector.learn(learnt(Path(s.data_dir), words))
    except (OSError, EarmarkError) as exc:  # a full disk, an unreadable marks file: never the network thread's end
        log.warning("could not follow the household's marks (%s); they come again at the next connection", exc)
        return
    if followed.changed and publisher is not None:
        publisher.notify_status()


def assemble(s: DeviceSettings, source: AudioSource, controls: Controls | None = None,
             stop: threading.Event | None = None, publish: bool = True) -> AssembledDevice:
    """The device `s` describes, reading `source`. `controls` defaults to the configured pins;
    `publish=False` keeps clips in the spool even when a broker is configured."""
    s.require_identity()
    models = locate_models(s.models_dir, [w.name for w in s.wake.words])
    key, created = load_or_create_key(s.key_path)
    if created:
        log.info("made a new device key at %s; public key %s", s.key_path, public_key_of(key))
    speech = SpeechDetector(models.vad, s.recorder.vad_threshold)
    spool = Spool(s.spool_dir, s.spool.max_bytes)
    if swept := spool.sweep():
        log.warning("swept %d torn clip file(s) left by a crash", swept)
    controls = controls if controls is not None else Controls(s.gpio)
    household = learnt(Path(s.data_dir), list(models.wake_words))
    if household.voices:
        log.info("household voices enrolled for %s", ", ".join(sorted(household.voices)))
    if household.not_meant:
        log.info("household marks learnt for %s", ", ".join(sorted(household.not_meant)))
    loop = DeviceLoop(source, WakeDetector(s.wake, models, household),
                      Recorder(s.recorder, speech.is_speech, on_start=speech.reset),
                      Sealer(s.device_id, s.owner_id, key, Chain(s.chain_path, [c.read() for c in spool.clips()]),
                             s.recipients),
                      spool, controls, stop)
    loop.keep_clips = s.cloud
    loop.on_wake_kept = functools.partial(keep_wake, Path(s.data_dir), keep_days=s.marks.keep_days,
                                          keep_clips=s.marks.keep_clips)
    publisher = None
    if not s.cloud:
        log.info("cloud = false: recordings are not kept, and nothing is sent to the owner's store")
    elif publish and s.broker.url:
        publisher = Publisher(s.broker, s.device_id, spool,
                              on_receipt=lambda r: loop.flag_error() if r.status == "rejected" else None,
                              status=StatusReport(loop, source).snapshot,
                              on_marks=lambda message: follow_household(s, loop.detector, list(models.wake_words),
                                                                        message, publisher))
        loop.on_spooled = publisher.notify
        loop.on_status = publisher.notify_status
    else:
        log.info("no broker configured: clips stay in %s", spool.directory)
    satellite = speaker = None
    if s.satellite.wyoming:
        speaker = Speaker(Path(s.satellite.speaker_file) if s.satellite.speaker_file else None, s.satellite.speaker)
        satellite = WyomingSatellite(s.satellite, s.device_id or socket.gethostname(),
                                     [Path(w.name).stem for w in s.wake.words], speaker, on_change=loop.refresh_light)
        loop.satellite = satellite
        satellite.start()
        if publisher is not None:
            satellite.on_connection = publisher.notify_status
    player = None
    sounds = {event: Path(path) for event, path in (("wake", s.feedback.wake_sound), ("done", s.feedback.done_sound))
              if path}
    if sounds:
        player = SoundPlayer(sounds)
        loop.feedback = player.play
    return AssembledDevice(loop, controls, publisher, player, satellite, speaker)
