"""Telling a device the household's marks ("not meant for me", set on the owner's portal):
the message of wire/marks.py, retained on earmark/v1/marks/<device id>, published by the
cloud's marks login (`earmark-marks`: the ACL lets it write marks topics and nothing else;
each device reads only its own). Retained, because the message is the whole state: a device
offline for a week gets the latest when it subscribes again, and no queue has to survive a
broker restart for it (a retained message does, with the broker's persistence; and
`broker sync` sends every device's again).

A device the broker could not be asked for is remembered (accounts.note_marks), and sent
again by the next send, by the portal's sender every RETRY_S while any wait, and by
`earmark-cloud broker sync`.

The portal sends through one `MarksSender` thread: the page answers at once, and the sends
happen in order, each message made from the store when it goes, so the last one retained
is always the latest state (two requests each sending their own would race, and an older
state could land last).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from earmark.cloud.broker.control import login_client
from earmark.cloud.broker.logins import MARKS_PASSWORD_FILE, MARKS_USERNAME
from earmark.cloud.store.store import Store
from earmark.runtime.transport import host_port
from earmark.wire.errors import EarmarkError
from earmark.wire.marks import DELETED_DAYS, MarksMessage
from earmark.wire.timestamps import format_utc
from earmark.wire.topics import marks_topic

log = logging.getLogger(__name__)
RETRY_S = 30.0  # the portal's sender tries the devices still waiting this often


def marks_message(store: Store, device_id: str) -> MarksMessage | None:
    """What the device is to know: its recordings marked not meant, and those deleted lately.
    None for a device that is not (or no longer) a live one: a revoked device's retained
    marks were cleared with its login (broker/control.py) and are not written again."""
    device = store.registry.device(device_id)
    if device is None or device.revoked_at or not device.owner_id:
        return None
    since = format_utc(datetime.now(UTC) - timedelta(days=DELETED_DAYS))
    marked, deleted = store.clips.for_device(device.owner_id, device_id, since)
    return MarksMessage(tuple(marked), tuple(deleted))


def send_marks(store: Store, device_ids: list[str], timeout_s: float = 5.0) -> list[str]:
    """Publish each device's marks (and those of every device still waiting for theirs).
    Returns the devices the broker did not take them for; they stay pending. With no broker
    configured there is nobody to tell: nothing is pending."""
    folder, url = store.accounts.broker_dir(), store.accounts.broker_url()
    wanted = list(dict.fromkeys([*device_ids, *store.accounts.marks_pending()]))
    if folder is None or not url or not wanted:
        return []
    found = {d: marks_message(store, d) for d in wanted}
    messages = {d: message.encode() for d, message in found.items() if message is not None}
    sent = _publish(folder, url, messages, timeout_s) if messages else set()
    unsent = [d for d in messages if d not in sent]
    store.accounts.note_marks([d for d in wanted if d not in unsent], unsent)
    if unsent:
        log.warning("the broker at %s did not take the household's marks for %d device(s); they are sent again by "
                    "the next mark and by `earmark-cloud broker sync`", url, len(unsent))
    return unsent


def _publish(folder: Path, url: str, messages: dict[str, bytes], timeout_s: float) -> set[str]:
    """Publish retained at QoS 1; the devices whose PUBACK came within the time."""
    password_file = folder / MARKS_PASSWORD_FILE
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        log.warning("cannot read the marks login's password (%s): run `earmark-cloud broker sync`, which makes it",
                    exc.strerror)
        return set()
    client = login_client(folder, url, MARKS_USERNAME, password)
    connected: list[bool] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.append(not reason.is_failure)
    deadline = time.monotonic() + timeout_s
    try:
        client.connect(*host_port(url), keepalive=10)
        while not connected and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        if not (connected and connected[0]):
            return set()
        sent = {device: client.publish(marks_topic(device), body, qos=1, retain=True)
                for device, body in messages.items()}
        while not all(info.is_published() for info in sent.values()) and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        return {device for device, info in sent.items() if info.is_published()}
    except OSError:
        return set()
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()


class MarksSender:
    """The portal's one sender of marks: `tell` returns at once; a thread sends, in order,
    coalescing the devices asked for meanwhile, and retries the pending ones every RETRY_S."""

    def __init__(self, store: Store, retry_s: float = RETRY_S) -> None:
        self.store, self.retry_s = store, retry_s
        self._wanted: set[str] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def tell(self, device_ids: list[str]) -> None:
        with self._changed:
            self._wanted.update(device_ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="marks-sender", daemon=True)
                self._thread.start()
            self._changed.notify()

    def close(self) -> None:
        """Stop once what was asked for is sent (or, if the broker does not take it, noted as
        pending in the store)."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._wanted and not self._closed:
                    self._changed.wait(self.retry_s)
                if self._closed and not self._wanted:
                    return
                wanted, self._wanted = sorted(self._wanted), set()
            try:
                send_marks(self.store, wanted)  # with every device still pending
            except EarmarkError as exc:  # the store could not be read: the devices stay wanted
                log.warning("could not send the household's marks (%s); trying again in %.0f s", exc, self.retry_s)
                with self._changed:
                    if self._closed:
                        return
                    self._wanted.update(wanted)
                    self._changed.wait(self.retry_s)
