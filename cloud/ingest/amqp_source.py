"""`earmark-cloud ingest --source amqp`: the ingest core fed from a RabbitMQ quorum queue.

Devices still speak MQTT, to RabbitMQ's MQTT plugin, which authenticates each device and
lets it publish only on its own topic (topic permissions; deploy/SCALING.md). The plugin
turns earmark/v1/clips/<device> into routing key earmark.v1.clips.<device> on amq.topic,
which routes it into one durable quorum queue (replicated across the cluster's nodes).
Ingesters consume that queue over AMQP 0-9-1 with manual acks and a prefetch of one batch:
a message is acked only after its batch's durable commit, and one whose consumer dies
unacked goes back to the queue for any other ingester at once (unlike an MQTT shared
subscription, where it waits in the dead ingester's session). Receipts go back through
amq.topic as earmark.v1.receipts.<device>, which the plugin delivers to the device.

Devices' status messages (earmark/v1/status/<device>: online JSON, the will's `offline`)
reach each ingester through a queue of its own, `earmark.status.<client id>` (exclusive,
gone with the connection, acked on arrival), and are recorded as the devices' online state
(store/presence.py). RabbitMQ keeps retained messages for MQTT subscribers only, so a device
shows here from its next status (devices send one a minute). A login without the rights
for that queue (deploy/SCALING.md) still ingests; only the online state stays unknown.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions

from earmark.cloud.broker.rabbit import MAX_MESSAGE_BYTES
from earmark.cloud.ingest.ingestor import Ingestor, Outcome
from earmark.cloud.ingest.metrics import Metrics
from earmark.cloud.ingest.source import (
    BATCH_MAX,
    IngestSummary,
    Pipeline,
    Statuses,
    Vitals,
    count,
)
from earmark.cloud.settings import CloudSettings, url_nodes
from earmark.wire.errors import ConfigError, UsageError

log = logging.getLogger(__name__)
EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes
CLIP_BINDING = "earmark.v1.clips.*"
STATUS_BINDING = "earmark.v1.status.*"
def topic_of(routing_key: str) -> str:
    """The MQTT topic a routing key came from (the plugin maps '/' to '.'; device ids hold
    no dots, so this is exact for every topic Earmark uses)."""
    return routing_key.replace(".", "/")


def receipt_key(device_id: str) -> str:
    return f"earmark.v1.receipts.{device_id}"


def connection_parameters(settings: CloudSettings) -> list[pika.ConnectionParameters]:
    """One set of parameters per node the URL names (amqp://HOST:PORT,HOST:PORT/VHOST), tried
    in that order when a connection is made."""
    a = settings.amqp
    parts = urlsplit(a.url)
    tls = parts.scheme == "amqps"
    context = ssl.create_default_context(cafile=a.ca or None) if tls else None
    credentials: pika.credentials.PlainCredentials | pika.credentials.ExternalCredentials
    if a.cert:  # by certificate: the nodes take no password over AMQP (cloud/broker/rabbit.py)
        if context is None:
            raise ConfigError(f"amqp.cert is set but amqp.url {a.url} is not amqps://: a client certificate needs TLS")
        try:
            context.load_cert_chain(a.cert, a.key or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"amqp.cert {a.cert} / amqp.key {a.key} cannot be loaded: {exc}") from None
        credentials = pika.credentials.ExternalCredentials()
    else:
        credentials = pika.PlainCredentials(a.username, settings.amqp_password())
    virtual_host = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return [pika.ConnectionParameters(
        host=host or "localhost", port=port or (5671 if tls else 5672), virtual_host=virtual_host,
        credentials=credentials, heartbeat=a.heartbeat_s, blocked_connection_timeout=60,
        ssl_options=pika.SSLOptions(context, host) if context else None, connection_attempts=1, socket_timeout=5,
        client_properties={"connection_name": settings.broker.client_id}) for host, port in url_nodes(a.url)]


def declare(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> None:
    """The quorum queue and its binding (idempotent; ops may also declare them beforehand)."""
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue, EXCHANGE, routing_key=CLIP_BINDING)


@dataclass(frozen=True)
class Delivery:
    tag: int
    topic: str
    payload: bytes
    arrived: float


QUEUE_DEPTH_EVERY_S = 15.0


class AmqpIngestService:
    def __init__(self, settings: CloudSettings, ingestor: Ingestor, metrics: Metrics) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.metrics = metrics
        self.summary = IngestSummary()
        self.vitals = Vitals(metrics)
        self.ready = threading.Event()
        self.statuses = Statuses()

    def describe(self) -> str:
        return f"quorum queue {self.settings.amqp.queue} at {self.settings.amqp.url} as {self.settings.amqp.username}"

    def health(self) -> dict[str, str]:
        return self.vitals.health(self.ingestor, "ok" if self.ready.is_set() else "not consuming the queue yet")

    def run(self, stop: threading.Event, retire: bool = False) -> None:
        """Until `stop`. A quorum queue has no members to leave, so there is no retiring."""
        if retire:
            raise UsageError("--retire applies to the MQTT shared subscription; a quorum queue has no members to "
                             "leave")
        delay = 1.0
        while not stop.is_set():
            try:
                self._consume(stop)
                delay = 1.0
            except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError,
                    pika.exceptions.ProbableAccessDeniedError) as exc:
                raise ConfigError(f"RabbitMQ at {self.settings.amqp.url} refused the login "
                                  f"{self.settings.amqp.username!r} ({exc.__class__.__name__}): fix amqp.username, "
                                  "amqp.password_file or its permissions on the vhost") from None
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 403:
                    raise
                raise ConfigError(f"RabbitMQ refused {self.settings.amqp.username!r} access: {exc.reply_text} "
                                  "(grant it configure/write/read on the vhost: deploy/SCALING.md)") from None
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("lost RabbitMQ (%s); unacked messages go back to the queue; "
                            "reconnecting in %.0f s", exc.__class__.__name__, delay)
            finally:
                self.ready.clear()
                self.metrics.connected.set(0)
            if stop.wait(delay):
                break
            delay = min(delay * 2, 30)
        self.summary.flush(force=True)
        log.info("ingester stopped")

    def _consume(self, stop: threading.Event) -> None:
        """One connection's life. Its I/O runs in a thread of its own (pika's BlockingConnection
        reads the socket only when called, so a main thread busy with a batch would receive
        nothing meanwhile: measured, batches of 1.7 clips and 130 clips/s). This thread judges
        batches and hands acks and receipts back to the I/O thread, as pika requires."""
        connection = pika.BlockingConnection(connection_parameters(self.settings))
        arrivals: queue.Queue[Delivery] = queue.Queue()
        done = threading.Event()  # the I/O thread has ended: the connection is gone or closing
        failure: list[BaseException] = []
        try:
            channel = connection.channel()
            declare(channel, self.settings.amqp.queue)
            channel.basic_qos(prefetch_count=2 * BATCH_MAX)  # one batch judged while one commits

            def arrived(_ch: object, method: pika.spec.Basic.Deliver, _props: object, body: bytes) -> None:
                if len(body) > MAX_MESSAGE_BYTES:  # only a node without max_message_size lets one through
                    channel.basic_reject(method.delivery_tag, requeue=False)  # held by nothing, not even a batch
                    log.warning("dropped a message of %d bytes on %s: no clip is over %d; set the nodes' "
                                "max_message_size (deploy/SCALING.md)", len(body), topic_of(method.routing_key)[:80],
                                MAX_MESSAGE_BYTES)
                    return
                arrivals.put(Delivery(method.delivery_tag, topic_of(method.routing_key), body, time.monotonic()))

            channel.basic_consume(self.settings.amqp.queue, arrived)
            self._follow_statuses(connection)
            self.metrics.connected.set(1)
            self.ready.set()
            log.info("consuming quorum queue %s on %s: ready", self.settings.amqp.queue, self.settings.amqp.url)

            def pump() -> None:
                measured = 0.0
                try:
                    while not stop.is_set() and not done.is_set():
                        connection.process_data_events(time_limit=0.2)
                        if time.monotonic() - measured >= QUEUE_DEPTH_EVERY_S:  # on the I/O thread, as pika needs
                            measured = time.monotonic()
                            waiting = channel.queue_declare(self.settings.amqp.queue, passive=True)
                            self.metrics.queue_depth.set(waiting.method.message_count)
                except BaseException as exc:
                    failure.append(exc)
                finally:
                    done.set()

            reader = threading.Thread(target=pump, name="amqp-io", daemon=True)
            reader.start()
            self.vitals.notifier.ready()
            pipeline: Pipeline[list[Delivery]] = Pipeline(
                self.ingestor, stop, lambda batch, outcomes: self._settle(connection, channel, batch, outcomes),
                self.vitals)
            try:
                while not stop.is_set() and not done.is_set():
                    self.vitals.alive()
                    try:
                        batch = [arrivals.get(timeout=0.2)]
                    except queue.Empty:
                        self.statuses.record(self.ingestor)  # nothing is committing now
                        self.summary.flush()
                        continue
                    while len(batch) < BATCH_MAX:
                        try:
                            batch.append(arrivals.get_nowait())
                        except queue.Empty:
                            break
                    pipeline.submit(batch, [(d.topic, d.payload) for d in batch])
                    if arrivals.empty():  # nothing to overlap with: settle now, not after a next batch
                        pipeline.drain()
                        self.statuses.record(self.ingestor)
            finally:
                pipeline.close()
            done.set()
            reader.join()
            if failure:
                raise failure[0]
            connection.process_data_events(time_limit=0)  # the last batch's acks and receipts
            # Deliveries still waiting here were never acked: the broker requeues them on close.
        finally:
            if connection.is_open:
                connection.close()

    def _follow_statuses(self, connection: pika.BlockingConnection) -> None:
        """The devices' status messages into `self.statuses`, on a channel of their own: if
        the login may not have the queue, that channel closes and ingesting goes on."""
        name = f"earmark.status.{self.settings.broker.client_id}"
        try:
            channel = connection.channel()
            channel.queue_declare(name, exclusive=True, auto_delete=True)
            channel.queue_bind(name, EXCHANGE, routing_key=STATUS_BINDING)
            channel.basic_consume(name, lambda _ch, method, _props, body: self.statuses.put(
                topic_of(method.routing_key), body), auto_ack=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            log.warning("RabbitMQ refused the status queue %s (%s): devices' online state stays unknown "
                        "(grant the rights in deploy/SCALING.md)", name, exc.reply_text)

    def _settle(self, connection: pika.BlockingConnection,
                channel: pika.adapters.blocking_connection.BlockingChannel, batch: list[Delivery],
                outcomes: list[Outcome]) -> None:
        """After the batch's durable commit: hand its ack and receipts to the I/O thread."""

        def settle() -> None:  # on the I/O thread
            channel.basic_ack(batch[-1].tag, multiple=True)  # the whole batch, after its durable commit
            for delivery, outcome in zip(batch, outcomes, strict=True):
                count(self.metrics, outcome, delivery.arrived, self.summary)
                receipt = outcome.receipt()
                if receipt is not None and outcome.device_id is not None:
                    channel.basic_publish(EXCHANGE, receipt_key(outcome.device_id), receipt.encode(),
                                          pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))

        # If the connection is gone, the broker redelivers the batch and clip ids de-duplicate it.
        with contextlib.suppress(pika.exceptions.ConnectionWrongStateError):
            connection.add_callback_threadsafe(settle)
