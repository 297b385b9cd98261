"""Bringing the running broker in step with the registry, and knowing that it is.

Logins change in the store first (logins.py); `sync_broker` then rewrites the password and
ACL files whole from the store, asks Mosquitto to reload them, and proves it did: each sync
writes a fresh password for a canary login (`earmark-sync`) and logs in with it. Only a
broker that re-read this sync's files accepts that password, and a reload also makes
Mosquitto re-check every connected client, so a revoked device is disconnected by the same
reload that the canary confirms. The canary, which the ACL lets write devices' status
topics and nothing else, then clears the retained status of every revoked device.

How it reloads: `broker.reload_command` if set (`systemctl reload mosquitto` for the ops
drop-in under Debian's service, with sudo when the CLI runs as another user); otherwise
SIGHUP to the pid in the pid file the generated mosquitto.conf names. Until a sync is
confirmed the store remembers that the broker may be behind (`pending_since`);
`earmark-cloud broker sync` finishes the job, and so does re-running the command that failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from earmark.cloud.broker.logins import (
    INGESTER_USERNAME,
    LOGIN_FILES,
    MONITOR_PASSWORD_FILE,
    MONITOR_USERNAME,
    hash_password,
    new_password,
    render_acl,
    render_passwords,
    revoke_login,
)
from earmark.cloud.store.accounts import Login
from earmark.cloud.store.registry import RESERVED_PREFIX, Device
from earmark.cloud.store.store import Store
from earmark.runtime.durable import write_file
from earmark.runtime.transport import host_port, make_client
from earmark.wire.errors import EarmarkError, TransientError, UsageError
from earmark.wire.topics import marks_topic, status_topic

log = logging.getLogger(__name__)
CANARY = f"{RESERVED_PREFIX}sync"


class BrokerNotConfirmed(EarmarkError):
    """The registry has the change but the broker did not confirm it has. The message says
    why and what completes it; which of the two below it is says whether a retry may do."""


class BrokerNotConfirmedYet(BrokerNotConfirmed, TransientError):
    """The broker was asked and has not confirmed yet: `broker sync` later may do."""


class BrokerCannotBeAsked(BrokerNotConfirmed, UsageError):
    """The broker cannot be asked as set up (the reload command fails, no way to signal it):
    a person must fix that, then `broker sync`."""


@dataclass(frozen=True)
class SyncReport:
    logins: int  # active logins now in the files
    state: str  # "confirmed", "not running" (it reads the files when it starts) or "no broker"

    def describe(self) -> str:
        return {"confirmed": f"broker confirmed: {self.logins} login(s) live",
                "not running": "the broker is not running: it reads the new files when it starts",
                "no broker": "no broker configured (`earmark-cloud broker config`)"}[self.state]


def write_broker_files(store: Store, canary_password: str | None = None) -> int:
    """The password and ACL files, whole, from the store's active logins (plus the canary
    when given). Returns the number of logins written."""
    folder = store.accounts.broker_dir()
    if folder is None:
        return 0
    logins = store.accounts.active()
    extra = [Login(CANARY, "canary", hash_password(canary_password))] if canary_password else []
    for username, (role, name) in LOGIN_FILES.items():
        if not (folder / name).exists():  # a broker folder an older Earmark made: the login is new
            write_file(folder / name, (new_password() + "\n").encode())
        extra.append(Login(username, role, hash_password((folder / name).read_text().strip())))
    for name, text in (("passwords", render_passwords(logins + extra)), ("acl", render_acl(logins + extra))):
        write_file(folder / name, text.encode(), 0o640)
        hand_to_broker(folder / name, folder)
    return len(logins)


def hand_to_broker(path: Path, folder: Path) -> None:
    """Give a file the broker folder's owner and group, so Mosquitto (which runs as its own
    user) can read what this command (root, or an operator in Mosquitto's group) wrote."""
    st = folder.stat()
    with contextlib.suppress(PermissionError):
        os.chown(path, st.st_uid if os.geteuid() == 0 else -1, st.st_gid)


def revoke_device(store: Store, device_id: str, reload_command: str = "") -> tuple[Device, SyncReport]:
    """Revoke the device in the registry, remove its broker login, and bring the running broker
    in step (the reload also disconnects it). Again for a revoked device: only the broker
    sync. BrokerNotConfirmed if the broker did not confirm; the revocation stands."""
    device = store.registry.revoke_device(device_id)
    revoke_login(store, device.device_id)
    return device, sync_broker(store, reload_command)


def sync_broker(store: Store, reload_command: str = "", timeout_s: float = 10.0) -> SyncReport:
    """Make the running broker hold exactly the store's logins, and confirm it. Raises
    BrokerNotConfirmed (leaving `pending_since` set) if it cannot."""
    folder = store.accounts.broker_dir()
    if folder is None:
        return SyncReport(0, "no broker")
    store.accounts.mark_broker_pending()
    canary = new_password()
    count = write_broker_files(store, canary)
    url = store.accounts.broker_url() or ""
    reloaded = _reload(folder, reload_command)
    if not reloaded and not _listening(url):
        store.accounts.mark_broker_synced()
        return SyncReport(count, "not running")
    revoked = store.accounts.revoked_devices()
    accepted, cleared = _accepts(folder, url, canary, timeout_s,
                                 [topic(d) for d in revoked for topic in (status_topic, marks_topic)])
    if not accepted:
        kind = BrokerNotConfirmedYet if reloaded else BrokerCannotBeAsked
        raise kind(
            f"the registry is updated but the broker at {url} did not confirm it reloaded within {timeout_s:.0f} s"
            + ("" if reloaded else " (it answers, but no pid file of the generated config names it: set "
                                   "broker.reload_command, e.g. \"systemctl reload mosquitto\")")
            + "; run `earmark-cloud broker sync` once it is fixed")
    if not cleared:
        raise BrokerNotConfirmedYet(f"the broker at {url} reloaded but did not confirm clearing the retained status "
                                    f"and marks of {len(revoked)} revoked device(s): run `earmark-cloud broker sync`")
    store.accounts.mark_broker_synced()
    log.debug("broker confirmed the reload: %d login(s)", count)
    return SyncReport(count, "confirmed")


def _reload(folder: Path, command: str) -> bool:
    """Ask Mosquitto to re-read its files. True if asked; False if there is no broker to ask."""
    if command:
        try:
            done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerCannotBeAsked(f"broker.reload_command `{command}` could not run ({exc}); the registry is "
                                      "updated: fix it, then `earmark-cloud broker sync`") from None
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise BrokerCannotBeAsked(f"broker.reload_command `{command}` failed (exit {done.returncode}"
                                      f"{': ' + why[-1] if why else ''}); the registry is updated: fix it, then "
                                      "`earmark-cloud broker sync`")
        return True
    for pid_file in broker_pid_files(folder):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue  # not there (or not readable): try the next
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            continue  # a stale pid file
        except PermissionError:
            raise BrokerCannotBeAsked(
                f"cannot signal Mosquitto (pid {pid} from {pid_file}) as this user; set broker.reload_command "
                "(e.g. \"sudo systemctl reload mosquitto\") in the cloud config; the registry is updated: then "
                "run `earmark-cloud broker sync`") from None
        return True
    return False


def broker_pid_files(folder: Path) -> list[Path]:
    """The pid file the generated mosquitto.conf names (as edited). A broker run another way
    (the ops drop-in under Debian's service) is reloaded through broker.reload_command: a
    guessed pid file could belong to another broker on the host."""
    found = []
    with contextlib.suppress(OSError):
        for line in (folder / "mosquitto.conf").read_text().splitlines():
            if match := re.fullmatch(r"\s*pid_file\s+(\S+)\s*", line):
                found.append(Path(match.group(1)))
    return found


def login_client(folder: Path, url: str, username: str, password: str) -> mqtt.Client:
    """A client of the cloud's own (the canary, the marks login) for the broker `broker
    config` made: its CA pinned, and the ingester's certificate where the broker requires one."""
    cert, key = folder / f"{INGESTER_USERNAME}.pem", folder / f"{INGESTER_USERNAME}.key"
    use_cert = cert.exists() and key.exists()  # a broker that requires client certificates
    ca = folder / "ca.pem"
    return make_client(username, url, username, password, str(ca) if ca.exists() else "",
                       str(cert) if use_cert else "", str(key) if use_cert else "")


def _listening(url: str) -> bool:
    try:
        with socket.create_connection(host_port(url), timeout=2):
            return True
    except OSError:
        return False


def _accepts(folder: Path, url: str, password: str, timeout_s: float, clear: list[str]) -> tuple[bool, bool]:
    """Whether the broker lets the canary in with this sync's password, within the time; and,
    on that same connection, whether it took an empty retained message on each topic of
    `clear` (which removes the retained one: a revoked device's status says when it was
    online and what it heard, and goes with its login)."""
    deadline = time.monotonic() + timeout_s
    host, port = host_port(url)
    while time.monotonic() < deadline:
        accepted, cleared = _try_canary(folder, url, password, host, port, clear, timeout_s)
        if accepted:
            return True, cleared
        time.sleep(0.2)
    return False, False


def _try_canary(folder: Path, url: str, password: str, host: str, port: int, clear: list[str],
                timeout_s: float) -> tuple[bool, bool]:
    answers: list[bool] = []
    client = login_client(folder, url, CANARY, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(not reason.is_failure)
    try:
        client.connect(host, port, keepalive=10)
        until = time.monotonic() + 2
        while not answers and time.monotonic() < until:
            client.loop(timeout=0.1)
        if not (answers and answers[0]):
            return False, False
        sent = [client.publish(topic, b"", qos=1, retain=True) for topic in clear]
        until = time.monotonic() + timeout_s
        while not all(info.is_published() for info in sent) and time.monotonic() < until:
            client.loop(timeout=0.1)
        return True, all(info.is_published() for info in sent)
    except OSError:
        return False, False
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()


def broker_queue_depth(store: Store, timeout_s: float = 3.0) -> int | None:
    """How many messages the broker holds ($SYS/broker/store/messages/count, read with the
    monitor login `broker config` made); None if it cannot be asked."""
    from earmark.cloud.broker.logins import QUEUE_DEPTH_TOPIC

    folder, url = store.accounts.broker_dir(), store.accounts.broker_url()
    if folder is None or not url or not (folder / MONITOR_PASSWORD_FILE).exists():
        return None
    password = (folder / MONITOR_PASSWORD_FILE).read_text().strip()
    found: list[int] = []
    ca = folder / "ca.pem"
    client = make_client(MONITOR_USERNAME, url, MONITOR_USERNAME, password, str(ca) if ca.exists() else "")
    client.on_connect = lambda c, _u, _f, reason, _p: None if reason.is_failure else c.subscribe(QUEUE_DEPTH_TOPIC)
    client.on_message = lambda _c, _u, message: found.append(int(message.payload or b"0"))
    try:
        client.connect(*host_port(url), keepalive=10)
        deadline = time.monotonic() + timeout_s
        while not found and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except (OSError, ValueError):
        return None
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    return found[0] if found else None
