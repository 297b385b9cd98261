"""Cloud configuration: one TOML file loaded once into frozen dataclasses; flags override.
Every key is documented in deploy/earmark-cloud.example.toml."""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from earmark.wire.envelope import MAX_ENVELOPE_BYTES
from earmark.wire.errors import ConfigError


@dataclass(frozen=True)
class BrokerSettings:
    url: str = "mqtt://127.0.0.1:1883"  # mqtt://host:port or mqtts://host:port (TLS)
    username: str = ""
    password_file: str = ""  # a file holding the password (preferred over --password)
    ca: str = ""  # CA certificate to pin for mqtts://
    client_cert: str = ""  # TLS client certificate and key, if the broker requires them
    client_key: str = ""
    # Each ingester needs its own client id, the same across its restarts (its session queues
    # clips while it is down); "" means earmark-ingester-<hostname>. Two on one host: set it.
    client_id: str = ""
    share_group: str = "earmark-ingest"
    keepalive_s: int = 30
    # How login changes reach the running broker: "" sends SIGHUP to the pid in the pid file
    # its config names; set a command when this runs as another user than Mosquitto, e.g.
    # "sudo systemctl reload mosquitto". Either way the broker's reload is confirmed.
    reload_command: str = ""

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


@dataclass(frozen=True)
class AmqpSettings:
    """The clustered source: RabbitMQ's MQTT plugin routes device clips into a quorum queue,
    which ingesters consume over AMQP 0-9-1 with manual acks (deploy/SCALING.md)."""

    url: str = "amqp://127.0.0.1:5672/earmark"  # amqp://HOST:PORT/VHOST or amqps://…
    username: str = "earmark-ingester"
    password_file: str = ""  # or $EARMARK_AMQP_PASSWORD
    queue: str = "earmark.clips"  # declared as a quorum queue bound to amq.topic
    ca: str = ""  # CA certificate to pin for amqps://


@dataclass(frozen=True)
class MetricsSettings:
    host: str = "127.0.0.1"
    port: int = 9108  # 0 turns the metrics and health endpoint off


@dataclass(frozen=True)
class PortalSettings:
    # Where owners reach the portal (behind a TLS reverse proxy in production); invite links are
    # built from it, and its host is the passkeys' relying party id.
    public_url: str = "http://localhost:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    invite_minutes: int = 15
    session_idle_minutes: int = 15
    session_max_hours: int = 8


@dataclass(frozen=True)
class CloudSettings:
    data_dir: str
    # "" means default_master_key_path(data_dir): beside the data dir, never inside it, so a
    # backup of the data dir or the database never holds the key that opens it.
    master_key_file: str = ""
    # "" keeps the embedded SQLite store in data_dir; postgresql://ROLE@HOST/DB puts rows in
    # PostgreSQL (as the service role; a password comes from PGPASSFILE or PGPASSWORD).
    database_url: str = ""
    max_envelope_bytes: int = MAX_ENVELOPE_BYTES
    retention_days: int = 0  # `earmark-cloud purge` deletes clips captured longer ago; 0 keeps them
    # What one device may leave in quarantine per rolling day; beyond it refused messages are
    # not kept (so one device cannot fill the disk for everyone).
    quarantine_items_per_day: int = 100
    quarantine_bytes_per_day: int = 20 * 1024 * 1024
    source: str = "mqtt"  # where ingesters take clips from: "mqtt" (the broker's shared subscription) or "amqp"
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    password: str = field(default="", repr=False)  # from --password or EARMARK_BROKER_PASSWORD only

    @property
    def master_key_path(self) -> Path:
        return Path(self.master_key_file) if self.master_key_file else default_master_key_path(Path(self.data_dir))

    def broker_password(self) -> str:
        return self.password or _secret("broker.password_file", self.broker.password_file, "EARMARK_BROKER_PASSWORD")

    def amqp_password(self) -> str:
        return _secret("amqp.password_file", self.amqp.password_file, "EARMARK_AMQP_PASSWORD")


def _secret(key: str, path: str, env: str) -> str:
    """A password from the file named by config `key` (preferred), else from $`env`."""
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{key} {path}: {exc.strerror}") from None
    return os.environ.get(env, "")


def default_master_key_path(data_dir: Path) -> Path:
    """<data_dir>-secrets/master.key, beside the data dir. (Stores made before this default,
    with the key at <data_dir>/secrets/master.key, keep using it.)"""
    data_dir = Path(data_dir)
    old = data_dir / "secrets" / "master.key"
    if old.exists():
        return old
    return data_dir.parent / f"{data_dir.name}-secrets" / "master.key"


def default_data_dir() -> Path:
    if env := os.environ.get("EARMARK_CLOUD_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "earmark-cloud"


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,)}


def _section(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {prefix}: expected a table")
    known = {f.name: str(f.type) for f in fields(cls)}
    for key, value in raw.items():
        if key not in known or key == "password":
            raise ConfigError(f"config key {prefix}{key} is unknown")
        allowed = _TYPES.get(known[key])
        if allowed is None or isinstance(value, bool) or not isinstance(value, allowed):
            raise ConfigError(f"config key {prefix}{key}: expected {known[key]}, got {type(value).__name__}")
    return cls(**raw)


BROKER_TOML = "broker.toml"  # what `broker config` wrote for the ingester, beneath cloud.toml


def _broker_written_by_config(data_dir: Path) -> dict[str, Any]:
    """The [broker] table `earmark-cloud broker config` wrote into <data_dir>/broker.toml:
    the address, CA, ingester login and password file an ingester needs, so `ingest` runs
    with no flags. cloud.toml and flags override it."""
    path = data_dir / BROKER_TOML
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("broker", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}): run `earmark-cloud broker config` again") from None
    return dict(table) if isinstance(table, dict) else {}


def load_settings(path: Path | None, data_dir: Path | None = None, **flags: Any) -> CloudSettings:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    raw = dict(raw)
    chosen = data_dir or (Path(raw["data_dir"]) if raw.get("data_dir") and isinstance(raw["data_dir"], str)
                          else default_data_dir())
    # A broker named on the command line is another broker: none of broker.toml applies to it.
    written = _broker_written_by_config(chosen) if flags.get("url") is None else {}
    broker = _section(BrokerSettings, {**written, **raw.pop("broker", {})}, "broker.")
    metrics = _section(MetricsSettings, raw.pop("metrics", {}), "metrics.")
    amqp = _section(AmqpSettings, raw.pop("amqp", {}), "amqp.")
    portal = _section(PortalSettings, raw.pop("portal", {}), "portal.")
    top: CloudSettings = _section(CloudSettings, {"data_dir": "", **raw}, "")
    given = {k: v for k, v in flags.items() if v is not None}
    broker = replace(broker, **{k: str(given.pop(k)) for k in ("url", "username", "ca", "password_file",
                                                               "client_cert", "client_key") if k in given})
    if "metrics_port" in given:
        metrics = replace(metrics, port=int(given.pop("metrics_port")))
    if "metrics_host" in given:
        metrics = replace(metrics, host=str(given.pop("metrics_host")))
    amqp = replace(amqp, **{k.removeprefix("amqp_"): str(given.pop(k)) for k in ("amqp_url", "amqp_password_file")
                            if k in given})
    if "source" in given:
        top = replace(top, source=str(given.pop("source")))
    if database_url := given.pop("database_url", ""):  # an empty flag keeps the config's
        top = replace(top, database_url=str(database_url))
    if "client_id" in given:
        broker = replace(broker, client_id=str(given.pop("client_id")))
    if not broker.client_id:
        broker = replace(broker, client_id=f"earmark-ingester-{socket.gethostname()}"[:64])
    portal = replace(portal, **{k.removeprefix("portal_"): given.pop(k) for k in ("portal_host", "portal_port")
                                if k in given})
    settings = replace(top, data_dir=str(chosen), broker=broker, amqp=amqp, metrics=metrics, portal=portal,
                       password=str(given.pop("password", "")))
    if given:
        raise TypeError(f"unknown flags {sorted(given)}")
    validate(settings)
    return settings


def validate(s: CloudSettings) -> None:
    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key}: {why}")

    parts = urlsplit(s.broker.url)
    need(parts.scheme in ("mqtt", "mqtts") and bool(parts.hostname), "broker.url",
         "must be mqtt://HOST:PORT or mqtts://HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        need(False, "broker.url", "has a bad port")
    need(not s.broker.ca or s.broker.tls, "broker.ca", "only applies to an mqtts:// url")
    need(5 <= s.broker.keepalive_s <= 3600, "broker.keepalive_s", "must be 5..3600")
    need(bool(s.broker.client_cert) == bool(s.broker.client_key), "broker.client_cert",
         "give client_cert and client_key together")
    need(0 <= s.metrics.port <= 65535, "metrics.port", "must be 0..65535")
    need(not s.database_url or urlsplit(s.database_url).scheme in ("postgresql", "postgres"), "database_url",
         "must be postgresql://ROLE@HOST:PORT/DATABASE (or empty for SQLite)")
    need(not urlsplit(s.database_url).password, "database_url",
         "must not hold a password: put it in PGPASSFILE (0600) or PGPASSWORD")
    need(s.source in ("mqtt", "amqp"), "source", 'must be "mqtt" or "amqp"')
    portal = urlsplit(s.portal.public_url)
    need(portal.scheme in ("http", "https") and bool(portal.hostname) and portal.path in ("", "/"),
         "portal.public_url", "must be https://HOST[:PORT] (http only for localhost)")
    need(portal.scheme == "https" or portal.hostname == "localhost", "portal.public_url",
         "must be https:// (passkeys need a secure origin; http works only for localhost)")
    need(1 <= s.portal.invite_minutes <= 1440, "portal.invite_minutes", "must be 1..1440")
    need(1 <= s.portal.session_idle_minutes <= s.portal.session_max_hours * 60, "portal.session_idle_minutes",
         "must be 1.. the session's maximum")
    need(1 <= s.portal.session_max_hours <= 24, "portal.session_max_hours", "must be 1..24")
    need(urlsplit(s.amqp.url).scheme in ("amqp", "amqps") and bool(urlsplit(s.amqp.url).hostname), "amqp.url",
         "must be amqp://HOST:PORT/VHOST or amqps://…")
    need(not urlsplit(s.amqp.url).password, "amqp.url", "must not hold a password: use amqp.password_file")
    need(0 <= s.retention_days <= 36500, "retention_days", "must be 0 (keep) to 36500 days")
    need(1 <= s.quarantine_items_per_day <= 1_000_000, "quarantine_items_per_day", "must be 1..1000000")
    need(MAX_ENVELOPE_BYTES <= s.quarantine_bytes_per_day <= 1 << 40, "quarantine_bytes_per_day",
         f"must be at least one envelope ({MAX_ENVELOPE_BYTES} bytes)")
    need(1024 <= s.max_envelope_bytes <= MAX_ENVELOPE_BYTES, "max_envelope_bytes",
         f"must be 1024..{MAX_ENVELOPE_BYTES}")
