"""Device configuration: one TOML file loaded once into frozen dataclasses, one per service.

Every key is documented in `deploy/earmark-device.example.toml`. Unknown keys and values of
the wrong type or range are a `ConfigError` naming the key, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from earmark.wire.envelope import OWNER_ID_PATTERN
from earmark.wire.errors import ConfigError
from earmark.wire.topics import DEVICE_ID_PATTERN

BUILTIN_WAKE_WORDS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_marvin")


@dataclass(frozen=True)
class MicSettings:
    device: str = ""  # name substring or index; "" is the system default input
    channel: int = 0  # which input channel to keep (ReSpeaker HATs deliver 2, 4 or 6)
    rate: int = 0  # capture rate to open at; 0 tries 16000, then the device's default


@dataclass(frozen=True)
class WakeWordSettings:
    """One wake word. Each value left out (None) is Earmark's tuned one for a built-in word
    (listening/decision.py: TUNED), or openWakeWord's plain threshold for a custom model."""

    name: str  # a built-in model name or a path to a custom .onnx
    threshold: float | None = None  # a smoothed score this high is the word
    patience: int | None = None  # frames in a row at or above it
    smooth: int | None = None  # frames the score is averaged over
    speech_check: float | None = None  # Silero VAD over the word's audio must reach this (0: off)
    confirm_check: float | None = None  # the word verifier (built-in words) admits a lower score at this (0: off)
    confirm_from: float | None = None  # the lowest score the word verifier is asked about
    voice_check: float | None = None  # an enrolled household's verifier admits a lower score at this
    voice_from: float | None = None  # the lowest score the household's verifier is asked about


@dataclass(frozen=True)
class WakeSettings:
    words: tuple[WakeWordSettings, ...] = (WakeWordSettings("alexa"),)
    patience: int = 0  # for every word without its own; 0: each word's tuned patience
    refractory_s: float = 2.0  # after a detection, no other detection for this long


# Home Assistant's "finished speaking detection" presets: seconds of silence that end a request.
SILENCE_PRESETS = {"aggressive": 0.25, "default": 0.7, "relaxed": 1.25}


@dataclass(frozen=True)
class RecorderSettings:
    pre_roll_s: float = 0.5
    silence: str = "default"  # aggressive (0.25 s), default (0.7 s) or relaxed (1.25 s)
    silence_end_s: float = 0.0  # seconds of silence that end a request; 0 takes the preset's
    speech_to_arm_s: float = 0.3  # speech (not the wake word's tail) before silence can end it
    min_command_s: float = 1.0  # no request ends sooner after its speech began
    no_speech_timeout_s: float = 4.0
    max_length_s: float = 15.0
    vad_threshold: float = 0.5

    @property
    def end_silence_s(self) -> float:
        return self.silence_end_s or SILENCE_PRESETS.get(self.silence, SILENCE_PRESETS["default"])


@dataclass(frozen=True)
class SpoolSettings:
    directory: str = ""  # "" means <data_dir>/spool
    max_bytes: int = 200 * 1024 * 1024


@dataclass(frozen=True)
class GpioSettings:
    mute_pin: int | None = None
    mute_kind: str = "toggle"  # "toggle": a push button flips mute; "switch": held = muted
    talk_pin: int | None = None
    led_red_pin: int | None = None
    led_green_pin: int | None = None
    led_blue_pin: int | None = None
    led_active_high: bool = True
    light: str = "rgb"  # "rgb": the three led_*_pin; "apa102": a ReSpeaker HAT's SPI LEDs
    apa102_count: int = 3  # 3 on the 2-Mic HAT, 12 on the 4-Mic and 6-Mic arrays
    apa102_spi_device: int = 1  # /dev/spidev0.<this>
    led_power_pin: int | None = None  # driven high while running: HATs that switch their LEDs' supply
    mock: bool = False


@dataclass(frozen=True)
class BrokerSettings:
    url: str = ""  # mqtts://host:port; "" runs offline and clips stay in the spool
    username: str = ""
    password_file: str = ""
    ca: str = ""  # the broker's CA certificate, pinned for mqtts://
    client_cert: str = ""  # optional TLS client certificate and key
    client_key: str = ""
    keepalive_s: int = 30
    receipt_timeout_s: float = 30.0  # a clip with no receipt by then is sent again
    in_flight: int = 8  # clips published and awaiting receipts at once
    mqtt_version: str = "5"  # "3.1.1" for brokers without MQTT 5 (RabbitMQ 3.x's MQTT plugin)


@dataclass(frozen=True)
class FeedbackSettings:
    wake_sound: str = ""  # a WAV played when a recording starts; "" plays nothing
    done_sound: str = ""  # a WAV played when a clip is kept


@dataclass(frozen=True)
class DeviceSettings:
    data_dir: str
    device_id: str = ""
    owner_id: str = ""
    mic: MicSettings = field(default_factory=MicSettings)
    wake: WakeSettings = field(default_factory=WakeSettings)
    recorder: RecorderSettings = field(default_factory=RecorderSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)

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
        """A device that records must know who it is and whose it is."""
        if not self.device_id:
            raise ConfigError("device_id is not set: give --device-id or set device_id in the config")
        if not self.owner_id:
            raise ConfigError("owner_id is not set: give --owner-id or set owner_id in the config")


def default_data_dir() -> Path:
    """$EARMARK_DATA_DIR, else the XDG data home (~/.local/share/earmark)."""
    if env := os.environ.get("EARMARK_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "earmark"


_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (float,), "bool": (bool,), "int | None": (int,),
    "float | None": (float,),
}


def _check_type(key: str, value: Any, type_name: str) -> Any:
    """Exact TOML types: an integer is accepted where a float is expected, nothing else converts."""
    if type_name in ("float", "float | None") and type(value) is int:
        return float(value)
    allowed = _TOML_TYPES[type_name]
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise ConfigError(f"config key {key}: expected {type_name}, got {type(value).__name__}")
    return value


def _section(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {prefix}: expected a table")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"config key {prefix}.{key} is unknown")
        values[key] = _check_type(f"{prefix}.{key}", value, str(known[key].type))
    return cls(**values)


def _wake_section(raw: Any) -> WakeSettings:
    if not isinstance(raw, dict):
        raise ConfigError("config key wake: expected a table")
    raw = dict(raw)
    words_raw = raw.pop("words", None)
    wake: WakeSettings = _section(WakeSettings, raw, "wake")
    if words_raw is not None:
        if not isinstance(words_raw, list) or not words_raw:
            raise ConfigError("config key wake.words: expected a non-empty array of tables")
        words = tuple(
            _section(WakeWordSettings, w, f"wake.words[{i}]") for i, w in enumerate(words_raw)
        )
        wake = replace(wake, words=words)
    return wake


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(path: Path | None, data_dir: Path | None = None, **overrides: Any) -> DeviceSettings:
    """Settings from, lowest first: defaults, the pairing file that `provision` wrote in the
    data dir, the config file, and CLI overrides (None means "not given")."""
    raw: dict[str, Any] = _read_toml(path) if path is not None else {}
    pairing = Path(data_dir or raw.get("data_dir") or default_data_dir()) / "pairing.toml"
    if pairing.is_file():
        paired = _read_toml(pairing)
        _check_pairing_owns_identity(paired, raw, overrides, pairing, path)
        raw = {**paired, **raw, "broker": {**paired.get("broker", {}), **raw.get("broker", {})}}
    sections = {
        "mic": MicSettings, "recorder": RecorderSettings, "spool": SpoolSettings,
        "gpio": GpioSettings, "broker": BrokerSettings, "feedback": FeedbackSettings,
    }
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in sections:
            values[key] = _section(sections[key], value, key)
        elif key == "wake":
            values[key] = _wake_section(value)
        elif key in ("device_id", "owner_id", "data_dir"):
            values[key] = _check_type(key, value, "str")
        else:
            raise ConfigError(f"config key {key} is unknown")
    chosen_dir = data_dir or (Path(values.pop("data_dir")) if "data_dir" in values else None)
    values.pop("data_dir", None)
    settings = DeviceSettings(data_dir=str(chosen_dir or default_data_dir()), **values)
    settings = _apply_overrides(settings, overrides)
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


def _apply_overrides(settings: DeviceSettings, overrides: dict[str, Any]) -> DeviceSettings:
    given = {k: v for k, v in overrides.items() if v is not None}
    top = {k: given.pop(k) for k in ("device_id", "owner_id") if k in given}
    settings = replace(settings, **top)
    if "spool_dir" in given:
        settings = replace(settings, spool=replace(settings.spool, directory=str(given.pop("spool_dir"))))
    if "mock_gpio" in given:
        settings = replace(settings, gpio=replace(settings.gpio, mock=bool(given.pop("mock_gpio"))))
    if "mic_device" in given:
        settings = replace(settings, mic=replace(settings.mic, device=str(given.pop("mic_device"))))
    if "broker_url" in given:
        settings = replace(settings, broker=replace(settings.broker, url=str(given.pop("broker_url"))))
    if "wake_words" in given:
        words = tuple(WakeWordSettings(str(name)) for name in given.pop("wake_words"))
        settings = replace(settings, wake=replace(settings.wake, words=words))
    if given:
        raise TypeError(f"unknown overrides {sorted(given)}")
    return settings


def validate(s: DeviceSettings) -> None:
    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key}: {why}")

    need(not s.device_id or bool(DEVICE_ID_PATTERN.fullmatch(s.device_id)), "device_id",
         "must be 3-63 characters of a-z, 0-9 and '-'")
    need(not s.owner_id or bool(OWNER_ID_PATTERN.fullmatch(s.owner_id)), "owner_id",
         "must be a lowercase UUID")
    need(s.mic.channel >= 0, "mic.channel", "must be 0 or more")
    need(s.mic.rate == 0 or 8000 <= s.mic.rate <= 192_000, "mic.rate", "must be 0 or 8000..192000")
    for i, w in enumerate(s.wake.words):
        for key in ("threshold", "confirm_from", "voice_from"):
            score = getattr(w, key)
            need(score is None or 0.0 < score < 1.0, f"wake.words[{i}].{key}", "must be between 0 and 1")
        need(w.patience is None or 1 <= w.patience <= 25, f"wake.words[{i}].patience", "must be 1..25 frames")
        need(w.smooth is None or 1 <= w.smooth <= 10, f"wake.words[{i}].smooth", "must be 1..10 frames")
        for key in ("speech_check", "confirm_check", "voice_check"):
            bar = getattr(w, key)
            need(bar is None or 0.0 <= bar < 1.0, f"wake.words[{i}].{key}", "must be 0 (off) or below 1")
        need(w.name in BUILTIN_WAKE_WORDS or w.name.endswith(".onnx"), f"wake.words[{i}].name",
             f"must be one of {', '.join(BUILTIN_WAKE_WORDS)} or a path to a .onnx file")
    names = [wake_word_id(w.name) for w in s.wake.words]
    need(len(set(names)) == len(names), "wake.words", "names a wake word twice")
    need(0 <= s.wake.patience <= 25, "wake.patience", "must be 0 (each word's own) or 1..25 frames")
    need(0.0 <= s.wake.refractory_s <= 60.0, "wake.refractory_s", "must be 0..60 seconds")
    r = s.recorder
    need(0.0 <= r.pre_roll_s <= 2.0, "recorder.pre_roll_s", "must be 0..2 seconds")
    need(r.silence in SILENCE_PRESETS, "recorder.silence", f"must be one of {', '.join(SILENCE_PRESETS)}")
    need(r.silence_end_s == 0 or 0.16 <= r.silence_end_s <= 5.0, "recorder.silence_end_s",
         "must be 0 (the preset's) or 0.16..5 seconds")
    need(0.08 <= r.speech_to_arm_s <= 2.0, "recorder.speech_to_arm_s", "must be 0.08..2 seconds")
    need(0.0 <= r.min_command_s <= 10.0, "recorder.min_command_s", "must be 0..10 seconds")
    need(0.5 <= r.no_speech_timeout_s <= 30.0, "recorder.no_speech_timeout_s", "must be 0.5..30 s")
    need(1.0 <= r.max_length_s <= 30.0, "recorder.max_length_s", "must be 1..30 seconds")
    need(r.pre_roll_s < r.max_length_s, "recorder.pre_roll_s", "must be shorter than max_length_s")
    need(0.0 < r.vad_threshold < 1.0, "recorder.vad_threshold", "must be between 0 and 1")
    need(s.spool.max_bytes >= 1024 * 1024, "spool.max_bytes", "must be at least 1 MiB")
    b = s.broker
    need(not b.url or b.url.startswith(("mqtt://", "mqtts://")), "broker.url", "must be mqtt:// or mqtts://")
    need(not b.ca or b.url.startswith("mqtts://"), "broker.ca", "only applies to an mqtts:// url")
    need(bool(b.client_cert) == bool(b.client_key), "broker.client_cert", "give client_cert and client_key together")
    need(b.mqtt_version in ("5", "3.1.1"), "broker.mqtt_version", 'must be "5" or "3.1.1"')
    need(5 <= b.keepalive_s <= 3600, "broker.keepalive_s", "must be 5..3600")
    need(1.0 <= b.receipt_timeout_s <= 3600, "broker.receipt_timeout_s", "must be 1..3600 seconds")
    need(1 <= b.in_flight <= 100, "broker.in_flight", "must be 1..100")
    need(s.gpio.mute_kind in ("toggle", "switch"), "gpio.mute_kind", "must be toggle or switch")
    need(s.gpio.light in ("rgb", "apa102"), "gpio.light", "must be rgb or apa102")
    need(1 <= s.gpio.apa102_count <= 255, "gpio.apa102_count", "must be 1..255")
    need(s.gpio.apa102_spi_device in (0, 1), "gpio.apa102_spi_device", "must be 0 or 1")
    pins = [p for p in (s.gpio.mute_pin, s.gpio.talk_pin, s.gpio.led_red_pin,
                        s.gpio.led_green_pin, s.gpio.led_blue_pin, s.gpio.led_power_pin) if p is not None]
    need(all(0 <= p <= 27 for p in pins), "gpio", "pins are BCM numbers 0..27")
    need(len(set(pins)) == len(pins), "gpio", "two functions share a pin")


def wake_word_id(name: str) -> str:
    """The id a wake word goes by in clips and logs: the built-in name or the file's stem."""
    if name in BUILTIN_WAKE_WORDS:
        return name
    stem = Path(name).stem.lower()
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem)[:64] or "custom"
