"""Hosts on one machine, and the real engines the cluster runs on them.

Each host is a network namespace (`ip netns`) with one veth link to a bridge in the root
namespace, so hosts reach each other only over their own addresses (10.88.0.0/24), and
cutting a host's link (`ip link set … down`) partitions it from everything. On a host run,
as they would on their own machine: a RabbitMQ node (Debian's rabbitmq-server, with the MQTT
plugin, clustered by classic peer discovery), a PostgreSQL server (Debian's postgres, the
standby made by pg_basebackup and promoted by pg_ctl), an ingester (`earmark-cloud ingest`)
or simulated devices. Needs root. Everything lives under one work folder, removed by
`teardown`, which also removes the namespaces and the bridge.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from earmark.cloud.broker.certs import ca_paths, issue
from earmark.cloud.broker.rabbit import PLUGINS, ServerTls, server_conf

BRIDGE = "emk0"
PREFIX = "emk-"  # namespaces and root-side links
NET = "10.88.0"
PG_BIN = Path("/usr/lib/postgresql") / (sorted(os.listdir("/usr/lib/postgresql"))[-1] if Path(
    "/usr/lib/postgresql").exists() else "15") / "bin"
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
COOKIE = "EARMARKCLUSTERHARNESSCOOKIE"


def sh(*argv: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None,
       quiet: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=quiet, text=True, timeout=timeout, env=env)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {(done.stderr or '').strip()[-400:]}")
    return done


@dataclass
class Host:
    name: str
    address: str

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    @property
    def link(self) -> str:
        return f"{PREFIX}{self.name}"[:15]  # the root side of its veth (interface names: 15 characters)

    def run(self, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.netns, *argv, **kw)  # type: ignore[arg-type]

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None,
              user: str | None = None) -> subprocess.Popen[bytes]:
        prefix = ["ip", "netns", "exec", self.netns]
        if user:
            prefix += ["runuser", "-u", user, "--"]
        out = open(log, "ab")  # noqa: SIM115 - the child's, closed when it ends
        return subprocess.Popen(prefix + argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def cut(self) -> None:
        sh("ip", "link", "set", self.link, "down")

    def mend(self) -> None:
        sh("ip", "link", "set", self.link, "up")


def make_network(names: dict[str, int], bridge: str = BRIDGE, net: str = NET) -> dict[str, Host]:
    """A host per name (its address's last byte on `net`), each linked to `bridge`."""
    sh("ip", "link", "add", bridge, "type", "bridge")
    sh("ip", "addr", "add", f"{net}.1/24", "dev", bridge)
    sh("ip", "link", "set", bridge, "up")
    hosts = {}
    for name, last in names.items():
        host = Host(name, f"{net}.{last}")
        sh("ip", "netns", "add", host.netns)
        sh("ip", "link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        sh("ip", "link", "set", host.link, "master", bridge, "up")
        host.run("ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
        host.run("ip", "link", "set", "eth0", "up")
        host.run("ip", "link", "set", "lo", "up")
        hosts[name] = host
    return hosts


def remove_network(hosts: list[Host], bridge: str) -> None:
    """These hosts (every process on them killed) and their bridge."""
    for host in hosts:
        for pid in sh("ip", "netns", "pids", host.netns, check=False).stdout.split():
            _kill(int(pid))
        sh("ip", "netns", "delete", host.netns, check=False)
        sh("ip", "link", "delete", host.link, check=False)
    sh("ip", "link", "delete", bridge, check=False)


def teardown_network() -> None:
    """Every host this harness made (namespaces named emk-…), and the bridge."""
    hosts = [Host(line.split(" ")[0].removeprefix(PREFIX), "") for line in
             sh("ip", "netns", "list", check=False).stdout.splitlines() if line.startswith(PREFIX)]
    remove_network(hosts, BRIDGE)


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_for(what: str, ready: object, timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# -- RabbitMQ ---------------------------------------------------------------------------------


@dataclass
class RabbitNode:
    host: Host
    folder: Path
    peers: list[str]  # every node's name, this one's included
    ca_dir: Path  # the CA that signs the nodes' and the ingesters' certificates

    @property
    def node(self) -> str:
        return f"rabbit@{self.host.address}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.folder.parent / "erlang-home"),
                "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"), "RABBITMQ_USE_LONGNAME": "true",
                "RABBITMQ_NODENAME": self.node, "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.folder / "log"),
                "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(self.folder / "pid")}

    def prepare(self) -> None:
        home = self.folder.parent / "erlang-home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(COOKIE)
            cookie.chmod(0o400)
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's (it pins 127.0.0.1)
        (self.folder / "enabled_plugins").write_text(f"[{','.join(PLUGINS)}].\n")
        tls = self.folder / "tls"  # the node's certificate, from the harness's CA (Earmark's server settings)
        cert, key = issue(self.ca_dir, "node", tls, [self.host.address])  # (the harness's nodes run as root)
        lines = [*server_conf(ServerTls(ca_paths(self.ca_dir)[0], cert, key), "5671"),
                 "listeners.tcp.default = 5672", "mqtt.listeners.tcp.default = 1883", "mqtt.allow_anonymous = false",
                 "loopback_users = none", "cluster_partition_handling = pause_minority",
                 "cluster_formation.peer_discovery_backend = classic_config",
                 *(f"cluster_formation.classic_config.nodes.{i} = {peer}" for i, peer in enumerate(self.peers, 1)),
                 "log.file.level = warning"]
        (self.folder / "rabbitmq.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.host.run(str(RABBIT_BIN / "rabbitmq-server"), "-detached", env=self.env())

    def ctl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.host.run(str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args, env=self.env(),
                             timeout=timeout, check=check)

    def rows(self, *args: str, timeout: float = 30) -> list[list[str]]:
        """A rabbitmqctl listing's rows, each its tab-separated columns (none if the node does
        not answer)."""
        out = self.ctl("-q", *args, "--no-table-headers", check=False, timeout=timeout).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def await_startup(self, timeout: float = 120) -> None:
        """Until the node runs (await_startup alone fails at once while the node is not yet
        registered with epmd). On a timeout, the error ends with the node's last log lines."""
        try:
            wait_for(f"RabbitMQ on {self.host.name}", lambda: self.ctl(
                "await_startup", "--timeout", "10", timeout=30, check=False).returncode == 0, timeout, every=1)
        except RuntimeError as exc:
            log = self.folder / "log" / f"{self.node}.log"
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else ["(no log)"]
            raise RuntimeError(f"{exc}; its log ends:\n" + "\n".join(tail)) from None

    def restart(self) -> None:
        """Start the node again after a kill and wait until it runs. Seen once in a dozen runs:
        the restarted node never came up; if its VM is gone after a minute, it is started once more."""
        self.start()
        try:
            self.await_startup(60)
        except RuntimeError:
            if not self.vm_alive():
                self.start()
            self.await_startup(120)

    def vm_alive(self) -> bool:
        return (pid := self._pid()) is not None and Path(f"/proc/{pid}").exists()

    def _pid(self) -> int | None:
        """The node's Erlang VM, as its pid file says (the last one started)."""
        pid = (self.folder / "pid").read_text().strip() if (self.folder / "pid").exists() else ""
        return int(pid) if pid else None

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM (its epmd stays, as it would on a real host)."""
        if (pid := self._pid()) is not None:
            _kill(pid)

    def stop(self) -> None:
        self.ctl("stop", check=False, timeout=60)


# -- PostgreSQL -------------------------------------------------------------------------------


@dataclass
class PgServer:
    host: Host
    folder: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _own(self) -> None:
        user = pwd.getpwnam("postgres")
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(self.folder, user.pw_uid, user.pw_gid)

    def init_primary(self) -> None:
        self._own()
        self.host.run("runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(self.data),
                      "--auth=trust", "-U", "postgres", "--no-sync")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {NET}.0/24 trust\nhost replication all {NET}.0/24 trust\n")

    def init_standby(self, primary: PgServer) -> None:
        """A fresh copy of the primary (pg_basebackup), set to stream from it."""
        shutil.rmtree(self.data, ignore_errors=True)
        self._own()
        self.host.run("runuser", "-u", "postgres", "--", str(PG_BIN / "pg_basebackup"), "-h", primary.host.address,
                      "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast",
                      "-d", f"application_name={self.host.name}")

    def start(self) -> None:
        options = ["-c", f"listen_addresses={self.host.address}", "-c", f"unix_socket_directories={self.folder}",
                   "-c", "wal_level=replica", "-c", "max_wal_senders=5", "-c", "hot_standby=on",
                   "-c", "fsync=on", "-c", "synchronous_commit=on",
                   # a client gone silent (its host cut off) lets go of its locks in about 11 s
                   "-c", "tcp_keepalives_idle=5", "-c", "tcp_keepalives_interval=2", "-c", "tcp_keepalives_count=3",
                   "-c", "idle_in_transaction_session_timeout=30s", "-c", "logging_collector=off"]
        self.process = self.host.spawn([str(PG_BIN / "postgres"), "-D", str(self.data), *options],
                                       self.folder / "postgres.log", user="postgres")
        wait_for(f"PostgreSQL on {self.host.name}", self.answers, 60)

    def answers(self) -> bool:
        return self.host.run(str(PG_BIN / "pg_isready"), "-q", "-h", self.host.address, check=False).returncode == 0

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: the machine is gone."""
        for pid in self.host.run("pgrep", "-u", "postgres", "-f", str(self.data), check=False).stdout.split():
            _kill(int(pid))

    def promote(self) -> None:
        self.host.run("runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "promote", "-w", "-D",
                      str(self.data), timeout=60)

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self.host.run(str(PG_BIN / "psql"), "-h", self.host.address, "-U", "postgres", "-d", database,
                             "-Atc", statement).stdout.strip()

    def is_primary(self) -> bool:
        done = self.host.run(str(PG_BIN / "psql"), "-h", self.host.address, "-U", "postgres", "-Atc",
                             "SELECT NOT pg_is_in_recovery()", check=False)
        return done.stdout.strip() == "t"


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
