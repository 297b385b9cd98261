"""The RabbitMQ path's guarantees (issue 33, cases 1 and 2), on the local node as
deploy/setup.sh configures it from cloud/broker/rabbit.py: a device's login does not reach
AMQP at all (so it cannot route a message into another device's receipts with CC/BCC
headers), and a message larger than any envelope is refused at the broker, never queued."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pika.adapters.blocking_connection import BlockingChannel

from earmark.cloud.broker.rabbit import AMQPS_PORT, MAX_MESSAGE_BYTES
from earmark.cloud.ingest.amqp_source import declare
from earmark.wire.topics import clip_topic, receipt_topic
from tests.support.rabbit import AMQP_PORT, MQTT_PORT, RabbitVhost
from tests.support.waiting import wait_until


@pytest.fixture
def rabbit() -> Iterator[RabbitVhost]:
    made = RabbitVhost(["attacker-pi", "victim-pi"])
    try:
        yield made
    finally:
        made.close()


def device_mqtt(rabbit: RabbitVhost, device: str) -> mqtt.Client:
    username, password = rabbit.mqtt_login(device)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-{'0' * 16}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect("127.0.0.1", MQTT_PORT)
    client.loop_start()
    assert connected.wait(10), f"{device} could not log in over MQTT"
    return client


def ingester_channel(rabbit: RabbitVhost) -> tuple[pika.BlockingConnection, BlockingChannel]:
    context = ssl.create_default_context(cafile=str(rabbit.ca))
    context.load_cert_chain(rabbit.ingester_cert, rabbit.ingester_key)
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", AMQPS_PORT, rabbit.vhost, pika.credentials.ExternalCredentials(),
        ssl_options=pika.SSLOptions(context, "127.0.0.1")))
    return connection, connection.channel()


def test_a_device_login_does_not_reach_amqp_so_it_cannot_cc_another_devices_receipts(rabbit: RabbitVhost) -> None:
    """Case 1: logged in over AMQP as attacker-pi, a publish to its own status key with
    `CC: [victim's receipt key]` reached victim-pi's receipt subscription. Now the login is
    refused over AMQP, on the plain port and over TLS, while it still works over MQTT."""
    user, password = rabbit.devices["attacker-pi"]
    victim = device_mqtt(rabbit, "victim-pi")
    got: list[bytes | bytearray] = []
    victim.on_message = lambda _c, _u, message: got.append(message.payload)
    victim.subscribe(receipt_topic("victim-pi"), qos=1)
    context = ssl.create_default_context(cafile=str(rabbit.ca))
    tries = [pika.ConnectionParameters("127.0.0.1", AMQP_PORT, rabbit.vhost, pika.PlainCredentials(user, password)),
             pika.ConnectionParameters("127.0.0.1", AMQPS_PORT, rabbit.vhost, pika.PlainCredentials(user, password),
                                       ssl_options=pika.SSLOptions(context, "127.0.0.1"))]
    forged = b'{"clip_id": "00000000-0000-4000-8000-000000000001", "status": "stored", "reason": ""}'
    for parameters in tries:
        try:
            connection = pika.BlockingConnection(parameters)
        except pika.exceptions.AMQPConnectionError:
            continue  # refused: what must happen
        channel = connection.channel()  # the attack, as the review made it
        for header in ("CC", "BCC"):
            channel.basic_publish("amq.topic", "earmark.v1.status.attacker-pi", forged,
                                  pika.BasicProperties(headers={header: ["earmark.v1.receipts.victim-pi"]}))
        connection.close()
        pytest.fail(f"attacker-pi logged in over AMQP on port {parameters.port}")
    attacker = device_mqtt(rabbit, "attacker-pi")  # its MQTT login still works, and its own topics
    attacker.publish("earmark/v1/status/attacker-pi", b"online", qos=1).wait_for_publish(10)
    attacker.disconnect()
    victim.disconnect()
    assert got == []


def test_a_message_larger_than_an_envelope_is_refused_at_the_broker(rabbit: RabbitVhost) -> None:
    """Case 2: a device login published 2, 60 and 100 MB bodies on its own clip topic and
    all were queued. Now the node refuses any message over MAX_MESSAGE_BYTES, over MQTT and
    over AMQP alike: the queue holds only the clip-sized message sent after the large one."""
    connection, channel = ingester_channel(rabbit)
    declare(channel, "earmark.clips")  # as the first ingester does
    device = device_mqtt(rabbit, "attacker-pi")
    gone = threading.Event()
    device.on_disconnect = lambda *_a: gone.set()
    device.publish(clip_topic("attacker-pi"), b"L" * (2 * 1024 * 1024), qos=1)
    device.disconnect()  # sent after the publish: the node has read all of it when this is done
    assert gone.wait(30)
    device.loop_stop()
    sentinel = device_mqtt(rabbit, "attacker-pi")
    sentinel.publish(clip_topic("attacker-pi"), b"S" * (MAX_MESSAGE_BYTES - 4096), qos=1).wait_for_publish(30)
    sentinel.disconnect()
    wait_until(lambda: rabbit.queue_depth()[0] >= 1, 30, "the clip-sized message to be queued")
    sizes = []
    while (got := channel.basic_get("earmark.clips", auto_ack=True))[0] is not None:
        sizes.append(len(got[2]))
    assert sizes == [MAX_MESSAGE_BYTES - 4096]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="larger than configured max size"):
        channel.basic_publish("amq.topic", "earmark.v1.receipts.victim-pi", b"L" * (2 * 1024 * 1024))
        channel.basic_get("earmark.clips")  # a round trip: the refusal arrives
    connection.close()
