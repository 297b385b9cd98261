"""Device configuration: one TOML file loaded once into frozen dataclasses, one per service.

Every key is documented in `deploy/earmark-device.example.toml`. Unknown keys and values of
the wrong type or range are a `ConfigError` naming the key, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earmark.runtime.config import below, between, check, load, matching, one_of, override, read_toml, setting
from earmark.runtime.config import within as range_of
from earmark.wire.envelope import OWNER_ID_PATTERN, RECIPIENT_PATTERN
from earmark.wire.errors import ConfigError
from earmark.wire.topics import DEVICE_ID_PATTERN

BUILTIN_WAKE_WORDS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_marvin")
PIN = range_of(0, 27, "(a BCM number)")
WAKE_MODEL = matching(lambda v: v in BUILTIN_WAKE_WORDS or v.endswith(".onnx"),
                      f"must be one of {', '.join(BUILTIN_WAKE_WORDS)} or a path to a .onnx file")


@dataclass(frozen=True)
class MicSettings:
    device: str = setting("", "input device: index or name substring (`earmark-device mics`); \"\" is the "
                              "system default", flag="--mic")
    channel: int = setting(0, "which input channel to keep (ReSpeaker HATs deliver 2, 4 or 6)", range_of(0, 64))
    rate: int = setting(0, "capture rate to open at; 0 tries 16000, then the device's default",
                        range_of(8000, 192_000, zero="try 16000, then the default"))


@dataclass(frozen=True)
class WakeWordSettings:
    """One wake word. Each value left out (None) is Earmark's tuned one for a built-in word
    (listening/decision.py: TUNED), or openWakeWord's plain threshold for a custom model."""

    name: str = setting(help="a built-in model name or a path to a custom .onnx", rule=WAKE_MODEL)
    threshold: float | None = setting(None, "a smoothed score this high is the word", between(0, 1))
    patience: int | None = setting(None, "80 ms frames in a row at or above it", range_of(1, 25, "frames"))
    smooth: int | None = setting(None, "frames the score is averaged over", range_of(1, 10, "frames"))
    micro_check: float | None = setting(None, "microWakeWord (alexa, hey_jarvis, hey_mycroft) must also give "
                                              "the word this probability; 0 turns the check off", below(1))
    marks_check: float | None = setting(None, "the household's marks (`voice not-meant`) refuse a candidate "
                                              "near them that their model scores this high; 0 ignores them",
                                        below(1))
    speech_check: float | None = setting(None, "Silero VAD over the word's audio must reach this", below(1))
    confirm_check: float | None = setting(None, "the word verifier (built-in words) admits a lower score at "
                                                "this", below(1))
    confirm_from: float | None = setting(None, "the lowest score the word verifier is asked about", between(0, 1))
    veto_check: float | None = setting(None, "the word verifier (built-in words) refuses what the score alone "
                                             "admits when it scores it under this; 0 turns it off", below(1))
    voice_check: float | None = setting(None, "an enrolled household's verifier admits a lower score at this",
                                        below(1))
    voice_from: float | None = setting(None, "the lowest score the household's verifier is asked about",
                                       between(0, 1))


@dataclass(frozen=True)
class WakeSettings:
    words: tuple[WakeWordSettings, ...] = setting(help="one table per wake word",
                                                  factory=lambda: (WakeWordSettings("alexa"),))
    patience: int = setting(0, "for every word without its own", range_of(1, 25, "frames", zero="each word's own"))
    refractory_s: float = setting(2.0, "after a detection, no other detection for this long",
                                  range_of(0, 60, "seconds"))


# Home Assistant's "finished speaking detection" presets: seconds of silence that end a request.
SILENCE_PRESETS = {"aggressive": 0.25, "default": 0.7, "relaxed": 1.25}


@dataclass(frozen=True)
class RecorderSettings:
    pre_roll_s: float = setting(0.5, "audio kept from before the wake word ends", range_of(0, 2, "seconds"))
    silence: str = setting("default", "how long a pause ends a request: aggressive (0.25 s), default (0.7 s) "
                                      "or relaxed (1.25 s)", one_of(*SILENCE_PRESETS))
    silence_end_s: float = setting(0.0, "seconds of silence that end a request, over the preset's",
                                   range_of(0.16, 5, "seconds", zero="the preset's"))
    speech_to_arm_s: float = setting(0.3, "speech (not the wake word's tail) before silence can end it",
                                     range_of(0.08, 2, "seconds"))
    min_command_s: float = setting(1.0, "no request ends sooner after its speech began", range_of(0, 10, "seconds"))
    no_speech_timeout_s: float = setting(4.0, "if nobody speaks this long after the wake word, nothing is kept",
                                         range_of(0.5, 30, "seconds"))
    max_length_s: float = setting(15.0, "hard maximum length of a recording", range_of(1, 30, "seconds"))
    vad_threshold: float = setting(0.5, "Silero's speech probability that counts as speech", between(0, 1))

    @property
    def end_silence_s(self) -> float:
        return self.silence_end_s or SILENCE_PRESETS.get(self.silence, SILENCE_PRESETS["default"])


@dataclass(frozen=True)
class SpoolSettings:
    directory: str = setting("", "spool directory; \"\" means <data-dir>/spool", flag="--spool")
    max_bytes: int = setting(200 * 1024 * 1024, "the spool's size bound", range_of(1024 * 1024, 1 << 40, "bytes"))


@dataclass(frozen=True)
class MarksSettings:
    keep_days: int = setting(30, "days the wake model's view of each recording is kept, for a mark to learn "
                                 "from", range_of(1, 365, "days"))
    keep_clips: int = setting(500, "recordings whose wake features are kept at most (the oldest go first)",
                              range_of(1, 100_000, "recordings"))


@dataclass(frozen=True)
class GpioSettings:
    mute_pin: int | None = setting(None, "the mute button or switch", PIN)
    mute_kind: str = setting("toggle", "toggle: a push button flips mute; switch: held = muted",
                             one_of("toggle", "switch"))
    talk_pin: int | None = setting(None, "the talk button", PIN)
    led_red_pin: int | None = setting(None, "the status light's red LED", PIN)
    led_green_pin: int | None = setting(None, "its green LED", PIN)
    led_blue_pin: int | None = setting(None, "its blue LED", PIN)
    led_active_high: bool = setting(True, "the LEDs light when their pin is high")
    light: str = setting("rgb", "rgb: the three led_*_pin; apa102: a ReSpeaker HAT's SPI LEDs", one_of("rgb", "apa102"))
    apa102_count: int = setting(3, "3 on the 2-Mic HAT, 12 on the 4-Mic and 6-Mic arrays", range_of(1, 255))
    apa102_spi_device: int = setting(1, "/dev/spidev0.<this>", range_of(0, 1))
    led_power_pin: int | None = setting(None, "driven high while running: HATs that switch their LEDs' supply", PIN)
    mock: bool = setting(False, "gpiozero MockFactory pins instead of the Pi's GPIO", flag="--mock-gpio")


@dataclass(frozen=True)
class BrokerSettings:
    url: str = setting("", "mqtts://host:port; \"\" runs offline and clips stay in the spool",
                       matching(lambda v: not v or v.startswith(("mqtt://", "mqtts://")), "must be mqtt:// or mqtts://"),
                       flag="--broker")
    username: str = setting("", "the device's broker login (its device id)")
    password_file: str = setting("", "a file holding its broker password (0600)")
    ca: str = setting("", "the broker's CA certificate, pinned for mqtts://")
    client_cert: str = setting("", "optional TLS client certificate")
    client_key: str = setting("", "its private key")
    keepalive_s: int = setting(30, "MQTT keepalive", range_of(5, 3600, "seconds"))
    receipt_timeout_s: float = setting(30.0, "a clip with no receipt by then is sent again",
                                       range_of(1, 3600, "seconds"))
    in_flight: int = setting(8, "clips published and awaiting receipts at once", range_of(1, 100))
    mqtt_version: str = setting("5", "3.1.1 for brokers without MQTT 5 (RabbitMQ 3.x's MQTT plugin)",
                                one_of("5", "3.1.1"))


@dataclass(frozen=True)
class FeedbackSettings:
    wake_sound: str = setting("", "a WAV played when a recording starts; \"\" plays nothing")
    done_sound: str = setting("", "a WAV played when a clip is kept")


DEVICE_ID = matching(lambda v: not v or bool(DEVICE_ID_PATTERN.fullmatch(v)),
                     "must be 3-63 characters of a-z, 0-9 and '-'")
OWNER_ID = matching(lambda v: not v or bool(OWNER_ID_PATTERN.fullmatch(v)), "must be a lowercase UUID")
RECIPIENT = matching(lambda v: bool(RECIPIENT_PATTERN.fullmatch(v)), "must be an age X25519 recipient (age1…)")


WYOMING_PORT = 10700  # Home Assistant's default for a Wyoming satellite


def wyoming_address(uri: str) -> tuple[str, int]:
    """(host, port) of `satellite.wyoming`: tcp://HOST:PORT, tcp://HOST (port 10700) or HOST."""
    rest = uri.removeprefix("tcp://")
    host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    return (host or rest), int(port) if port else WYOMING_PORT


def _wyoming_ok(uri: str) -> bool:
    """"" (no satellite), or an address `wyoming_address` reads: tcp:// only, a host, a port."""
    if not uri:
        return True
    if "://" in uri and not uri.startswith("tcp://"):
        return False
    try:
        host, port = wyoming_address(uri)
    except ValueError:  # a port that is not a number
        return False
    return bool(host) and 0 <= port <= 65535


@dataclass(frozen=True)
class SatelliteSettings:
    wyoming: str = setting("", "serve Home Assistant as a Wyoming voice satellite here: tcp://HOST:PORT "
                               "(tcp://0.0.0.0 listens on every interface, port 10700); \"\" does not",
                           matching(_wyoming_ok, "must be tcp://HOST:PORT (or tcp://HOST, for port 10700)"),
                           flag="--wyoming")
    zeroconf: bool = setting(True, "announce the satellite on the network (_wyoming._tcp.local.) for Home "
                                   "Assistant to discover")
    speaker: str = setting("", "the output device Home Assistant's answers play on (index or name substring); "
                               "\"\" is the system default")
    speaker_file: str = setting("", "write Home Assistant's answers to this WAV instead of playing them "
                                    "(tests, headless)", flag="--speaker-file")
    has_speaker: bool = setting(True, "the device can play answers: Home Assistant then runs its pipeline to "
                                      "speech (else it ends at handling the request)")


@dataclass(frozen=True)
class DeviceSettings:
    data_dir: str = setting(help="where the key, models, spool and config live", internal=True)
    device_id: str = setting("", "this device's id (its broker username)", DEVICE_ID)
    owner_id: str = setting("", "the owner's id (a UUID)", OWNER_ID)
    recipients: tuple[str, ...] = setting((), "the household's age recipients (age1…): each clip's audio is "
                                              "sealed to them before it touches the disk (pairing sets them)",
                                          RECIPIENT, flag="--recipient")
    mic: MicSettings = setting(factory=MicSettings)
    wake: WakeSettings = setting(factory=WakeSettings)
    recorder: RecorderSettings = setting(factory=RecorderSettings)
    spool: SpoolSettings = setting(factory=SpoolSettings)
    marks: MarksSettings = setting(factory=MarksSettings)
    gpio: GpioSettings = setting(factory=GpioSettings)
    broker: BrokerSettings = setting(factory=BrokerSettings)
    feedback: FeedbackSettings = setting(factory=FeedbackSettings)
    satellite: SatelliteSettings = setting(factory=SatelliteSettings)
    cloud: bool = setting(True, "keep each recording: sealed, spooled and sent to the owner's store; false keeps "
                                "none (with a satellite, Home Assistant still hears the request)")

    @property
    def spool_dir(self) -> Path:
        return Path(self.spool.directory) if self.spool.directory else Path(self.data_dir) / "spool"

    @property
    def models_dir(self) -> Path:
        return Path(self.data_dir) / "models"

    @property
    def key_path(self) -> Path:
        return Path(self.data_dir) / "device.key"

    @property
    def chain_path(self) -> Path:
        return Path(self.data_dir) / "chain.json"

    @property
    def pairing_path(self) -> Path:
        return Path(self.data_dir) / "pairing.toml"

    def require_identity(self) -> None:
        """A device that keeps recordings must know who it is, whose it is, and the household
        key it seals every recording to (without one it records nothing). With `cloud = false`
        it keeps none, and needs none of them."""
        if not self.cloud:
            return
        if not self.device_id:
            raise ConfigError("device_id is not set: give --device-id or set device_id in the config")
        if not self.owner_id:
            raise ConfigError("owner_id is not set: give --owner-id or set owner_id in the config")
        if not self.recipients:
            raise ConfigError("no household key to seal recordings to: pair the device (`earmark-device provision "
                              "BUNDLE`, once the household has made its key) or, unpaired, give --recipient age1…")


def default_data_dir() -> Path:
    """$EARMARK_DATA_DIR, else the XDG data home (~/.local/share/earmark)."""
    if env := os.environ.get("EARMARK_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "earmark"


def load_settings(path: Path | None, data_dir: Path | None = None,
                  flags: Mapping[str, Any] | None = None) -> DeviceSettings:
    """Settings from, lowest first: defaults, the pairing file that `provision` wrote in the
    data dir, the config file, and `flags` (setting paths, "broker.url", as the command line
    gave them)."""
    flags = dict(flags or {})
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    chosen = data_dir or raw.pop("data_dir", None) or default_data_dir()
    if not isinstance(chosen, str | Path):
        raise ConfigError("config key data_dir: expected str")
    pairing = Path(chosen) / "pairing.toml"
    if pairing.is_file():
        paired = read_toml(pairing)
        _check_pairing_owns_identity(paired, raw, flags, pairing, path)
        raw = {**paired, **raw, "broker": {**paired.get("broker", {}), **raw.get("broker", {})}}
    settings = override(load(DeviceSettings, raw, data_dir=str(chosen)), flags)
    validate(settings)
    return settings


def _check_pairing_owns_identity(paired: dict[str, Any], config: dict[str, Any], flags: dict[str, Any],
                                 pairing: Path, config_path: Path | None) -> None:
    """Once paired, who the device is and whose it is come from the pairing alone: a config
    file or a flag naming another device or owner would seal clips under the wrong identity."""
    for key in ("device_id", "owner_id"):
        for where, given in ((f"--{key.replace('_', '-')}", flags.get(key)),
                             (f"config file {config_path}", config.get(key))):
            if given is None or key not in paired or given == paired[key]:
                continue
            raise ConfigError(
                f"{key} {given!r} in {where} contradicts the pairing ({pairing}: {paired[key]!r}); "
                f"remove it there, or `earmark-device reset` and pair again")


def validate(s: DeviceSettings) -> None:
    """Each key's own rule (its field's), then the rules between keys."""
    check(s)

    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key}: {why}")

    names = [wake_word_id(w.name) for w in s.wake.words]
    need(len(set(names)) == len(names), "wake.words", "names a wake word twice")
    r = s.recorder
    need(r.pre_roll_s < r.max_length_s, "recorder.pre_roll_s", "must be shorter than max_length_s")
    b = s.broker
    need(not b.ca or b.url.startswith("mqtts://"), "broker.ca", "only applies to an mqtts:// url")
    need(bool(b.client_cert) == bool(b.client_key), "broker.client_cert", "give client_cert and client_key together")
    pins = [p for p in (s.gpio.mute_pin, s.gpio.talk_pin, s.gpio.led_red_pin,
                        s.gpio.led_green_pin, s.gpio.led_blue_pin, s.gpio.led_power_pin) if p is not None]
    need(len(set(pins)) == len(pins), "gpio", "two functions share a pin")


def wake_word_id(name: str) -> str:
    """The id a wake word goes by in clips and logs: the built-in name or the file's stem."""
    if name in BUILTIN_WAKE_WORDS:
        return name
    stem = Path(name).stem.lower()
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem)[:64] or "custom"
