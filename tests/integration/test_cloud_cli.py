"""`earmark-cloud` admin commands as a script would use them: ids on stdout, --json,
one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.settings import default_master_key_path, load_settings
from earmark.cloud.store.migrations import SCHEMA_VERSION as PG_SCHEMA_VERSION
from earmark.cloud.store.store import Store
from earmark.wire.errors import ConfigError
from tests.support.cloudkit import SimDevice

ROOT = Path(__file__).resolve().parents[2]


def cloud(*args: str | Path, data_dir: Path, url: str = "") -> subprocess.CompletedProcess[str]:
    database = ["--database-url", url] if url else []
    return subprocess.run([sys.executable, "-m", "earmark.cloud.cli", *map(str, args), "--data-dir", str(data_dir),
                           *database],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("earmark-cloud: error:") and needle in lines[0], result.stderr


def test_a_script_can_set_up_owners_and_devices_and_list_clips(tmp_path: Path, database_url: str) -> None:
    d = tmp_path / "cloud"

    def run(*args: str) -> str:
        return ok(cloud(*args, data_dir=d, url=database_url))

    run("init")
    assert oct((default_master_key_path(d)).stat().st_mode & 0o777) == "0o600"
    assert oct(d.stat().st_mode & 0o777) == "0o700"
    alice = run("owner", "add", "--name", "Alice")
    bob = json.loads(run("owner", "add", "--name", "Bob", "--json"))["owner_id"]
    device = SimDevice("kitchen", alice)
    assert run("device", "add", "--owner", alice, "--public-key", device.public_key,
               "--device-id", "kitchen") == "kitchen"
    generated = run("device", "add", "--owner", bob, "--public-key", SimDevice("x", bob).public_key)
    assert generated.startswith("dev-")
    devices = json.loads(run("--json", "device", "list"))  # global flags go before the command too
    assert {(x["device_id"], x["owner_id"]) for x in devices} == {("kitchen", alice), (generated, bob)}
    assert [x["device_id"] for x in json.loads(run("device", "list", "--owner", bob, "--json"))] == [generated]

    store = Store(d, default_master_key_path(d), database_url=database_url)
    Ingestor(store).handle(device.topic, device.clip())
    store.close()
    [clip] = json.loads(run("clips", "list", "--owner", alice, "--json"))
    assert clip["device_id"] == "kitchen" and clip["wake_word"] == "alexa"
    assert json.loads(run("clips", "list", "--owner", bob, "--json")) == []  # an empty list is still JSON
    assert "chain intact" in run("audit", "verify")
    assert json.loads(run("status", "--json"))["wakes"] == [{"wake_word": "alexa", "clips": 1, "marked": 0}]
    store = Store(d, default_master_key_path(d), database_url=database_url)
    listed = [e["owner_id"] for e in store.audit.chain() if e["event"] == "operator_listed_clips"]
    store.close()
    assert listed == [alice, bob]  # in each owner's access log

    run("device", "revoke", "kitchen")
    [revoked] = json.loads(run("device", "list", "--owner", alice, "--json"))
    assert revoked["revoked_at"]


def test_quarantine_can_be_listed_shown_and_purged(tmp_path: Path) -> None:
    d = tmp_path / "cloud"
    ok(cloud("init", data_dir=d))
    alice = ok(cloud("owner", "add", "--name", "Alice", data_dir=d))
    store = Store(d, default_master_key_path(d))
    unknown = SimDevice("ghost-device", alice)
    Ingestor(store).handle(unknown.topic, unknown.clip())
    Ingestor(store).handle("earmark/v1/clips/kitchen", b"garbage")
    store.close()
    rows = json.loads(ok(cloud("quarantine", "list", "--json", data_dir=d)))
    assert sorted(r["reason"] for r in rows) == ["malformed", "unknown_device"]
    ghost = next(r for r in rows if r["reason"] == "unknown_device")
    shown = json.loads(ok(cloud("quarantine", "show", ghost["quarantine_id"], "--json", data_dir=d)))
    assert shown["header"]["device_id"] == "ghost-device"
    assert json.loads(ok(cloud("quarantine", "purge", "--all", "--json", data_dir=d))) == {"purged": 2}
    assert json.loads(ok(cloud("quarantine", "list", "--json", data_dir=d))) == []
    assert "chain intact" in ok(cloud("audit", "verify", data_dir=d))


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    d = tmp_path / "cloud"
    one_line_error(cloud("owner", "list", data_dir=d), "earmark-cloud init")
    ok(cloud("init", data_dir=d))
    alice = ok(cloud("owner", "add", "--name", "Alice", data_dir=d))
    one_line_error(cloud("device", "add", "--owner", alice, "--public-key", "ed25519:nope", data_dir=d),
                   "public key")
    one_line_error(cloud("device", "add", "--owner", "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", "--public-key",
                         SimDevice("a-b", alice).public_key, data_dir=d), "no owner")
    one_line_error(cloud("device", "revoke", "nobody", data_dir=d), "no device nobody")
    one_line_error(cloud("clips", "list", "--owner", "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", data_dir=d),
                   "no owner")
    (d / "cloud.toml").write_text("[broker]\nurl = \"http://x\"\n")
    one_line_error(cloud("owner", "list", data_dir=d), "broker.url")
    (d / "cloud.toml").unlink()
    (default_master_key_path(d)).chmod(0o644)
    one_line_error(cloud("owner", "list", data_dir=d), "chmod 600")


def test_an_edited_audit_log_fails_verify(tmp_path: Path) -> None:
    import sqlite3

    d = tmp_path / "cloud"
    ok(cloud("init", data_dir=d))
    ok(cloud("owner", "add", "--name", "Alice", data_dir=d))
    db = sqlite3.connect(d / "earmark.db")
    db.execute("UPDATE audit SET event = 'owner_erased' WHERE seq = 2")
    db.commit()
    result = cloud("audit", "verify", data_dir=d)
    assert result.returncode == 1 and "event 2: was edited" in result.stdout


def test_the_example_cloud_config_loads_and_flags_win(tmp_path: Path) -> None:
    s = load_settings(ROOT / "deploy" / "earmark-cloud.example.toml", tmp_path,
                      {"broker.url": "mqtts://broker.example:8883", "broker.ca": "/etc/earmark/ca.pem"})
    assert (s.broker.url, s.broker.tls, s.broker.ca) == ("mqtts://broker.example:8883", True, "/etc/earmark/ca.pem")
    # The master key lives beside the data dir, never inside it: a backup of one lacks the other.
    assert s.master_key_path == tmp_path.parent / f"{tmp_path.name}-secrets" / "master.key"
    assert tmp_path not in s.master_key_path.parents
    with pytest.raises(ConfigError, match=r"broker\.colour is unknown"):
        (tmp_path / "bad.toml").write_text("[broker]\ncolour = 1\n")
        load_settings(tmp_path / "bad.toml", tmp_path)


@pytest.mark.parametrize("text, complaint", [
    ('source = "kafka"\n', r"source: must be one of mqtt, amqp"),
    ('database_url = "mysql://db/earmark"\n', r"database_url: must be postgresql://"),
    ('database_url = "postgresql://svc:hunter2@db/earmark"\n', r"database_url: must not hold a password"),
    ('[amqp]\nurl = "amqp://guest:guest@rabbit/earmark"\n', r"amqp\.url: must not hold a password"),
    ('[amqp]\nqueue = 5\n', r"amqp\.queue: expected str"),
])
def test_scale_out_config_mistakes_are_one_line_errors(tmp_path: Path, text: str, complaint: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ConfigError, match=complaint) as caught:
        load_settings(tmp_path / "bad.toml", tmp_path)
    assert "hunter2" not in str(caught.value) and len(str(caught.value).splitlines()) == 1


def alice_with_a_device(d: Path) -> tuple[str, SimDevice]:
    """A store made from the command line, with one owner and her device."""
    ok(cloud("init", data_dir=d))
    alice = ok(cloud("owner", "add", "--name", "Alice", data_dir=d))
    device = SimDevice("kitchen", alice)
    ok(cloud("device", "add", "--owner", alice, "--public-key", device.public_key, "--device-id", "kitchen",
             data_dir=d))
    return alice, device


def test_export_verify_and_erase_from_the_command_line(tmp_path: Path) -> None:
    d = tmp_path / "cloud"
    alice, device = alice_with_a_device(d)
    store = Store(d, default_master_key_path(d))
    Ingestor(store).handle(device.topic, device.clip())
    store.close()
    result = json.loads(ok(cloud("export", "--owner", alice, "--out", tmp_path / "out", "--json", data_dir=d)))
    assert result["clips"] == 1 and Path(result["archive"]).exists()
    assert "every check holds" in ok(cloud("verify-export", result["archive"], "--owner", alice, data_dir=d))
    bob = ok(cloud("owner", "add", "--name", "Bob", data_dir=d))
    wrong = cloud("verify-export", result["archive"], "--owner", bob, data_dir=d)
    assert wrong.returncode == 1 and "for another owner" in wrong.stdout

    refused = subprocess.run([sys.executable, "-m", "earmark.cloud.cli", "erase", "--owner", alice,
                              "--data-dir", str(d)],
                             capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "key destroyed" in ok(cloud("erase", "--owner", alice, "--yes", data_dir=d))
    one_line_error(cloud("export", "--owner", alice, "--out", tmp_path / "out2", data_dir=d), "was erased")
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


def test_postgres_is_migrated_by_its_admin_and_refused_as_superuser(tmp_path: Path) -> None:
    import uuid
    from urllib.parse import urlsplit

    import psycopg

    from tests.support.pgdb import ADMIN

    name = f"earmark_t_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(ADMIN)
    admin_url = f"postgresql://{parts.username}@{parts.hostname}:{parts.port}/{name}"
    service_url = f"postgresql://earmark_cli_service@{parts.hostname}:{parts.port}/{name}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    d = tmp_path / "cloud"
    try:
        one_line_error(cloud("init", data_dir=d, url=admin_url), "no Earmark schema: run `earmark-cloud db migrate")
        migrated = json.loads(ok(cloud("db", "migrate", "--admin-url", admin_url, "--service-role",
                                       "earmark_cli_service", "--json", data_dir=d)))
        assert (migrated["from_version"], migrated["to_version"]) == (0, PG_SCHEMA_VERSION)
        again = json.loads(ok(cloud("db", "migrate", "--admin-url", admin_url, "--service-role",
                                    "earmark_cli_service", "--json", data_dir=d)))
        assert (again["from_version"], again["to_version"]) == (PG_SCHEMA_VERSION, PG_SCHEMA_VERSION)
        ok(cloud("init", data_dir=d, url=service_url))
        alice = ok(cloud("owner", "add", "--name", "Alice", data_dir=d, url=service_url))
        assert [x["owner_id"] for x in json.loads(ok(cloud("owner", "list", "--json", data_dir=d,
                                                            url=service_url)))] == [alice]
        assert "chain intact" in ok(cloud("audit", "verify", data_dir=d, url=service_url))
        # The admin may migrate, but nothing runs as it: row-level security would not bind it.
        one_line_error(cloud("owner", "list", data_dir=d, url=admin_url), "refusing to run as PostgreSQL role")
        one_line_error(cloud("owner", "list", data_dir=d, url="postgresql://x:secret@localhost/db"),
                       "must not hold a password")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_store_check_reports_and_repairs_rows_without_blobs_and_blobs_without_rows(tmp_path: Path) -> None:
    d = tmp_path / "cloud"
    alice, device = alice_with_a_device(d)
    with Store(d, default_master_key_path(d)) as store:
        ingest = Ingestor(store)
        kept, lost = (ingest.handle(device.topic, device.clip(seed=n)).clip_id for n in range(2))
        (d / store.clips.blob_path(alice, str(lost))).unlink()  # a blob gone (a disk error, a bad restore)
    (d / "blobs" / alice / "stray.bin").write_bytes(b"?")  # and a file nothing accounts for
    found = cloud("store", "check", "--json", data_dir=d)
    assert found.returncode == 1
    assert json.loads(found.stdout) | {"swept": None} == {"rows_without_blobs": 1, "blobs_without_rows": 1,
                                                          "swept": None}
    ok(cloud("store", "check", "--repair", data_dir=d))
    assert json.loads(ok(cloud("store", "check", "--json", data_dir=d)))["rows_without_blobs"] == 0
    assert (d / "set-aside" / "blobs" / alice / "stray.bin").exists()
    exported = json.loads(ok(cloud("export", "--owner", alice, "--out", tmp_path / "out", "--json", data_dir=d)))
    assert exported["clips"] == 1
    with Store(d, default_master_key_path(d)) as store:
        assert [c.clip_id for c in store.clips.of_owner(alice)] == [kept]


def test_every_command_has_a_description_and_an_example() -> None:
    # Issue 13 case 10: --help had neither.
    import argparse

    from earmark.cloud.cli.main import build_parser

    def leaves(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += leaves(child, f"{path} {name}")
        return found or [(path, parser)]

    commands = leaves(build_parser(), "earmark-cloud")
    assert len(commands) >= 30
    for path, parser in commands:
        assert parser.description, path
        assert parser.epilog and "example:" in parser.epilog and "earmark-cloud " in parser.epilog, path


def test_a_closed_pipe_is_quiet_and_errors_are_json_under_json(tmp_path: Path) -> None:
    d = tmp_path / "cloud"
    ok(cloud("init", data_dir=d))
    store = Store(d, default_master_key_path(d))
    for n in range(3000):  # enough rows that `| head -1` closes the pipe while the table is written
        store.registry.add_owner(f"Owner {n}")
    store.close()
    piped = subprocess.run(f"{sys.executable} -m earmark.cloud.cli owner list --data-dir {d} | head -1",
                           shell=True, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert piped.stdout.startswith("owner_id") and piped.stderr == ""  # no BrokenPipe traceback or error line

    failed = cloud("--json", "clips", "list", "--owner", "no-such-owner", data_dir=d)
    assert failed.returncode == 2
    error = json.loads(failed.stderr.strip().splitlines()[-1])
    assert error["exit_code"] == 2 and "no-such-owner" in error["error"] and error["kind"] == "usage"


def test_no_password_is_taken_from_the_command_line(tmp_path: Path) -> None:
    """Issue 24, case 12: a process's arguments are readable by every user of the machine
    (and --admin-url went on into pg_dump's)."""
    d = tmp_path / "cloud"
    for command in (["db", "migrate"], ["backup", "--out", str(tmp_path / "b")], ["restore", "--from", str(d)]):
        for url in ("postgresql://postgres:hunter2@127.0.0.1:5432/earmark",
                    "postgresql://postgres@127.0.0.1:5432/earmark?password=hunter2"):
            result = cloud(*command, "--admin-url", url, data_dir=d)
            one_line_error(result, "must not hold a password")
            assert "hunter2" not in result.stderr
    refused = cloud("ingest", "--password", "hunter2", data_dir=d)
    assert refused.returncode == 2 and "unrecognized arguments: --password" in refused.stderr  # (argparse)
