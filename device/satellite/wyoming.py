"""Home Assistant's voice satellite, over the Wyoming protocol (the `wyoming` package's events
and framing), as Home Assistant's `wyoming` integration drives it
(homeassistant/components/wyoming/assist_satellite.py):

- Home Assistant connects (found by zeroconf, `_wyoming._tcp.local.`, or added by host and
  port) and sends `run-satellite` and `describe`, in either order; `info` answers with the
  satellite and its wake words. It pings every 2 s and drops a satellite that does not pong
  within 5 s.
- On the device's own wake word: `detection`, then `run-pipeline` from speech-to-text (to
  text-to-speech with a speaker, to handling without), then the request as 16 kHz mono
  16-bit `audio-chunk`s, starting with the recorder's pre-roll: the same audio the device
  records, from the same ring. Streaming stops at `transcript`, at `voice-stopped`, or at
  the recording's own end (then with `audio-stop`), whichever comes first, and at
  `pause-satellite` or the mute button. The recording goes on to the owner's store as ever.
- The answer (and an announcement) arrives as `audio-start`, `audio-chunk`s, `audio-stop`:
  played on the speaker as it arrives, then `played`. Timers show on the light (and a beep
  when one goes off); `error` shows the error light until the next request.

Everything runs on one thread of its own with an asyncio loop; the device loop's calls
(`woke`, `heard`, `ended`) are handed to it and never wait. Only the newest connection is
served. An event too large, malformed or of a kind not known is one log line; the
satellite keeps serving (a malformed or oversized one ends that connection, which Home
Assistant makes again).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, Satellite, WakeModel, WakeProgram
from wyoming.ping import Ping, Pong
from wyoming.pipeline import PipelineStage, RunPipeline
from wyoming.satellite import PauseSatellite, RunSatellite
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.snd import Played
from wyoming.timer import TimerCancelled, TimerFinished, TimerStarted, TimerUpdated
from wyoming.vad import VoiceStopped
from wyoming.wake import Detection

from earmark.device.audio.resample import TARGET_RATE
from earmark.device.controls import LightState
from earmark.device.satellite.speaker import Format, Speaker
from earmark.device.settings import SatelliteSettings, wyoming_address
from earmark.runtime.command import version
from earmark.wire.errors import ConfigError, EarmarkError

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024  # an event's JSON header line or data
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # an event's payload: a chunk of audio is a few KB
TIMER_DONE_S = 30.0  # the light shows a finished timer this long (or until the next request)
ATTRIBUTION = Attribution(name="Earmark", url="https://github.com/earmark")
WAKE_ATTRIBUTION = Attribution(name="openWakeWord (David Scripka)", url="https://github.com/dscripka/openWakeWord")
QUIET = ("voice-started", "transcribe", "synthesize", "detect", "info", "pong")  # nothing to do for these


class PayloadTooLarge(EarmarkError, ValueError):
    """An event names a payload larger than any Home Assistant sends (wyoming's reader then
    ends the connection, as it does for any event it cannot read)."""


class _Bounded:
    """The connection's reader, with a bound on what one event may make it read (wyoming's
    framing asks for whatever lengths the peer names)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.refused = 0

    async def readline(self) -> bytes:
        return await self.reader.readline()

    async def readexactly(self, n: int) -> bytes:
        if n > MAX_PAYLOAD_BYTES:
            self.refused = n
            raise PayloadTooLarge(f"{n} bytes")
        return await self.reader.readexactly(n)

    def at_eof(self) -> bool:
        return self.reader.at_eof()

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class WyomingSatellite:
    def __init__(self, settings: SatelliteSettings, name: str, wake_words: list[str], speaker: Speaker,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.settings, self.name, self.wake_words, self.speaker = settings, name, wake_words, speaker
        self.on_change = on_change  # the light may have to change; from this satellite's thread
        self.on_connection: Callable[[], None] = lambda: None  # Home Assistant came, ran, paused or went
        self.host, self.port = wyoming_address(settings.wyoming)
        self.running = threading.Event()  # Home Assistant sent run-satellite and has not paused
        self.connected = threading.Event()
        self.streamed_chunks = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wyoming", daemon=True)
        self._server: AsyncTcpServer | None = None
        self._zeroconf: Any = None
        self._active: _Connection | None = None
        self._streaming = False
        self._answering = False
        self._error = False
        self._timers: set[str] = set()
        self._timer_done_until = 0.0

    # -- the device loop's side (its thread; never waits) ----------------------------------

    def woke(self, wake_word: str | None, audio: np.ndarray) -> None:
        self._call(self._woke, wake_word, audio.astype("<i2").tobytes())

    def heard(self, frame: np.ndarray) -> None:
        if self.running.is_set():
            self._call(self._chunk, frame.astype("<i2").tobytes())

    def ended(self) -> None:
        self._call(self._stop_streaming, True)

    def resting_light(self) -> LightState | None:
        if self._error:
            return LightState.ERROR
        if self._answering:
            return LightState.ANSWERING
        if time.monotonic() < self._timer_done_until:
            return LightState.TIMER_DONE
        return LightState.TIMER if self._timers else None

    def status(self) -> str:
        """For the device's status: is Home Assistant connected, and running the satellite?"""
        if not self.connected.is_set():
            return "waiting"
        return "running" if self.running.is_set() else "connected"

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (a ConfigError if the address cannot be had), and announce by zeroconf."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=30)
        except OSError as exc:
            self.close()
            raise ConfigError(f"satellite.wyoming {self.settings.wyoming}: cannot listen there ({exc.strerror or exc})"
                              ) from None
        log.info("Wyoming satellite %s listening on %s:%d for Home Assistant", self.name, self.host, self.port)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def wait_running(self, stop: threading.Event) -> bool:
        """Block until Home Assistant runs the satellite (or `stop`): True if it does."""
        while not stop.is_set():
            if self.running.wait(0.1):
                return True
        return False

    async def _listen(self) -> None:
        self._work: asyncio.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = asyncio.Queue()
        self._worker = self._loop.create_task(self._run_calls())
        self._server = AsyncTcpServer(self.host, self.port)
        await self._server.start(self._connection)
        server: Any = self._server._server  # an asyncio.Server: where it listens (port 0: the one it got)
        self.port = server.sockets[0].getsockname()[1]
        if self.settings.zeroconf:
            await self._announce()

    async def _announce(self) -> None:
        try:
            from wyoming.zeroconf import HomeAssistantZeroconf

            host = None if self.host in ("", "0.0.0.0") else self.host
            self._zeroconf = HomeAssistantZeroconf(self.port, self.name, host)
            await self._zeroconf.register_server()
            log.info("announced as %s._wyoming._tcp.local.", self.name)
        except OSError as exc:  # no network for multicast: Home Assistant can still add it by host and port
            log.warning("not announced by zeroconf (%s): add it in Home Assistant by host and port", exc)
            self._zeroconf = None

    async def _shut(self) -> None:
        self._worker.cancel()
        if self._zeroconf is not None:
            await self._zeroconf._aiozc.async_close()
        if self._active is not None:
            await self._active.stop()
        if self._server is not None and self._server._server is not None:
            self._server._server.close()

    def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Connection:
        return _Connection(self, reader, writer)

    def _call(self, method: Callable[..., Any], *args: Any) -> None:
        """Run `method` on the satellite's thread after every call handed over before it."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._work.put_nowait, (method, args))

    async def _run_calls(self) -> None:
        while True:
            method, args = await self._work.get()
            await method(*args)

    # -- on the satellite's thread -----------------------------------------------------------

    async def _woke(self, wake_word: str | None, audio: bytes) -> None:
        self._error = False
        self._timer_done_until = 0.0
        if self._active is None or not self.running.is_set():
            return
        self._streaming = True
        end = PipelineStage.TTS if self.settings.has_speaker else PipelineStage.HANDLE
        if wake_word is not None:
            await self._send(Detection(name=wake_word, timestamp=0).event())
        await self._send(RunPipeline(start_stage=PipelineStage.ASR, end_stage=end).event())
        await self._chunk(audio)

    async def _chunk(self, audio: bytes) -> None:
        if self._streaming and audio:
            self.streamed_chunks += 1
            await self._send(AudioChunk(rate=TARGET_RATE, width=2, channels=1, audio=audio).event())

    async def _stop_streaming(self, with_audio_stop: bool) -> None:
        if self._streaming:
            self._streaming = False
            if with_audio_stop:
                await self._send(AudioStop().event())

    async def _send(self, event: Event) -> None:
        if self._active is not None:
            try:
                await self._active.write_event(event)
            except (ConnectionError, RuntimeError) as exc:
                log.info("Home Assistant's connection went: %s", exc)
                self._streaming = False

    async def _handle(self, event: Event) -> None:
        if RunSatellite.is_type(event.type):
            if not self.running.is_set():
                log.info("Home Assistant runs the satellite")
            self.running.set()
            self.on_connection()
        elif PauseSatellite.is_type(event.type):
            log.info("Home Assistant paused the satellite")
            self.running.clear()
            self.on_connection()
            await self._stop_streaming(False)
        elif Describe.is_type(event.type):
            await self._send(self._info().event())
        elif Ping.is_type(event.type):
            await self._send(Pong(text=Ping.from_event(event).text).event())
        elif Transcript.is_type(event.type) or VoiceStopped.is_type(event.type):
            await self._stop_streaming(False)  # Home Assistant has the request (its words are not logged)
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            self._answering = True
            self.speaker.begin(Format(start.rate, start.width, start.channels))
            self.on_change()
        elif AudioChunk.is_type(event.type):
            if self._answering:
                self.speaker.write(AudioChunk.from_event(event).audio)
        elif AudioStop.is_type(event.type):
            if self._answering:
                self.speaker.end(lambda: self._call(self._played))
        elif Error.is_type(event.type):
            log.warning("Home Assistant's pipeline failed: %s", Error.from_event(event).text[:200])
            self._error = True
            self.on_change()
        elif TimerStarted.is_type(event.type) or TimerUpdated.is_type(event.type):
            timer_id = str(event.data.get("id", ""))
            active = TimerStarted.is_type(event.type) or TimerUpdated.from_event(event).is_active
            (self._timers.add if active else self._timers.discard)(timer_id)
            self.on_change()
        elif TimerCancelled.is_type(event.type):
            self._timers.discard(str(event.data.get("id", "")))
            self.on_change()
        elif TimerFinished.is_type(event.type):
            self._timers.discard(str(event.data.get("id", "")))
            self._timer_done_until = time.monotonic() + TIMER_DONE_S
            self._beep()
            self.on_change()
        elif event.type not in QUIET:
            log.info("ignored an event Home Assistant sent: %r", event.type[:40])

    async def _played(self) -> None:
        self._answering = False
        self.on_change()
        await self._send(Played().event())

    def _beep(self) -> None:
        """A timer went off: three short beeps on the speaker."""
        t = np.arange(int(0.15 * TARGET_RATE)) / TARGET_RATE
        tone = (0.3 * 32767 * np.sin(2 * np.pi * 880 * t)).astype("<i2")
        gap = np.zeros(int(0.1 * TARGET_RATE), dtype="<i2")
        self.speaker.begin(Format(TARGET_RATE, 2, 1))
        self.speaker.write(np.concatenate([tone, gap, tone, gap, tone]).tobytes())
        self.speaker.end(lambda: None)

    def _info(self) -> Info:
        models = [WakeModel(name=word, attribution=WAKE_ATTRIBUTION, installed=True, description=word,
                            version=None, languages=["en"], phrase=word.replace("_", " "))
                  for word in self.wake_words]
        return Info(
            wake=[WakeProgram(name="earmark-wake", attribution=WAKE_ATTRIBUTION, installed=True,
                              description="openWakeWord models on Earmark's own decision", version=version(),
                              models=models)],
            satellite=Satellite(name=self.name, attribution=ATTRIBUTION, installed=True,
                                description="Earmark voice device: each request also sealed to its household",
                                version=version(), area=None, has_vad=True, active_wake_words=self.wake_words,
                                max_active_wake_words=len(self.wake_words), supports_trigger=False))


class _Connection(AsyncEventHandler):
    """One connection from Home Assistant; a newer one replaces it."""

    def __init__(self, satellite: WyomingSatellite, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(_Bounded(reader), writer)  # type: ignore[arg-type]
        self.satellite = satellite
        self.peer = writer.get_extra_info("peername")
        if satellite._active is not None:
            log.info("a new connection replaces Home Assistant's older one")
            asyncio.get_running_loop().create_task(satellite._active.stop())
        satellite._active = self
        satellite.connected.set()
        satellite.on_connection()
        log.info("Home Assistant connected from %s", self.peer[0] if self.peer else "?")

    async def handle_event(self, event: Event) -> bool:
        try:
            await self.satellite._handle(event)
        except (KeyError, TypeError, ValueError) as exc:  # an event whose data is not what its type says
            log.warning("ignored a malformed %r event: %s", event.type[:40], exc)
        return True

    async def run(self) -> None:
        await super().run()
        bounded: _Bounded = self.reader  # type: ignore[assignment]
        if bounded.refused:
            log.warning("dropped Home Assistant's connection: it sent an event of %d bytes (the limit is %d)",
                        bounded.refused, MAX_PAYLOAD_BYTES)
        elif not bounded.at_eof():
            log.warning("dropped Home Assistant's connection: it sent an event that is not Wyoming")

    async def disconnect(self) -> None:
        satellite = self.satellite
        if satellite._active is self:
            satellite._active = None
            satellite._streaming = False
            satellite.running.clear()
            satellite.connected.clear()
            satellite.on_connection()
            log.info("Home Assistant disconnected")
