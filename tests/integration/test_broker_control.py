"""Login changes reach the running broker and the CLI says so only when the broker
confirmed it (issue 13 case 1), against a real Mosquitto run from the generated config."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from earmark.cloud.store.store import Store
from tests.support.cloudkit import reopen
from tests.support.securecloud import Client, SecureCloud
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[SecureCloud]:
    made = SecureCloud(tmp_path)
    made.start_broker()
    yield made
    made.close()


def cli(cloud: SecureCloud, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "earmark.cloud.cli", *args, "--data-dir", str(cloud.data_dir)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def connected_device(cloud: SecureCloud, device_id: str, owner_id: str) -> Client:
    _, password = cloud.add_device(owner_id, device_id)
    device = Client(cloud, device_id, password)
    assert device.wait()
    return device


def set_reload_command(cloud: SecureCloud, command: str) -> None:
    (cloud.data_dir / "cloud.toml").write_text(f"[broker]\nreload_command = {json.dumps(command)}\n" if command else "")


def pending_since(cloud: SecureCloud) -> str | None:
    fresh: Store = reopen(cloud.store)
    try:
        return fresh.accounts.broker_pending_since()
    finally:
        fresh.close()


def owner(cloud: SecureCloud) -> str:
    return cloud.store.registry.add_owner("Alice").owner_id


def test_revoke_reaches_a_broker_whose_pid_file_is_elsewhere_and_says_it_was_confirmed(cloud: SecureCloud) -> None:
    # Issue 13 case 1: the CLI signalled <broker_dir>/mosquitto.pid while the shipped config
    # wrote its pid elsewhere; `device revoke` exited 0 and the device stayed connected.
    cloud.stop_broker()
    config = cloud.setup.config
    moved = cloud.folder / "run" / "mosquitto.pid"
    moved.parent.mkdir()
    config.write_text(config.read_text().replace(f"pid_file {config.parent / 'mosquitto.pid'}", f"pid_file {moved}"))
    cloud.start_broker()
    device = connected_device(cloud, "kitchen-pi", owner(cloud))
    result = cli(cloud, "device", "revoke", "kitchen-pi")
    assert result.returncode == 0, result.stderr
    assert "broker confirmed" in result.stdout
    wait_until(device.done.is_set, 10, "the broker to drop the revoked device")
    again = Client(cloud, "kitchen-pi", "whatever it had")
    assert not again.wait() and again.refused is not None
    device.close()
    again.close()


def test_a_broker_that_cannot_be_reloaded_leaves_the_change_pending_until_broker_sync(cloud: SecureCloud) -> None:
    # When the CLI cannot make the broker reload (here a reload command that fails; for real,
    # another user's Mosquitto), it must not claim success, and a later `broker sync` finishes.
    device = connected_device(cloud, "hall-pi", owner(cloud))
    set_reload_command(cloud, "false")
    result = cli(cloud, "device", "revoke", "hall-pi")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "reload_command `false` failed" in line and "earmark-cloud broker sync" in line
    assert pending_since(cloud) is not None
    assert device.connected.is_set() and not device.done.is_set()  # honestly: still connected

    set_reload_command(cloud, "")
    synced = cli(cloud, "broker", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "broker confirmed" in synced.stdout and "behind the registry since" in synced.stdout
    wait_until(device.done.is_set, 10, "the broker to drop the revoked device")
    assert pending_since(cloud) is None
    device.close()


def test_an_erase_cut_short_by_the_broker_is_complete_in_the_store_and_a_rerun_finishes_it(
        cloud: SecureCloud) -> None:
    # Issue 13 case 1: erase exited half done (a device still in the broker's files, no
    # owner_erased event) and a re-run said "already erased".
    alice = owner(cloud)
    one = connected_device(cloud, "den-pi", alice)
    two = connected_device(cloud, "loft-pi", alice)
    set_reload_command(cloud, "false")
    first = cli(cloud, "erase", "--owner", alice, "--yes")
    assert first.returncode == 2 and "earmark-cloud broker sync" in first.stderr
    fresh = reopen(cloud.store)
    try:
        assert fresh.audit.has_event("owner_erased", alice)
        assert all(d.revoked_at for d in fresh.registry.devices(alice))
        assert {a.username for a in fresh.accounts.active()}.isdisjoint({"den-pi", "loft-pi"})
    finally:
        fresh.close()
    acl = (cloud.setup.config.parent / "acl").read_text()
    assert "den-pi" not in acl and "loft-pi" not in acl  # the files are right; the broker has not re-read them

    set_reload_command(cloud, "")
    second = cli(cloud, "erase", "--owner", alice, "--yes")
    assert second.returncode == 0, second.stderr
    assert "completing an earlier erasure" in second.stdout and "broker confirmed" in second.stdout
    wait_until(lambda: one.done.is_set() and two.done.is_set(), 10, "both devices to be dropped")
    fresh = reopen(cloud.store)
    try:
        events = [e for e in fresh.audit.chain() if e["event"] == "owner_erased"]
        assert len(events) == 1  # the re-run completed the erasure; it did not record a second one
    finally:
        fresh.close()
    one.close()
    two.close()


def test_a_broker_that_is_not_running_is_not_an_error(tmp_path: Path) -> None:
    cloud = SecureCloud(tmp_path)  # never started: it reads the files when it starts
    try:
        result = cli(cloud, "broker", "sync")
        assert result.returncode == 0, result.stderr
        assert "not running" in result.stdout
        assert pending_since(cloud) is None
    finally:
        cloud.close()


def test_ingest_needs_no_flags_after_broker_config(cloud: SecureCloud) -> None:
    # Issue 13 case 4: without --broker, --ca, --username and --password-file, `ingest`
    # silently connected to a plain local broker (this machine has one on 1883).
    import signal

    from tests.support.securecloud import wait_until_logged

    log = cloud.folder / "ingest-noflags.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "earmark.cloud.cli", "ingest", "--data-dir",
                                 str(cloud.data_dir), "--metrics-port", "0"], cwd=ROOT, stderr=out,
                                stdout=subprocess.DEVNULL)
    try:
        wait_until_logged(proc, log, "subscribed to")
        assert f"ingesting from {cloud.setup.url} as earmark-ingester" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_an_erased_owners_devices_leave_no_retained_status_on_the_broker(cloud: SecureCloud) -> None:
    """Issue 24 case 7: the device's retained status (when it was online, what it heard)
    stayed on the broker after its owner was erased."""
    alice, bob = owner(cloud), cloud.store.registry.add_owner("Bob").owner_id
    devices = {name: connected_device(cloud, name, who) for name, who in (("den-pi", alice), ("bob-pi", bob))}
    for name, device in devices.items():
        device.client.publish(f"earmark/v1/status/{name}", b'{"online": true}', qos=1, retain=True).wait_for_publish(5)

    erased = cli(cloud, "erase", "--owner", alice, "--yes")
    assert erased.returncode == 0, erased.stderr

    login, password_file = cloud.ingester_login("reader")  # an ingester may read every status
    reader = Client(cloud, login, password_file.read_text().strip())
    assert reader.wait()
    reader.subscribe("earmark/v1/status/den-pi")  # a retained message comes right after its SUBACK,
    reader.subscribe("earmark/v1/status/bob-pi")  # so Bob's arriving means Alice's would have come
    wait_until(lambda: reader.messages, 10, "Bob's retained status")
    assert reader.messages == [("earmark/v1/status/bob-pi", b'{"online": true}')]
    for client in (*devices.values(), reader):
        client.close()


def test_a_broker_folder_from_before_the_marks_gets_their_login_at_the_next_sync(cloud: SecureCloud) -> None:
    """A deployment upgraded from an Earmark without household marks has no marks login:
    `broker sync` makes its password (0600) and writes its ACL lines (write marks, nothing
    else) and each device's (read its own marks)."""
    folder = cloud.setup.config.parent
    (folder / "marks.password").unlink()
    cloud.add_device(cloud.store.registry.add_owner("Alexis").owner_id, "den-pi")
    assert oct((folder / "marks.password").stat().st_mode & 0o777) == "0o600"
    acl = (folder / "acl").read_text()
    blocks = {block.splitlines()[0]: block.splitlines()[1:] for block in acl.split("\n\n")[1:] if block.strip()}
    assert blocks["user earmark-marks"] == ["topic write earmark/v1/marks/+"]  # and nothing else
    assert "topic read earmark/v1/marks/den-pi" in acl and "topic write earmark/v1/marks/den-pi" not in acl
