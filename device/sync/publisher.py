"""Sends spooled clips to the broker; only a receipt deletes one.

Runs beside the recorder on its own thread (and paho's network thread), so recording never
waits on the network. Clips go out oldest first, QoS 1, with at most `in_flight` awaiting
receipts. A `stored` or `duplicate` receipt deletes the clip from the spool; `rejected`
moves it aside (spool/rejected/, with the reason) and raises the error light.

A clip with no receipt is sent again (the ingester de-duplicates by clip id), but not while
the broker holds it: in one connection, QoS 1 and the persistent session already deliver
it once the ingester is back, and each copy sent again would wait in the broker too (an
ingester down for an hour, with every device resending every 30 s, swelled the broker by
gigabytes). So within one connection a clip is sent again only after a backoff that doubles
from `receipt_timeout_s` to RESEND_MAX_S (a receipt lost, a broker that lost its queue),
and at once after a reconnect; the clips awaiting receipts, overdue or not, never number
more than `in_flight`. A lost receipt, a broker restart or days offline only delay clips,
and a broker whose queue is full (it drops what it cannot queue) only delays them too:
they stay in the spool until their receipt. While connected the
device's status topic holds its health (device/status.py), retained; its MQTT will says
`offline`. Given `on_marks`, it also follows its own household-marks topic (wire/marks.py,
retained: the latest arrives at every subscribe) and hands each well-formed message to it.

The MQTT client comes from `client_factory` (paho's, set up by runtime/transport.py, unless
a test gives its own) and the time from `clock`, so the logic above is tested without a
broker (tests/unit/test_publisher.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from earmark.device.settings import BrokerSettings
from earmark.device.sync.spool import Spool, SpooledClip
from earmark.runtime.transport import FailureLog, connect_async, describe_connect_error, make_client, send_immediately
from earmark.wire.errors import ConfigError
from earmark.wire.marks import MAX_MARKS_BYTES, MarksMessage, MarksMessageError, parse_marks
from earmark.wire.receipt import MAX_RECEIPT_BYTES, Receipt, ReceiptError, parse_receipt
from earmark.wire.topics import clip_topic, marks_topic, receipt_topic, status_topic

log = logging.getLogger(__name__)
SESSION_EXPIRY_S = 30 * 24 * 3600  # receipts wait in the broker for a month offline
RESEND_MAX_S = 1800.0  # within one connection, a clip with no receipt is sent again at least this often
CLIENT_TAG_HEX = 16  # the client id's tag: 64 bits no other login can guess


def client_id_for(device_id: str, password: str) -> str:
    """The device's MQTT client id: its id and, with a login, a tag that only the holder of
    its password can compute. RabbitMQ's MQTT plugin registers a client id (dropping whoever
    held it) before it checks the login's permissions, so a client id another login can name
    is one it can knock offline. (Mosquitto makes the login the client id: the tag is unused.)"""
    if not password:
        return device_id
    tag = hmac.new(password.encode(), b"earmark mqtt client id\0" + device_id.encode(), hashlib.sha256)
    return f"{device_id}-{tag.hexdigest()[:CLIENT_TAG_HEX]}"


def paho_client(settings: BrokerSettings, device_id: str) -> mqtt.Client:
    """The device's real MQTT client: TLS, its login, MQTT 5 or 3.1.1 (runtime/transport.py)."""
    password = _read_password(settings.password_file) if settings.username else ""
    return make_client(client_id_for(device_id, password), settings.url, settings.username, password, settings.ca,
                       settings.client_cert, settings.client_key, mqtt_version=settings.mqtt_version)


# The largest packet the device takes from the broker (MQTT 5 tells it so at CONNECT, and the
# broker drops anything larger): the household's marks (wire/marks.py, the larger of the two
# messages it reads) with its topic and framing. Nothing larger reaches the Pi's memory whole.
MAX_INBOUND_PACKET = max(MAX_RECEIPT_BYTES, MAX_MARKS_BYTES) + 512


class Publisher:
    def __init__(self, settings: BrokerSettings, device_id: str, spool: Spool,
                 on_receipt: Callable[[Receipt], None] = lambda receipt: None,
                 status: Callable[[], dict[str, Any]] = lambda: {"state": "online"},
                 status_interval_s: float = 60.0,
                 client_factory: Callable[[BrokerSettings, str], Any] = paho_client,
                 clock: Callable[[], float] = time.monotonic,
                 on_marks: Callable[[MarksMessage], None] | None = None) -> None:
        self.settings = settings
        self.device_id = device_id
        self.spool = spool
        self.on_receipt = on_receipt  # after the spool has acted on it; runs on paho's thread
        self.on_marks = on_marks  # the household's marks (if given: subscribed); runs on paho's thread
        self.status = status
        self._status_interval_s = status_interval_s
        self._status_due = threading.Event()
        self._status_at = 0.0
        self.connected = threading.Event()
        self.sent = 0
        self.rejected = 0
        self._pending: dict[str, _Sent] = {}  # clip id -> when, on which connection, how often it was sent
        self._connection = 0  # counts connections: a clip sent on an older one is sent again at once
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.failures = FailureLog(log)
        self._clock = clock
        self.client = self._make_client(client_factory)

    def _make_client(self, factory: Callable[[BrokerSettings, str], Any]) -> Any:
        client = factory(self.settings, self.device_id)
        client.will_set(status_topic(self.device_id), b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = lambda _c, _u: self.failures.failed(
            describe_connect_error(getattr(client, "last_connect_error", None), self.settings.url)
            + "; clips wait in the spool", logging.WARNING)
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        connect_async(self.client, self.settings.url, self.settings.keepalive_s, SESSION_EXPIRY_S,
                      max_packet_size=MAX_INBOUND_PACKET)
        self._thread.start()

    def notify(self) -> None:
        """A clip was spooled: look at the spool now rather than at the next tick."""
        self._wake.set()

    def notify_status(self) -> None:
        """Something the status shows changed: publish it now rather than at the next minute."""
        self._status_due.set()
        self._wake.set()

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.spool.clips():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.connected.is_set():
            self.client.publish(status_topic(self.device_id), b"offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.failures.failed(f"the broker at {self.settings.url} refused the connection: {reason}")
            return
        self.failures.recovered("connected to the broker")
        send_immediately(client)
        client.subscribe(receipt_topic(self.device_id), qos=1)
        if self.on_marks is not None:  # retained: the latest comes at every subscribe
            client.subscribe(marks_topic(self.device_id), qos=1)
        with self._lock:
            self._connection += 1
        self.connected.set()
        self._status_due.set()
        log.info("connected to %s (session %s)", self.settings.url, "resumed" if flags.session_present else "new")
        self._wake.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connected.is_set() and not self._stop.is_set():
            log.warning("disconnected from the broker (%s); clips wait in the spool", reason)
        self.connected.clear()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        # Only the device's own receipt and marks topics are subscribed, but a broker may
        # deliver more (a RabbitMQ that routes a message's CC/BCC keys without checking them):
        # act on nothing but a receipt-sized message on the one, a marks message on the other.
        if message.topic == marks_topic(self.device_id) and self.on_marks is not None:
            self._marks(bytes(message.payload))
            return
        if message.topic != receipt_topic(self.device_id) or len(message.payload) > MAX_RECEIPT_BYTES:
            log.warning("ignoring a message of %d bytes on %r: only receipts on %s are acted on",
                        len(message.payload), message.topic[:80], receipt_topic(self.device_id))
            return
        try:
            receipt = parse_receipt(bytes(message.payload))
        except ReceiptError as exc:
            log.warning("ignoring a malformed receipt: %s", exc)
            return
        clip = self._spooled(receipt.clip_id)
        with self._lock:
            self._pending.pop(receipt.clip_id, None)
        if clip is None:
            return  # an answer to a resend of a clip already done with
        if receipt.status in ("stored", "duplicate"):
            self.spool.remove(clip)
            log.info("clip %s %s by the cloud; removed from the spool", receipt.clip_id, receipt.status)
        else:
            self.rejected += 1  # counted before the clip leaves the spool: wait_drained() may return at once
            self.spool.reject(clip, receipt.reason)
            log.error("clip %s was rejected by the cloud (%s); kept in %s", receipt.clip_id, receipt.reason,
                      self.spool.rejected_dir)
        self.on_receipt(receipt)
        self._wake.set()

    def _marks(self, payload: bytes) -> None:
        if not payload:
            return  # cleared (the device was revoked): nothing to follow
        try:
            marks = parse_marks(payload)
        except MarksMessageError as exc:
            log.warning("ignoring a malformed marks message: %s; nothing learnt", exc)
            return
        assert self.on_marks is not None
        self.on_marks(marks)

    def _spooled(self, clip_id: str) -> SpooledClip | None:
        return next((c for c in self.spool.clips() if c.clip_id == clip_id), None)

    # -- publishing thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self.connected.is_set():
                self._publish_status()
                self.publish_due()

    def _publish_status(self) -> None:
        now = self._clock()
        if not self._status_due.is_set() and now - self._status_at < self._status_interval_s:
            return
        self._status_due.clear()
        self._status_at = now
        payload = json.dumps(self.status(), sort_keys=True, separators=(",", ":")).encode()
        self.client.publish(status_topic(self.device_id), payload, qos=1, retain=True)

    def publish_due(self) -> None:
        """One pass over the spool, oldest first: publish what has not been sent while fewer
        than `in_flight` await their receipts, and send again what is due (see the module
        docstring: on a new connection at once, within one after a doubling backoff)."""
        now = self._clock()
        spooled = self.spool.clips()  # oldest first
        with self._lock:  # a clip that left the spool (its receipt came) no longer takes room in the window
            kept = {c.clip_id for c in spooled}
            self._pending = {k: v for k, v in self._pending.items() if k in kept}
        for clip in spooled:
            with self._lock:
                last = self._pending.get(clip.clip_id)
                waiting = len(self._pending)
                connection = self._connection
            if last is not None and not last.due(now, connection, self.settings.receipt_timeout_s):
                continue  # sent, and the broker holds it: its receipt comes when the ingester does
            if (last is None and waiting >= self.settings.in_flight) or not self.connected.is_set():
                return
            try:
                payload = clip.read()
            except FileNotFoundError:
                continue  # its receipt arrived meanwhile
            info = self.client.publish(clip_topic(self.device_id), payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all; the next connect retries
            sends = 1 if last is None or last.connection != connection else last.sends + 1
            with self._lock:
                self._pending[clip.clip_id] = _Sent(now, connection, sends)
            self.sent += 1
            if last is not None:
                log.info("clip %s had no receipt %s; sent again", clip.clip_id,
                         "after a reconnect" if sends == 1 else f"after {now - last.at:.0f} s")


@dataclass(frozen=True)
class _Sent:
    at: float  # when it was last published
    connection: int  # on which connection
    sends: int  # how often on that connection

    def due(self, now: float, connection: int, timeout: float) -> bool:
        """Send it again? At once on a newer connection; on the same one after
        `timeout` * 2^(sends - 1), at most RESEND_MAX_S."""
        if connection != self.connection:
            return True
        return bool(now - self.at >= min(timeout * 2.0 ** (self.sends - 1), RESEND_MAX_S))


def _read_password(path: str) -> str:
    if not path:
        raise ConfigError("broker.username is set but broker.password_file is not: run `earmark-device provision`")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"broker.password_file {path}: {exc.strerror}") from None
