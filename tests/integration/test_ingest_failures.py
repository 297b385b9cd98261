"""`earmark-cloud ingest` when something around it is wrong (issue 13 cases 5 and 6): a
setting no retry can fix exits 2 at once with one line naming it; a broker that is not
there (yet) is retried and each reason is logged, not just a 503 on /healthz."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.broker import free_port
from tests.support.cloudkit import make_store
from tests.support.pgdb import temporary_database
from tests.support.securecloud import SecureCloud

ROOT = Path(__file__).resolve().parents[2]


def ingest(data_dir: Path, *flags: str, seconds: float = 20) -> subprocess.CompletedProcess[str]:
    """Run the ingester; stop it after `seconds` if it is still running (it should be, when waiting)."""
    proc = subprocess.Popen([sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir", str(data_dir),
                             "--metrics-port", "0", *flags], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        return subprocess.CompletedProcess(proc.args, -1, out, err)  # -1: it was still running
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    make_store(tmp_path / "cloud").close()
    return tmp_path / "cloud"


def refused_at_once(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("earmark-cloud: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_a_wrong_broker_password_exits_2_naming_the_login(tmp_path: Path) -> None:
    cloud = SecureCloud(tmp_path)
    cloud.start_broker()
    try:
        bad = tmp_path / "bad.password"
        bad.write_text("not the password\n")
        started = time.monotonic()
        result = ingest(cloud.data_dir, "--password-file", str(bad))  # the rest from broker.toml
        refused_at_once(result, "refused the login 'earmark-ingester'", "broker.password_file")
        assert time.monotonic() - started < 15
    finally:
        cloud.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1:{port}", "connection refused by 127.0.0.1:{port}"),
    ("mqtt://no-such-host.invalid:1883", "cannot resolve the broker host 'no-such-host.invalid'"),
])
def test_an_unreachable_broker_is_retried_and_each_reason_is_logged(store_dir: Path, url: str,
                                                                     expected: str) -> None:
    port = free_port()
    result = ingest(store_dir, "--broker", url.format(port=port), seconds=6)
    assert result.returncode == -1, result.stderr  # still running: it retries
    assert expected.format(port=port) in result.stderr
    assert result.stderr.count(expected.format(port=port)) == 1  # not once per attempt


def test_tls_without_the_brokers_ca_says_to_pin_it(tmp_path: Path) -> None:
    cloud = SecureCloud(tmp_path)
    cloud.start_broker()
    try:
        (cloud.data_dir / "broker.toml").unlink()
        result = ingest(cloud.data_dir, "--broker", cloud.setup.url, "--username", "earmark-ingester",
                        "--password-file", str(cloud.setup.ingester_password_file), seconds=6)
        assert result.returncode == -1
        assert "certificate verify failed" in result.stderr and "--ca" in result.stderr
    finally:
        cloud.close()


@pytest.mark.parametrize("what", ["role", "database"])
def test_a_missing_postgres_role_or_database_exits_2_at_once(store_dir: Path, what: str) -> None:
    with temporary_database() as url:
        role_part, rest = url.split("//", 1)[1].split("@", 1)
        host, database = rest.split("/", 1)
        bad = (f"postgresql://no_such_role@{host}/{database}" if what == "role"
               else f"postgresql://{role_part}@{host}/no_such_database")
        result = ingest(store_dir, "--database-url", bad)
    refused_at_once(result, "refused", "does not exist")


def test_rabbitmq_refusing_the_login_exits_2(store_dir: Path) -> None:
    (store_dir / "amqp.password").write_text("wrong\n")
    with socket.create_connection(("127.0.0.1", 5672), timeout=5):
        pass
    result = ingest(store_dir, "--source", "amqp", "--amqp-url", "amqp://127.0.0.1:5672/earmark",
                    "--amqp-password-file", str(store_dir / "amqp.password"))
    refused_at_once(result, "RabbitMQ", "refused the login")
