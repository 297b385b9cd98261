"""Earmark on several hosts of one machine, with faults: `deploy/cluster/run.sh --faults`.

Topology (each box a network namespace with its own address on one bridge; deploy/SCALING.md
draws it): three RabbitMQ nodes clustered with the MQTT plugin, the clips in a quorum queue;
a PostgreSQL primary with a synchronous streaming standby; three ingesters, each listing the
RabbitMQ nodes in its own order and both PostgreSQL servers (target_session_attrs=read-write),
with blob_store = "database"; six simulated devices of three owners on a devices host, two
on each RabbitMQ node.

--faults: while the devices publish, the run SIGKILLs a RabbitMQ node (and restarts it),
cuts an ingester's host off the network (and mends it), SIGKILLs the PostgreSQL primary and
promotes the standby, and SIGKILLs an ingester mid-batch (and restarts it, as systemd would).
Then the devices stop making clips, their spools drain, and the checker (checker.py) compares
every device's ledger with the store and with each owner's export. The last line is its
verdict; the exit status is non-zero on any loss, duplicate, misfiled clip or chain gap.

--throughput: no faults; the devices fill the queue with the ingesters stopped, then 1, 2
and 3 ingester hosts drain it, and the run prints clips per second and the ingesters' CPU
per clip.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from checker import check, read_ledgers  # noqa: E402
from hosts import Host, PgServer, RabbitNode, make_network, sh, teardown_network, wait_for  # noqa: E402

from earmark.cloud.store.crypto import create_master_key  # noqa: E402
from earmark.cloud.store.postgres import migrate  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from earmark.device.sync.identity import public_key_of  # noqa: E402
from tests.support.rabbit import account_definitions  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
CLOUD = str(ROOT / ".venv" / "bin" / "earmark-cloud")
VHOST = "earmark"
INGESTER = "earmark-ingester"
OWNERS = ("Ana", "Ben", "Cleo")
HOSTS = {"rmq1": 11, "rmq2": 12, "rmq3": 13, "pg1": 21, "pg2": 22, "ing1": 31, "ing2": 32, "ing3": 33, "dev": 41}
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {message}", flush=True)


class Cluster:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.hosts: dict[str, Host] = {}
        self.rabbits: list[RabbitNode] = []
        self.pg: list[PgServer] = []
        self.ingesters: dict[str, subprocess.Popen[bytes]] = {}
        self.devices: dict[str, subprocess.Popen[bytes]] = {}
        self.device_owner: dict[str, str] = {}
        self.secrets = work / "secrets"
        self.master_key = work / "keys" / "master.key"

    # -- set-up ------------------------------------------------------------------------

    def start(self) -> None:
        sh("rm", "-rf", str(self.work))
        self.work.mkdir(parents=True)
        self.work.chmod(0o711)  # PostgreSQL (user postgres) keeps its data dirs below it
        self.secrets.mkdir(mode=0o700)
        teardown_network()  # what an earlier run left
        self.hosts = make_network(HOSTS)
        say(f"{len(self.hosts)} hosts on bridge 10.88.0.0/24: " + ", ".join(f"{h.name} {h.address}"
                                                                             for h in self.hosts.values()))
        names = [f"rabbit@{self.hosts[f'rmq{i}'].address}" for i in (1, 2, 3)]
        self.rabbits = [RabbitNode(self.hosts[f"rmq{i}"], self.work / f"rmq{i}", names) for i in (1, 2, 3)]
        for node in self.rabbits:
            node.prepare()
            node.start()
        self.pg = [PgServer(self.hosts["pg1"], self.work / "pg1"), PgServer(self.hosts["pg2"], self.work / "pg2")]
        primary, standby = self.pg
        primary.init_primary()
        primary.start()
        primary.sql("CREATE DATABASE earmark")
        migrate(self.admin_url(primary), "earmark_service")
        standby.init_standby(primary)
        standby.start()
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'")
        primary.sql("SELECT pg_reload_conf()")
        wait_for("the standby to stream synchronously", lambda: primary.sql(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')") == "1", 60)
        say("PostgreSQL: primary on pg1, synchronous streaming standby on pg2")
        for node in self.rabbits:
            node.await_startup()
        running = self.rabbits[0].ctl("eval", "length(rabbit_nodes:all_running()).").stdout.strip()
        if running != "3":
            raise RuntimeError(f"the RabbitMQ cluster has {running} running node(s), not 3")
        say("RabbitMQ: 3 nodes clustered, MQTT plugin on each")
        self.make_store()
        self.make_accounts()

    def admin_url(self, server: PgServer) -> str:
        return f"postgresql://postgres@{server.host.address}/earmark"

    @property
    def service_url(self) -> str:
        hosts = ",".join(s.host.address for s in self.pg)
        return (f"postgresql://earmark_service@{hosts}/earmark?target_session_attrs=read-write&connect_timeout=3"
                "&keepalives_idle=5&keepalives_interval=2&keepalives_count=3")

    def make_store(self) -> None:
        create_master_key(self.master_key)
        with Store(self.work / "admin-data", self.master_key, create=True, database_url=self.service_url,
                   blob_store="database") as store:
            for name in OWNERS:
                owner = store.registry.add_owner(name).owner_id
                for k in (1, 2):
                    device_id = f"{name.lower()}-pi-{k}"
                    key = Ed25519PrivateKey.generate()
                    folder = self.work / "devices" / device_id
                    folder.mkdir(parents=True, mode=0o700)
                    (folder / "key.pem").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                                       NoEncryption()))
                    store.registry.add_device(owner, public_key_of(key), device_id)
                    self.device_owner[device_id] = owner
        say(f"store: {len(OWNERS)} owners, {len(self.device_owner)} devices, blobs in PostgreSQL")

    def make_accounts(self) -> None:
        password = secrets.token_urlsafe(16)
        (self.secrets / "ingester.password").write_text(password)
        devices = {}
        for device_id in self.device_owner:
            device_password = secrets.token_urlsafe(16)
            (self.secrets / f"{device_id}.password").write_text(device_password)
            devices[device_id] = (device_id, device_password)
        definitions = self.work / "definitions.json"
        definitions.write_text(json.dumps(account_definitions(VHOST, (INGESTER, password), devices)))
        self.rabbits[0].ctl("import_definitions", str(definitions))
        say("RabbitMQ: vhost earmark, the ingester's and each device's login and permissions")

    # -- ingesters and devices -----------------------------------------------------------

    def ingester_config(self, name: str) -> Path:
        n = int(name[-1])
        order = [self.rabbits[(n - 1 + i) % 3].host.address for i in range(3)]  # its own node first
        folder = self.work / name
        (folder / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        config = folder / "cloud.toml"
        config.write_text("\n".join([
            f'master_key_file = "{self.master_key}"', f'database_url = "{self.service_url}"',
            'blob_store = "database"', 'source = "amqp"', "[broker]", f'client_id = "{name}"', "[amqp]",
            f'url = "amqp://{",".join(f"{a}:5672" for a in order)}/{VHOST}"', f'username = "{INGESTER}"',
            f'password_file = "{self.secrets / "ingester.password"}"', "heartbeat_s = 4", "[metrics]", "port = 0",
        ]) + "\n")
        return config

    def start_ingester(self, name: str) -> None:
        config = self.ingester_config(name)
        self.ingesters[name] = self.hosts[name].spawn(
            [CLOUD, "ingest", "--data-dir", str(config.parent / "data"), "--config", str(config)],
            config.parent / "ingester.log")

    def start_devices(self, clips_per_s: float, clip_seconds: float) -> None:
        stop = self.work / "devices" / "stop"
        stop.unlink(missing_ok=True)
        for i, device_id in enumerate(self.device_owner):
            folder = self.work / "devices" / device_id
            node = self.rabbits[i % 3]
            config = folder / "device.json"
            config.write_text(json.dumps({
                "device_id": device_id, "owner_id": self.device_owner[device_id], "folder": str(folder),
                "key_file": str(folder / "key.pem"), "broker": f"mqtt://{node.host.address}:1883",
                "username": f"{VHOST}:{device_id}", "password_file": str(self.secrets / f"{device_id}.password"),
                "receipt_timeout_s": 8, "clips_per_s": clips_per_s, "clip_seconds": clip_seconds,
                "stop_file": str(stop), "drain_timeout_s": 240}))
            self.devices[device_id] = self.hosts["dev"].spawn([PYTHON, str(HERE / "device.py"), "--config",
                                                               str(config)], folder / "device.log")

    def stop_devices(self) -> dict[str, int]:
        (self.work / "devices" / "stop").write_text("")
        return {d: p.wait(timeout=300) for d, p in self.devices.items()}

    def stop_ingesters(self) -> None:
        for process in self.ingesters.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.ingesters.values():
            process.wait(timeout=60)

    def primary(self) -> PgServer:
        return next(s for s in self.pg if s.process is not None and s.process.poll() is None and s.is_primary())

    def check(self) -> bool:
        with Store(self.work / "admin-data", self.master_key, database_url=self.service_url,
                   blob_store="database") as store:
            sent = read_ledgers({d: self.work / "devices" / d / "ledger" for d in self.device_owner})
            report = check(store, sent, self.device_owner, self.work / "exports")
        for line in report.lines():
            print(line, flush=True)
        return report.ok

    def teardown(self) -> None:
        for process in [*self.devices.values(), *self.ingesters.values()]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for node in self.rabbits:
            node.kill()
        for server in self.pg:
            server.kill()
        teardown_network()


def run_faults(cluster: Cluster) -> bool:
    for name in ("ing1", "ing2", "ing3"):
        cluster.start_ingester(name)
    cluster.start_devices(clips_per_s=2.0, clip_seconds=2.0)
    say("6 devices publishing (2 clips/s each, 2 s clips) through rmq1, rmq2, rmq3; 3 ingesters consuming")
    rmq3, ing1, ing2 = cluster.rabbits[2], cluster.ingesters["ing1"], cluster.hosts["ing2"]
    pg1, pg2 = cluster.pg
    timeline = [
        (10, "SIGKILL RabbitMQ node rmq3", rmq3.kill),
        (22, "cut ing2's host off the network", ing2.cut),
        (32, "restart rmq3", lambda: (rmq3.start(), rmq3.await_startup())),
        (40, "SIGKILL the PostgreSQL primary (pg1)", pg1.kill),
        (43, "promote the standby (pg2) to primary", pg2.promote),
        (50, "mend ing2's link", ing2.mend),
        (58, "SIGKILL ingester ing1 mid-batch", lambda: os.killpg(ing1.pid, signal.SIGKILL)),
        (61, "restart ing1 (as systemd's Restart=always would)", lambda: cluster.start_ingester("ing1")),
    ]
    started = time.monotonic()
    for at, what, action in timeline:
        time.sleep(max(0.0, started + at - time.monotonic()))
        say(f"fault: {what}")
        action()
    time.sleep(max(0.0, started + 75 - time.monotonic()))
    say("devices stop making clips; waiting for their spools to drain")
    exits = cluster.stop_devices()
    say("devices: " + ", ".join(f"{d} exit {code}" for d, code in exits.items()))
    cluster.stop_ingesters()
    say(f"ingesters stopped; checking against the primary, now {cluster.primary().host.name}")
    return cluster.check() and not any(exits.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", action="store_true", help="inject the faults and check (the default)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/earmark-cluster"))
    parser.add_argument("--keep", action="store_true", help="leave the hosts running afterwards")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("deploy/cluster/run.sh makes network namespaces: run it as root", file=sys.stderr)
        return 2
    cluster = Cluster(args.work)
    try:
        cluster.start()
        ok = run_faults(cluster)
    finally:
        if not args.keep:
            cluster.teardown()
    say(f"done in {time.monotonic() - T0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
