"""The Mosquitto configs an operator is told to use start (issue 13 case 2): the ops
drop-in beside Debian's stock mosquitto.conf, and the generated config run as root (which
drops to the mosquitto user) and with --run-as. Each is started by a real mosquitto."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from earmark.cloud.broker.config import write_broker_config
from tests.support.broker import free_port, port_open
from tests.support.cloudkit import make_store
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
# Debian's /etc/mosquitto/mosquitto.conf as the package ships it (bookworm and trixie).
DEBIAN_STOCK = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mosquitto drops to its own user only when started as root")


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A folder the mosquitto user can reach (pytest's own are root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="earmark-broker-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 15, "mosquitto to listen or exit")
    except AssertionError:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise AssertionError(f"mosquitto exited {proc.returncode}: {log.read_text()}")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("run_as", [None, "mosquitto"])
def test_the_generated_config_starts_as_root_and_with_run_as(tmp_path: Path, public_tmp: Path,
                                                             run_as: str | None) -> None:
    store = make_store(tmp_path / "cloud")
    port = free_port()
    setup = write_broker_config(store, public_tmp / "broker", port=port, run_as=run_as)
    proc = start(setup.config, port, tmp_path / "mosquitto.log")
    try:
        pid_file = setup.config.parent / "mosquitto.pid"
        wait_until(pid_file.exists, 5, "the pid file")
        assert int(pid_file.read_text()) == proc.pid
        assert "user mosquitto" in setup.config.read_text()
    finally:
        stop(proc)
        store.close()


def test_the_ops_drop_in_starts_beside_debians_stock_config(tmp_path: Path, public_tmp: Path) -> None:
    store = make_store(tmp_path / "cloud")
    port = free_port()
    setup = write_broker_config(store, public_tmp / "broker", port=port)  # the TLS files and logins it reads
    broker_dir = setup.config.parent
    etc, run, lib, log = (public_tmp / name for name in ("etc", "run", "lib", "log"))
    for folder in (etc / "conf.d", run, lib, log):
        folder.mkdir(parents=True)
    for folder in (run, lib, log):
        shutil.chown(folder, "mosquitto", "mosquitto")
    (etc / "mosquitto.conf").write_text(
        DEBIAN_STOCK.replace("/run/mosquitto", str(run)).replace("/var/lib/mosquitto", str(lib))
        .replace("/var/log/mosquitto", str(log)).replace("/etc/mosquitto", str(etc)))
    drop_in = (ROOT / "deploy" / "mosquitto" / "earmark.conf").read_text()
    (etc / "conf.d" / "earmark.conf").write_text(
        drop_in.replace("/var/lib/earmark-cloud/broker", str(broker_dir)).replace("listener 8883 0.0.0.0",
                                                                                  f"listener {port} 127.0.0.1"))
    proc = start(etc / "mosquitto.conf", port, tmp_path / "mosquitto.log")
    try:
        assert (run / "mosquitto.pid").exists()
    finally:
        stop(proc)
        store.close()
