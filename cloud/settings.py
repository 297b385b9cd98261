"""Cloud configuration: one TOML file loaded once into frozen dataclasses whose fields carry
their default, rule, help and flag (runtime/config.py); flags override. Every key is
documented in deploy/earmark-cloud.example.toml."""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from earmark.runtime.config import Rule, all_of, check, load, matching, one_of, override, read_toml, setting, within
from earmark.wire.envelope import MAX_ENVELOPE_BYTES
from earmark.wire.errors import ConfigError


def url_nodes(url: str) -> list[tuple[str | None, int | None]]:
    """(host, port) of each node a URL names: scheme://[login@]HOST[:PORT][,HOST[:PORT]…]/…
    (a cluster's nodes). ValueError on a bad port."""
    parts = urlsplit(url)
    nodes = [urlsplit(f"{parts.scheme}://{node}") for node in parts.netloc.rpartition("@")[2].split(",")]
    return [(node.hostname, node.port) for node in nodes]


def _url(schemes: tuple[str, ...], shape: str, secret: str) -> Rule:
    """A URL of one of these schemes, with a host (or several, HOST:PORT,HOST:PORT), good
    ports and no password (`secret`: where the password goes instead)."""
    def holds(value: str) -> bool:
        try:
            nodes = url_nodes(value)
        except ValueError:
            return False
        return not value or (urlsplit(value).scheme in schemes and all(host for host, _ in nodes))

    return all_of(matching(holds, f"must be {shape}"),
                  matching(lambda v: not urlsplit(v).password, f"must not hold a password: {secret}"))


@dataclass(frozen=True)
class BrokerSettings:
    url: str = setting("mqtt://127.0.0.1:1883", "mqtt://HOST:PORT or mqtts://HOST:PORT (TLS)",
                       _url(("mqtt", "mqtts"), "mqtt://HOST:PORT or mqtts://HOST:PORT", "use broker.password_file"),
                       flag="--broker")
    username: str = setting("", "the ingester's broker login")
    password_file: str = setting("", "a file holding the broker password (preferred over --password)")
    ca: str = setting("", "CA certificate to pin for mqtts://")
    client_cert: str = setting("", "TLS client certificate, if the broker requires one")
    client_key: str = setting("", "its private key")
    client_id: str = setting("", "this ingester's MQTT client id, the same across its restarts (its session "
                                 "queues clips while it is down); \"\" means earmark-ingester-<hostname>: give "
                                 "each ingester on a host its own")
    share_group: str = setting("", "the shared subscription's group; \"\" means the store's own, a random name "
                                   "only its ingesters know (a device that can name the group can join it)")
    keepalive_s: int = setting(30, "MQTT keepalive", within(5, 3600, "seconds"))
    reload_command: str = setting("", "how login changes reach the running broker: \"\" sends SIGHUP to the pid "
                                      "in the pid file its config names; or a command, e.g. \"systemctl reload "
                                      "mosquitto\" (either way the reload is confirmed)")

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


@dataclass(frozen=True)
class S3Settings:
    """blob_store = "s3": the bucket (made beforehand) and how to reach it. Credentials come
    as every S3 tool takes them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the shared
    credentials file, `profile`, or an instance role), never from this file."""

    endpoint_url: str = setting("", "the object store's URL (https://…; \"\" for AWS S3)")
    bucket: str = setting("", "the bucket (it must exist: `init` and the ingester check they can write, read and "
                              "delete in it)")
    region: str = setting("", "its region (\"\" takes the environment's, or us-east-1)")
    addressing_style: str = setting("path", "path (https://host/bucket/key: most self-hosted servers) or virtual "
                                            "(https://bucket.host/key: AWS)", one_of("path", "virtual"))
    prefix: str = setting("", "a key prefix for everything Earmark writes (e.g. \"earmark/\")")
    ca_bundle: str = setting("", "a CA bundle to trust for the endpoint's TLS (\"\" the system's)")
    profile: str = setting("", "a profile of the shared credentials file (\"\" the default chain)")
    conditional_writes: bool = setting(True, "the server honours If-None-Match: * on PUT (AWS S3, R2, MinIO, Ceph "
                                             "RGW): a clip is one PUT; false looks for the object first (one HEAD "
                                             "more), for servers that ignore the condition (rclone's serve s3)")


@dataclass(frozen=True)
class AmqpSettings:
    """The clustered source: RabbitMQ's MQTT plugin routes device clips into a quorum queue,
    which ingesters consume over AMQP 0-9-1 with manual acks (deploy/SCALING.md)."""

    url: str = setting("amqp://127.0.0.1:5672/earmark", "amqp://HOST:PORT/VHOST or amqps://…; a cluster's nodes "
                                                        "as HOST:PORT,HOST:PORT,… are tried in that order",
                       _url(("amqp", "amqps"), "amqp://HOST:PORT[,HOST:PORT…]/VHOST or amqps://…",
                            "use amqp.password_file"),
                       flag="--amqp-url")
    heartbeat_s: int = setting(30, "AMQP heartbeat: a node that goes silent is left (and it requeues what this "
                                   "ingester held) after about twice this", within(2, 600, "seconds"))
    username: str = setting("earmark-ingester", "the ingester's RabbitMQ login")
    password_file: str = setting("", "a file holding the AMQP password (or $EARMARK_AMQP_PASSWORD)",
                                 flag="--amqp-password-file")
    queue: str = setting("earmark.clips", "declared as a quorum queue bound to amq.topic")
    ca: str = setting("", "CA certificate to pin for amqps://")
    cert: str = setting("", "client certificate for amqps:// (its common name is amqp.username): the login is by "
                            "certificate (SASL EXTERNAL) and no password is sent; deploy/SCALING.md")
    key: str = setting("", "the client certificate's private key")


@dataclass(frozen=True)
class MetricsSettings:
    host: str = setting("127.0.0.1", "address /metrics binds to (0.0.0.0 for a Prometheus on another host)",
                        flag="--metrics-host")
    port: int = setting(9108, "port for /metrics and /healthz", within(1, 65535, zero="off"), flag="--metrics-port")


@dataclass(frozen=True)
class DataRequestSettings:
    """What every export says beside the copy (GDPR Art. 15: cloud/owner/statement.py); left
    empty, a default text is printed, marked as one."""

    controller: str = setting("", "who is responsible for the recordings (the controller): a name and address")
    contact: str = setting("", "where an owner writes about their data: an email or postal address")
    purposes: str = setting("", "why the recordings are kept")
    recipients: str = setting("", "who else receives recordings or data about them (hosting, processors)")
    authority: str = setting("", "the supervisory authority an owner may complain to")


@dataclass(frozen=True)
class PortalSettings:
    public_url: str = setting("http://localhost:8080", "where owners reach the portal (behind a TLS reverse "
                                                       "proxy in production); invite links are built from it, and "
                                                       "its host is the passkeys' relying party id",
                              matching(lambda v: _portal_url_ok(v), "must be https://HOST[:PORT] (passkeys need a "
                                                                    "secure origin; http works only for localhost)"))
    host: str = setting("127.0.0.1", "address the portal listens on", flag="--host")
    port: int = setting(8080, "port it listens on", within(1, 65535), flag="--port")
    invite_minutes: int = setting(15, "how long an invite link works", within(1, 1440, "minutes"))
    session_idle_minutes: int = setting(15, "a session ends after this long without a request",
                                        within(1, 1440, "minutes"))
    session_max_hours: int = setting(8, "and at the latest this long after sign-in", within(1, 24, "hours"))
    trusted_proxies: str = setting("", "addresses of the reverse proxies whose X-Forwarded-For names the client "
                                       "(comma-separated, e.g. \"127.0.0.1\"); empty: the header is ignored, since "
                                       "anyone can send it",
                                   matching(lambda v: _addresses_ok(v), "must be IP addresses, comma-separated"))


def _addresses_ok(value: str) -> bool:
    try:
        [ipaddress.ip_address(a.strip()) for a in value.split(",") if a.strip()]
    except ValueError:
        return False
    return True


def _portal_url_ok(value: str) -> bool:
    parts = urlsplit(value)
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and parts.path in ("", "/")
            and (parts.scheme == "https" or parts.hostname == "localhost"))


@dataclass(frozen=True)
class CloudSettings:
    data_dir: str = setting(help="the store", internal=True)
    master_key_file: str = setting("", "\"\" means <data_dir>-secrets/master.key: beside the data dir, never "
                                       "inside it, so a backup of the data dir or the database never holds the key")
    database_url: str = setting("", "\"\" keeps the embedded SQLite store in data_dir; postgresql://ROLE@HOST/DB "
                                    "puts rows in PostgreSQL as the service role (a password comes from PGPASSFILE "
                                    "or PGPASSWORD)",
                                _url(("postgresql", "postgres"), "postgresql://ROLE@HOST:PORT/DATABASE (or empty "
                                     "for SQLite)", "put it in PGPASSFILE (0600) or PGPASSWORD"),
                                flag="--database-url")
    blob_store: str = setting("files", "where the sealed clips go: files (under data_dir; with several ingesters, a "
                                       "filesystem they share), database (a table of the store's database, shared "
                                       "by ingesters on any host, replicated and backed up with the rows) or s3 (an "
                                       "S3-compatible object store: [s3])",
                              one_of("files", "database", "s3"), flag="--blob-store")
    max_envelope_bytes: int = setting(MAX_ENVELOPE_BYTES, "the largest envelope the ingester takes",
                                      within(1024, MAX_ENVELOPE_BYTES, "bytes"))
    retention_days: int = setting(0, "`earmark-cloud purge` deletes clips captured longer ago",
                                  within(1, 36500, "days", zero="keep them"))
    quarantine_items_per_day: int = setting(100, "what one device may leave in quarantine per rolling day",
                                            within(1, 1_000_000))
    quarantine_bytes_per_day: int = setting(20 * 1024 * 1024, "… in bytes (at least one envelope)",
                                            within(MAX_ENVELOPE_BYTES, 1 << 40, "bytes"))
    source: str = setting("mqtt", "where ingesters take clips from: mqtt (the broker's shared subscription) or "
                                  "amqp (a RabbitMQ quorum queue)", one_of("mqtt", "amqp"), flag="--source")
    broker: BrokerSettings = setting(factory=BrokerSettings)
    amqp: AmqpSettings = setting(factory=AmqpSettings)
    metrics: MetricsSettings = setting(factory=MetricsSettings)
    portal: PortalSettings = setting(factory=PortalSettings)
    data_request: DataRequestSettings = setting(factory=DataRequestSettings)
    s3: S3Settings = setting(factory=lambda: S3Settings())

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"CloudSettings(data_dir={self.data_dir!r}, database_url={self.database_url!r}, …)"

    @property
    def master_key_path(self) -> Path:
        return Path(self.master_key_file) if self.master_key_file else default_master_key_path(Path(self.data_dir))

    def broker_password(self) -> str:
        return _secret("broker.password_file", self.broker.password_file, "EARMARK_BROKER_PASSWORD")

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


def load_settings(path: Path | None, data_dir: Path | None = None,
                  flags: Mapping[str, Any] | None = None) -> CloudSettings:
    """Settings from, lowest first: defaults, what `broker config` wrote (broker.toml in the
    data dir), the config file, and `flags` (setting paths, "broker.url", as the command line
    gave them). No password comes from a flag: a process's arguments are readable by others."""
    flags = dict(flags or {})
    raw = read_toml(path) if path is not None else {}
    chosen = data_dir or raw.pop("data_dir", None) or default_data_dir()
    if not isinstance(chosen, str | Path):
        raise ConfigError("config key data_dir: expected str")
    # A broker named on the command line is another broker: none of broker.toml applies to it.
    written = _broker_written_by_config(Path(chosen)) if "broker.url" not in flags else {}
    raw["broker"] = {**written, **raw.get("broker", {})} if isinstance(raw.get("broker", {}), dict) else raw["broker"]
    if not flags.get("database_url"):  # an empty flag keeps the config's
        flags.pop("database_url", None)
    settings = override(load(CloudSettings, raw, data_dir=str(chosen)), flags)
    if not settings.broker.client_id:
        settings = replace(settings, broker=replace(settings.broker,
                                                    client_id=f"earmark-ingester-{socket.gethostname()}"[:64]))
    validate(settings)
    return settings


def validate(s: CloudSettings) -> None:
    """Each key's own rule (its field's), then the rules between keys."""
    check(s)

    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key}: {why}")

    need(not s.broker.ca or s.broker.tls, "broker.ca", "only applies to an mqtts:// url")
    need(bool(s.broker.client_cert) == bool(s.broker.client_key), "broker.client_cert",
         "give client_cert and client_key together")
    need(s.portal.session_idle_minutes <= s.portal.session_max_hours * 60, "portal.session_idle_minutes",
         "must be 1.. the session's maximum")
    need(s.blob_store != "s3" or bool(s.s3.bucket), "s3.bucket", "blob_store = \"s3\" needs the bucket")
