"""Security of the deployed pipeline, against a real Mosquitto running the generated
config (TLS, per-device logins, ACL) and the ingester logging in over TLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from earmark.wire.envelope import decode_envelope
from earmark.wire.receipt import parse_receipt
from tests.support.cloudkit import SimDevice, new_clip_id
from tests.support.securecloud import Client, SecureCloud
from tests.support.waiting import wait_until


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[SecureCloud]:
    c = SecureCloud(tmp_path)
    c.start_broker()
    c.start_ingester()
    yield c
    c.close()


@pytest.fixture
def pair(cloud: SecureCloud) -> tuple[tuple[SimDevice, str], tuple[SimDevice, str]]:
    alice = cloud.store.registry.add_owner("Alice").owner_id
    bob = cloud.store.registry.add_owner("Bob").owner_id
    return cloud.add_device(alice, "alice-pi"), cloud.add_device(bob, "bob-pi")


def connect(cloud: SecureCloud, username: str | None, password: str | None) -> Client:
    client = Client(cloud, username, password)
    assert client.wait(), f"{username} could not connect: {client.refused}"
    return client


def send_and_hear(client: Client, device: SimDevice, envelope: bytes, topic: str | None = None,
                  timeout: float = 15) -> str | None:
    """Publish a clip; the status of the receipt this client hears for it (None if none)."""
    clip_id = decode_envelope(envelope).header.clip_id
    client.client.publish(topic or device.topic, envelope, qos=1).wait_for_publish(5)

    def heard() -> str | None:
        statuses = [r.status for r in (parse_receipt(p) for _, p in list(client.messages)) if r.clip_id == clip_id]
        return statuses[0] if statuses else None

    try:
        return wait_until(heard, timeout, f"a receipt for {clip_id}")
    except AssertionError:
        return None


def listening(cloud: SecureCloud, device: SimDevice, password: str) -> Client:
    client = connect(cloud, device.device_id, password)
    client.subscribe(f"earmark/v1/receipts/{device.device_id}")
    return client


def test_a_device_cannot_publish_on_another_devices_topic(cloud: SecureCloud, pair: tuple) -> None:
    (a, a_pw), (b, _) = pair
    client = listening(cloud, a, a_pw)
    assert send_and_hear(client, a, a.clip(seed=1)) == "stored"  # the path works
    forged = SimDevice(b.device_id, b.owner_id, a.key).clip(seed=2)  # claims to be Bob's device
    assert send_and_hear(client, a, forged, topic=b.topic, timeout=3) is None
    assert send_and_hear(client, a, a.clip(seed=3)) == "stored"  # a sentinel sent after the forgery
    assert cloud.clips(b.owner_id) == [] and len(cloud.clips(a.owner_id)) == 2
    assert cloud.quarantine_reasons() == [], "the broker must stop it before the ingester sees it"
    client.close()


def test_a_device_cannot_read_another_devices_receipts(cloud: SecureCloud, pair: tuple) -> None:
    (a, a_pw), (b, b_pw) = pair
    snoop = connect(cloud, a.device_id, a_pw)
    snoop.client.subscribe(f"earmark/v1/receipts/{b.device_id}", qos=1)
    snoop.client.subscribe("earmark/v1/receipts/#", qos=1)
    snoop.client.subscribe("earmark/v1/clips/#", qos=1)
    snoop.client.subscribe(f"earmark/v1/receipts/{a.device_id}", qos=1)  # its own: the sentinel's way back
    bob = listening(cloud, b, b_pw)
    assert send_and_hear(bob, b, b.clip(seed=3)) == "stored"
    # A sentinel: the snoop's own clip, receipted after Bob's. Had it been able to read Bob's
    # receipt (or clip), that would have reached it first.
    assert send_and_hear(snoop, a, a.clip(seed=4)) == "stored"
    # (Its own receipt may come once per matching subscription: its own topic and receipts/#.)
    assert {topic for topic, _ in snoop.messages} == {f"earmark/v1/receipts/{a.device_id}"}
    snoop.close()
    bob.close()


def test_anonymous_and_wrong_password_clients_are_refused(cloud: SecureCloud, pair: tuple) -> None:
    (a, _), _ = pair
    anonymous = Client(cloud, None, None)
    assert not anonymous.wait() and anonymous.refused is not None
    wrong = Client(cloud, a.device_id, "not-the-password")
    assert not wrong.wait() and wrong.refused is not None
    ingester_name = Client(cloud, "earmark-ingester", "guess")
    assert not ingester_name.wait()
    for client in (anonymous, wrong, ingester_name):
        client.close()


def test_an_envelope_naming_another_owner_is_quarantined(cloud: SecureCloud, pair: tuple) -> None:
    (a, a_pw), (b, b_pw) = pair
    bob = listening(cloud, b, b_pw)
    assert send_and_hear(bob, b, b.clip(seed=4)) == "stored"
    bobs_before = sorted(cloud.clips(b.owner_id))
    client = listening(cloud, a, a_pw)
    claim = a.resign(a.clip(seed=5), owner_id=b.owner_id, clip_id=new_clip_id())
    assert send_and_hear(client, a, claim) == "rejected"
    assert sorted(cloud.clips(b.owner_id)) == bobs_before
    assert cloud.clips(a.owner_id) == []
    assert cloud.quarantine_reasons() == ["owner_mismatch"]
    client.close()
    bob.close()


def test_a_forged_signature_is_quarantined(cloud: SecureCloud, pair: tuple) -> None:
    (a, a_pw), _ = pair
    client = listening(cloud, a, a_pw)
    forged = a.resign(a.clip(seed=6), key=Ed25519PrivateKey.generate())
    assert send_and_hear(client, a, forged) == "rejected"
    assert cloud.clips(a.owner_id) == [] and cloud.quarantine_reasons() == ["bad_signature"]
    client.close()


def test_a_revoked_device_is_refused_by_the_broker_and_the_ingester(cloud: SecureCloud, pair: tuple) -> None:
    (a, a_pw), _ = pair
    client = listening(cloud, a, a_pw)
    assert send_and_hear(client, a, a.clip(seed=7)) == "stored"
    cloud.revoke(a.device_id)  # rewrites the password file and ACL, and SIGHUPs mosquitto
    assert client.done.wait(5), "the revoked device's open connection was not cut off"
    again = Client(cloud, a.device_id, a_pw)
    assert not again.wait(), "the broker still lets a revoked device log in"
    assert len(cloud.clips(a.owner_id)) == 1
    # Had a message slipped through, the ingester refuses the device itself:
    from earmark.cloud.ingest.ingestor import Ingestor

    assert Ingestor(cloud.store).handle(a.topic, a.clip(seed=9)).reason == "revoked_device"
    client.close()
    again.close()


DEVICE_PROCESS = """
import sys, time
from pathlib import Path
from earmark.device.sync.publisher import Publisher
from earmark.device.settings import BrokerSettings
from earmark.device.sync.spool import Spool
url, device_id, password_file, ca, spool = sys.argv[1:6]
publisher = Publisher(BrokerSettings(url=url, username=device_id, password_file=password_file, ca=ca),
                      device_id, Spool(Path(spool), 10**8))
publisher.start()
publisher.connected.wait(10)
print("connected", flush=True)
time.sleep(600)
"""


def test_device_presence_is_retained_online_and_the_will_says_offline(cloud: SecureCloud, pair: tuple,
                                                                      tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    (a, a_pw), _ = pair
    (tmp_path / "pw").write_text(a_pw)
    device = subprocess.Popen([sys.executable, "-c", DEVICE_PROCESS, cloud.setup.url, a.device_id,
                               str(tmp_path / "pw"), str(cloud.setup.ca), str(tmp_path / "spool")],
                              cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert device.stdout is not None and device.stdout.readline().strip() == "connected"
        username, password_file = cloud.ingester_login("watcher")  # a login, and so a session, of its own
        watcher = Client(cloud, username, password_file.read_text().strip())
        assert watcher.wait()
        watcher.client.subscribe("earmark/v1/status/+", qos=1)

        def last_status() -> bytes | None:
            statuses = [p for t, p in watcher.messages if t == f"earmark/v1/status/{a.device_id}"]
            return statuses[-1] if statuses else None

        def state() -> str | None:
            status = last_status()
            return None if status is None else status.decode() if status == b"offline" else json.loads(status)["state"]

        wait_until(lambda: state() == "online", 5, "the retained online status")  # came after the device
        device.send_signal(signal.SIGKILL)  # the device loses power: no goodbye, the broker sends its will
        wait_until(lambda: state() == "offline", 10, "the will's offline status")
        watcher.close()
    finally:
        device.kill()
        device.wait()


def test_client_certificates_can_be_required_on_top_of_logins(tmp_path: Path) -> None:
    from earmark.cloud.broker.certs import issue

    cloud = SecureCloud(tmp_path, require_client_certs=True)
    cloud.start_broker()
    cloud.start_ingester()
    try:
        owner = cloud.store.registry.add_owner("Eve").owner_id
        device, password = cloud.add_device(owner, "cert-pi")
        cert = issue(cloud.data_dir / "ca", device.device_id, tmp_path / "device-certs", server=False)
        without = Client(cloud, device.device_id, password)
        assert not without.wait(5), "a device without a client certificate got in"
        with_cert = Client(cloud, device.device_id, password, cert=cert)
        assert with_cert.wait(), with_cert.refused
        with_cert.subscribe(f"earmark/v1/receipts/{device.device_id}")
        assert send_and_hear(with_cert, device, device.clip(seed=1)) == "stored"  # the ingester has its cert too
        wrong_password = Client(cloud, device.device_id, "nope", client_id="cert-pi-2", cert=cert)
        assert not wrong_password.wait(5), "a certificate alone must not be enough"
        for client in (without, with_cert, wrong_password):
            client.close()
    finally:
        cloud.close()


def test_no_login_can_take_over_another_clients_session_by_its_client_id(cloud: SecureCloud, pair: tuple) -> None:
    (a, a_pw), (b, b_pw) = pair
    bob = listening(cloud, b, b_pw)
    assert send_and_hear(bob, b, b.clip(seed=20)) == "stored"
    ingester_log = max(cloud.folder.glob("ingest-main-*.log"), key=lambda p: p.stat().st_mtime)
    before = ingester_log.read_text().count("disconnected from the broker")
    # Alice's device connects claiming the ingester's client id, and then Bob's.
    impostors = [Client(cloud, a.device_id, a_pw, client_id="earmark-ingester"),
                 Client(cloud, a.device_id, a_pw, client_id=b.device_id)]
    assert all(impostor.wait() for impostor in impostors)
    # A sentinel through the ingester, to Bob's own session: both still stand.
    assert send_and_hear(bob, b, b.clip(seed=21)) == "stored"
    assert not bob.done.is_set(), "Bob's session was taken over"
    assert ingester_log.read_text().count("disconnected from the broker") == before, "the ingester was kicked off"
    for client in (*impostors, bob):
        client.close()


def test_a_device_that_joins_the_share_group_by_name_gets_no_clips_to_drop(cloud: SecureCloud, pair: tuple) -> None:
    """Issue 24 case 5: a device login subscribed to $share/earmark-ingest/earmark/v1/clips/+;
    Mosquitto granted it (it checks read access only when it delivers), handed it half of
    another owner's clips and dropped them: 4 of 8 got no receipt."""
    (alice, alice_password), (bob, bob_password) = pair
    thief = connect(cloud, bob.device_id, bob_password)
    for group in ("earmark-ingest", "earmark", "ingest", "earmark-ingester"):  # the names it can guess
        thief.subscribe(f"$share/{group}/earmark/v1/clips/+")
    sender = listening(cloud, alice, alice_password)
    heard = [send_and_hear(sender, alice, alice.clip(seed=n, seconds=0.25), timeout=10) for n in range(8)]
    assert heard == ["stored"] * 8
    assert len(cloud.clips(alice.owner_id)) == 8
    thief.close()
    sender.close()
