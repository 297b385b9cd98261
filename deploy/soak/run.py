"""Earmark under load and faults on one host, as an operator would try it: `deploy/soak/run.sh`.

N simulated devices of 4 owners (deploy/cluster/device.py: the real Sealer, Spool and
Publisher; each clip sealed to its household) publish 5 s clips over TLS through the
generated Mosquitto (`earmark-cloud broker config`) into `earmark-cloud ingest` on SQLite,
while the harness:

  1. soaks: every device makes its clips at a steady rate; the ingester's RSS and open files
     (from its /metrics) and its throughput, first tenth against last;
  2. pauses the ingester (SIGSTOP) for --outage seconds while the devices keep publishing,
     sampling the broker's RSS: bounded by the configured queue (--queue-mb), and back near
     its idle level after the drain;
  3. fills the disk under the store's blobs (a tmpfs, remounted to what it holds) for
     --disk-full seconds: /readyz must answer 503 within 5 s, /livez 200 throughout, the
     process is never restarted, and storing resumes within 5 s of room;
  4. serves the portal to concurrent clients of two owners (the recordings list and a clip's
     audio) idle, then while one owner's export runs: p95 of each, and their ratio;

then stops the devices once their spools drain and checks every clip spooled against the
store and each owner's export (deploy/cluster/checker.py): stored exactly once, none lost,
doubled or misfiled. Prints the figures; exits 1 if a check fails.

Needs root (the tmpfs) and the README's set-up. The suite runs a small slice of it
(tests/fault/test_soak.py).
Usage: deploy/soak/run.sh [--devices 24] [--clips 1000] [--outage 120] [--disk-full 20] [--queue-mb 512]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "cluster"))

from checker import check, read_ledgers  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat  # noqa: E402

from earmark.cloud.portal.guard import COOKIE  # noqa: E402
from earmark.cloud.settings import default_master_key_path  # noqa: E402
from earmark.cloud.store.portal import Passkey  # noqa: E402
from earmark.cloud.store.store import Store  # noqa: E402
from earmark.device.sync.identity import public_key_of  # noqa: E402

PYTHON = sys.executable
OWNERS = 4
# A household's key, the wire docs' worked example (docs/wire-format.md): every clip is sealed to
# it, as paired devices seal, and the checker opens the owners' exports with its identity.
RECIPIENT = "age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"
IDENTITY = "AGE-SECRET-KEY-1PA5838KK9JXNZ3AECS5X86WKLA3X0D8YY6JFSUH472YZPLT2Y85SYGMYUU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cloud(data: Path, *argv: str) -> str:
    out = subprocess.run([PYTHON, "-m", "earmark.cloud.cli", *argv, "--data-dir", str(data)], capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"earmark-cloud {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout.strip()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(url: str, cookie: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Cookie": f"{COOKIE}={cookie}"} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def metric(port: int, name: str) -> float:
    _, body = get(f"http://127.0.0.1:{port}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@dataclass
class Figures:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def hold(self, ok: bool, what: str) -> None:
        if not ok:
            self.failed.append(what)
            print(f"FAILED: {what}", flush=True)


class Soak:
    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        self.folder, self.args = folder, args
        self.data = folder / "cloud"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.figures = Figures()

    # -- the cloud ------------------------------------------------------------------------

    def start_cloud(self) -> None:
        cloud(self.data, "init")
        self.blobs = self.data / "blobs"
        self.blobs.mkdir(exist_ok=True)
        if self.args.disk_full:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g", "tmpfs", str(self.blobs)], check=True)
        self.broker_port = free_port()
        setup = json.loads(cloud(self.data, "broker", "config", "--out", str(self.folder / "broker"), "--port",
                                 str(self.broker_port), "--queue-mb", str(self.args.queue_mb), "--json"))
        self.broker_setup = setup
        self.broker = self.spawn(["mosquitto", "-c", setup["config"]], "mosquitto.log")
        time.sleep(0.5)
        self.metrics_port = free_port()
        self.start_ingester()

    def start_ingester(self) -> None:
        s = self.broker_setup
        self.ingester = self.spawn([PYTHON, "-m", "earmark.cloud.cli", "ingest", "--data-dir", str(self.data),
                                    "--broker", s["url"], "--ca", s["ca"], "--username", s["ingester_username"],
                                    "--password-file", s["ingester_password_file"], "--metrics-port",
                                    str(self.metrics_port)], "ingest.log")
        self.wait(lambda: get(f"http://127.0.0.1:{self.metrics_port}/readyz")[0] == 200, 60, "a ready ingester")

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.folder / log, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=out, cwd=ROOT)
        self.processes.append(process)
        return process

    @staticmethod
    def wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)
        return time.monotonic() - started

    # -- the devices ----------------------------------------------------------------------

    def start_devices(self) -> None:
        self.owners = [cloud(self.data, "owner", "add", "--name", f"Owner {i}") for i in range(OWNERS)]
        for owner in self.owners:
            cloud(self.data, "owner", "set-recipient", "--owner", owner, RECIPIENT)
        self.devices: dict[str, Path] = {}
        self.owner_of: dict[str, str] = {}
        self.stop_file = self.folder / "stop"
        rate = self.args.rate
        for i in range(self.args.devices):
            device_id, owner = f"soak-{i:03d}", self.owners[i % OWNERS]
            folder = self.folder / "devices" / device_id
            folder.mkdir(parents=True)
            key = Ed25519PrivateKey.generate()
            (folder / "device.key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
            bundle = folder / "bundle.json"
            cloud(self.data, "device", "add", "--owner", owner, "--public-key", public_key_of(key), "--device-id",
                  device_id, "--bundle-out", str(bundle))
            paired = json.loads(bundle.read_text())
            (folder / "broker.password").write_text(paired["password"])
            (folder / "ca.pem").write_text(paired["ca_pem"])
            config = {"device_id": device_id, "owner_id": owner, "folder": str(folder),
                      "key_file": str(folder / "device.key"), "broker": paired["broker_url"], "username": device_id,
                      "password_file": str(folder / "broker.password"), "ca": str(folder / "ca.pem"),
                      "mqtt_version": "5", "recipients": [RECIPIENT], "receipt_timeout_s": 30.0,
                      "clip_seconds": 5.0, "clips_per_s": rate, "max_clips": self.args.clips,
                      "stop_file": str(self.stop_file), "drain_timeout_s": 900}
            (folder / "device.json").write_text(json.dumps(config))
            self.devices[device_id] = folder / "ledger"
            self.owner_of[device_id] = owner
        self.device_processes = [self.spawn([PYTHON, str(ROOT / "deploy" / "cluster" / "device.py"), "--config",
                                             str(self.folder / "devices" / d / "device.json")], f"{d}.log")
                                 for d in self.devices]

    def stored(self) -> int:
        return int(metric(self.metrics_port, 'earmark_clips_total{status="stored"}'))

    # -- the phases -----------------------------------------------------------------------

    def load_with_faults(self) -> None:
        """Until every clip is stored: samples each second; at a third of them the ingester
        is paused, at two thirds the disk is filled (each for its time, while devices publish)."""
        f, args = self.figures, self.args
        total = args.devices * args.clips
        idle_broker = rss_mb(self.broker.pid)
        samples: list[tuple[float, int, float, float]] = []  # time, stored, ingester RSS MB, open files
        outage: tuple[float, float] | None = None
        full = not args.disk_full
        while True:
            stored = self.stored()
            samples.append((time.monotonic(), stored, metric(self.metrics_port, "process_resident_memory_bytes")
                            / 2**20, metric(self.metrics_port, "process_open_fds")))
            if outage is None and stored >= total // 3:
                outage = self.outage(idle_broker)
            if not full and self.stored() >= 2 * total // 3:
                full = True
                self.disk_full(total)
            if self.stored() >= total or all(p.poll() is not None for p in self.device_processes):
                break  # every clip, or every device saw its spool drain: nothing more will come
            time.sleep(1.0)
        time.sleep(3)
        drained_broker = rss_mb(self.broker.pid)
        limit = 2 * args.queue_mb + 256  # the generated memory_limit
        peak = outage[0] if outage else idle_broker
        f.say(f"broker RSS: idle {idle_broker:.0f} MB, peak during a {args.outage:.0f} s ingester outage "
              f"{peak:.0f} MB (memory_limit {limit} MB; each client's queue {args.queue_mb} MB), "
              f"after the drain {drained_broker:.0f} MB")
        f.hold(peak <= limit, "the broker stayed within its configured memory limit")
        f.hold(drained_broker <= max(idle_broker * 2, idle_broker + 64), "the broker gave back what it queued")
        steady = [s for s in samples if outage is None or not outage[1] <= s[0] <= outage[1] + args.outage + 10]
        rate = [(b[1] - a[1]) / max(b[0] - a[0], 1e-9) for a, b in itertools.pairwise(steady)]
        tenth = max(1, len(rate) // 10)
        first, last = (statistics.mean(rate[:tenth]), statistics.mean(rate[-tenth:])) if rate else (0.0, 0.0)
        f.say(f"soak: {self.stored()} clips stored of {total}; ingester RSS {samples[0][2]:.0f} -> {samples[-1][2]:.0f}"
              f" MB (max {max(s[2] for s in samples):.0f}), open files {samples[0][3]:.0f} -> {samples[-1][3]:.0f}"
              f" (max {max(s[3] for s in samples):.0f}); stored per second, first tenth {first:.1f}, last tenth "
              f"{last:.1f} (ratio {last / first if first else 0:.2f}; devices make {args.devices * args.rate:.0f}/s)")

    def outage(self, idle_broker: float) -> tuple[float, float]:
        """The ingester paused (SIGSTOP) while devices keep publishing: (peak broker RSS, when)."""
        os.kill(self.ingester.pid, signal.SIGSTOP)
        peak, started = idle_broker, time.monotonic()
        while time.monotonic() - started < self.args.outage:
            peak = max(peak, rss_mb(self.broker.pid))
            time.sleep(0.5)
        os.kill(self.ingester.pid, signal.SIGCONT)
        return peak, started

    def disk_full(self, total: int) -> None:
        f, args = self.figures, self.args
        for _ in range(50):  # shrink the tmpfs to what it holds; clips land meanwhile, so measure again
            fs = os.statvfs(self.blobs)  # its own count (du's is less): it cannot shrink below it
            used_kib = (fs.f_blocks - fs.f_bfree) * fs.f_frsize // 1024
            if subprocess.run(["mount", "-o", f"remount,size={used_kib + 512}k", str(self.blobs)],
                              capture_output=True).returncode == 0:
                break
        else:
            raise SystemExit(f"could not shrink the tmpfs at {self.blobs} to fill it")
        readyz = f"http://127.0.0.1:{self.metrics_port}/readyz"
        livez = f"http://127.0.0.1:{self.metrics_port}/livez"
        full = time.monotonic()
        not_ready = self.wait(lambda: get(readyz)[0] == 503, 60, "/readyz to say the disk is full")
        alive = True
        while time.monotonic() - full < args.disk_full:
            alive = alive and get(livez)[0] == 200 and self.ingester.poll() is None
            time.sleep(0.5)
        before = self.stored()
        subprocess.run(["mount", "-o", "remount,size=8g", str(self.blobs)], check=True)
        resumed = self.wait(lambda: self.stored() > before or before >= total, 60, "storing to resume")
        f.say(f"disk full for {args.disk_full:.0f} s: /readyz 503 after {not_ready:.1f} s, /livez 200 throughout: "
              f"{alive}, ingester restarted: {self.ingester.poll() is not None}; storing resumed {resumed:.1f} s "
              "after room")
        f.hold(not_ready <= 5.0, "/readyz said the disk was full within 5 s")
        f.hold(alive, "/livez stayed 200 and the ingester was not restarted")
        f.hold(resumed <= 5.0, "storing resumed within 5 s of room")

    def portal(self) -> None:
        f, args = self.figures, self.args
        port = free_port()
        (self.data / "cloud.toml").write_text(f'[portal]\npublic_url = "http://localhost:{port}"\nport = {port}\n')
        self.spawn([PYTHON, "-m", "earmark.cloud.cli", "portal", "--data-dir", str(self.data)], "portal.log")
        base = f"http://127.0.0.1:{port}"
        self.wait(lambda: get(f"{base}/signin")[0] == 200, 30, "the portal")
        with Store(self.data, default_master_key_path(self.data)) as store:
            sessions = []
            for owner in self.owners[:2]:
                passkey = Passkey(f"soak-{owner[:8]}", owner, b"key", 0)
                store.portal.register(store.portal.invite(owner, 900), passkey)
                token, session = store.portal.sign_in(passkey, 1, "127.0.0.1")
                clip = next(store.clips.iter_owner(owner))
                sessions.append((token, session.csrf, clip.clip_id))

        def load(seconds: float) -> dict[str, list[tuple[float, float]]]:
            """`clients` threads asking for the list and a clip's audio for `seconds`: each
            request's (start, duration), by route."""
            times: dict[str, list[tuple[float, float]]] = {"list": [], "audio": []}
            errors: list[int] = []
            until = time.monotonic() + seconds

            def client(i: int) -> None:
                token, _, clip = sessions[i % 2]
                while time.monotonic() < until:
                    for route, path in (("list", "/"), ("audio", f"/clips/{clip}/audio")):
                        started = time.monotonic()
                        status, _ = get(base + path, token)
                        times[route].append((started, time.monotonic() - started))
                        if status != 200:
                            errors.append(status)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            f.hold(not errors, f"every portal request answered 200 ({len(errors)} did not: {sorted(set(errors))})")
            return times

        def p95(samples: list[tuple[float, float]]) -> float:
            values = sorted(d for _, d in samples)
            return values[int(0.95 * (len(values) - 1))] if values else 0.0

        idle = load(args.portal_seconds)
        token, csrf, _ = sessions[0]
        busy: dict[str, list[tuple[float, float]]] = {}
        loader = threading.Thread(target=lambda: busy.update(load(args.portal_seconds + 1)))
        loader.start()
        time.sleep(1.0)  # the clients at full speed first
        request = urllib.request.Request(base + "/export", data=urlencode([("csrf", csrf)]).encode(), method="POST",
                                         headers={"Cookie": f"{COOKIE}={token}"})
        with suppress(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=30).close()
        posted = time.monotonic()
        while time.monotonic() - posted < args.portal_seconds:  # the page's own progress answer
            status, body = get(base + "/export/status", token)
            if status == 200 and not json.loads(body).get("running"):
                break
            time.sleep(0.1)
        finished = time.monotonic()
        loader.join()
        during = {route: [x for x in samples if posted <= x[0] <= finished] for route, samples in busy.items()}
        f.say(f"portal: one owner's export ran {finished - posted:.1f} s; p95 with it running is over the requests "
              "started meanwhile")
        for route in ("list", "audio"):
            ratio = p95(during[route]) / p95(idle[route]) if p95(idle[route]) else 0.0
            f.say(f"portal {route}: p95 idle {p95(idle[route]) * 1000:.0f} ms ({len(idle[route])} requests), with an "
                  f"export running {p95(during[route]) * 1000:.0f} ms ({len(during[route])} requests; x{ratio:.2f}); "
                  f"{args.clients} clients of 2 owners")
            f.hold(ratio <= 2.0, f"the portal's {route} p95 stayed within 2x of idle while an export ran")

    def finish(self) -> None:
        self.stop_file.touch()
        for p in self.device_processes:
            p.wait(timeout=900)
        time.sleep(2)
        self.ingester.send_signal(signal.SIGTERM)
        self.ingester.wait(timeout=60)
        with Store(self.data, default_master_key_path(self.data)) as store:
            report = check(store, read_ledgers(self.devices), self.owner_of, self.folder / "exports", IDENTITY)
        for line in report.lines()[-8:]:
            self.figures.say(line)
        self.figures.hold(report.ok, "every clip stored exactly once, none lost, doubled or misfiled")

    def close(self) -> None:
        for p in reversed(self.processes):
            if p.poll() is None:
                with suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
                p.terminate()
                with suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=20)
        if self.args.disk_full:
            subprocess.run(["umount", "-l", str(self.blobs)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=24)
    parser.add_argument("--clips", type=int, default=1000, help="clips of 5 s per device")
    parser.add_argument("--rate", type=float, default=2.0, help="clips per second per device")
    parser.add_argument("--outage", type=float, default=120.0, help="seconds the ingester is paused")
    parser.add_argument("--disk-full", type=float, default=20.0, help="seconds the disk is full (0: skip)")
    parser.add_argument("--queue-mb", type=int, default=512, help="the broker's queue per client")
    parser.add_argument("--clients", type=int, default=30, help="concurrent portal clients")
    parser.add_argument("--portal-seconds", type=float, default=20.0, help="each portal load's length (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (its logs) afterwards")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="earmark-soak-"))
    folder.chmod(0o755)  # Mosquitto, started as root, reads its files as its own user
    soak = Soak(folder, args)
    started = time.monotonic()
    try:
        soak.start_cloud()
        soak.start_devices()
        soak.load_with_faults()
        if args.portal_seconds:
            soak.portal()
        soak.finish()
    finally:
        soak.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
        else:
            print(f"logs in {folder}")
    f = soak.figures
    f.say(f"{args.devices} devices, {args.clips} clips each, in {time.monotonic() - started:.0f} s: "
          + ("every check held" if not f.failed else f"{len(f.failed)} check(s) failed: " + "; ".join(f.failed)))
    return 0 if not f.failed else 1


if __name__ == "__main__":
    sys.exit(main())
