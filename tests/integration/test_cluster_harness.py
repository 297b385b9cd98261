"""The small slice of the multi-host harness (deploy/cluster/) the suite runs: its checker
finds each kind of failure it reports in a real store, and its hosts really are cut off when
their link is. The whole run with its faults is `deploy/cluster/run.sh --faults`."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.store.store import Store
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import SimDevice, enrolled_device, tamper

CLUSTER = Path(__file__).resolve().parents[2] / "deploy" / "cluster"


def harness(name: str) -> ModuleType:
    if str(CLUSTER) not in sys.path:
        sys.path.insert(0, str(CLUSTER))
    spec = importlib.util.spec_from_file_location(f"cluster_{name}", CLUSTER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def sent_and_stored(store: Store, device: SimDevice, count: int, start: int = 0) -> list[str]:
    envelopes = [device.clip(seed=start + n, seconds=0.2) for n in range(count)]
    assert {o.status for o in Ingestor(store).handle_batch([(device.topic, e) for e in envelopes])} == {"stored"}
    return [decode_envelope(e).header.clip_id for e in envelopes]


@pytest.mark.parametrize("blob_store", ["database"], indirect=True)
def test_the_checker_counts_what_was_sent_stored_once_and_names_each_failure(store: Store, tmp_path: Path) -> None:
    checker = harness("checker")
    alice, bob = enrolled_device(store, "Alice"), enrolled_device(store, "Bob")
    owner_of = {alice.device_id: alice.owner_id, bob.device_id: bob.owner_id}
    sent = {alice.device_id: sent_and_stored(store, alice, 3), bob.device_id: sent_and_stored(store, bob, 2)}
    clean = checker.check(store, sent, owner_of, tmp_path / "a")
    assert clean.ok
    assert clean.lines()[-1] == "checked: 5 clips sent, 5 stored exactly once, 0 lost, 0 doubled, 0 misfiled"

    # A clip a device spooled that never reached the store: lost.
    never = alice.clip(seed=50, seconds=0.2)
    sent[alice.device_id].append(decode_envelope(never).header.clip_id)
    lost = checker.check(store, sent, owner_of, tmp_path / "b")
    assert not lost.ok and len(lost.lost) == 1 and lost.stored_once == 5
    sent[alice.device_id].pop()

    # One of Alice's clips filed under Bob: misfiled. Bob's export refuses it (naming it), so
    # none of his clips reached an export; Alice's shows the gap in her device's chain.
    moved = sent[alice.device_id][0]
    tamper(store, "UPDATE clips SET owner_id = ? WHERE clip_id = ?", (bob.owner_id, moved))
    misfiled = checker.check(store, sent, owner_of, tmp_path / "c")
    assert [m.split(" ")[0] for m in misfiled.misfiled] == [moved]
    assert misfiled.stored_once == 2 and len(misfiled.lost) == 3  # the moved clip and Bob's two
    assert any(f"export of {bob.owner_id} refused" in p and moved in p for p in misfiled.problems)
    assert any("not in the export" in p for p in misfiled.problems)
    tamper(store, "UPDATE clips SET owner_id = ? WHERE clip_id = ?", (alice.owner_id, moved))

    # A clip stored twice (what a redelivery that slipped past de-duplication would leave: a
    # second, well-chained clip_stored event for it): doubled.
    twice = sent[bob.device_id][0]
    with store.write() as cur:
        store.audit.append(cur, "clip_stored", owner_id=bob.owner_id, device_id=bob.device_id, clip_id=twice,
                           detail={"envelope_sha256": "0" * 64})
    doubled = checker.check(store, sent, owner_of, tmp_path / "e")
    assert [d.split(" ")[0] for d in doubled.doubled] == [twice] and doubled.problems == []
    assert doubled.lines()[-1].endswith("4 stored exactly once, 0 lost, 1 doubled, 0 misfiled")

    # A stored clip no device's ledger holds: reported, the run fails.
    sent[bob.device_id].pop()
    stray = checker.check(store, sent, owner_of, tmp_path / "d")
    assert not stray.ok and any("in no device's ledger" in p for p in stray.problems)


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_hosts_cut_link_partitions_it_and_mending_it_heals() -> None:
    hosts = harness("hosts")
    made = hosts.make_network({"t-a": 201, "t-b": 202}, bridge="emkt0", net="10.89.0")  # beside a running harness
    try:
        a, b = made["t-a"], made["t-b"]
        b.spawn(["python3", "-c", "import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
                            f"socket.SO_REUSEADDR,1);s.bind(('{b.address}',7000));s.listen()\n"
                            "while True: c,_=s.accept();c.sendall(b'hi');c.close()"], Path(os.devnull))
        probe = ("import socket,sys\ntry:\n s=socket.create_connection((sys.argv[1],7000),timeout=1.5);"
                 "print(s.recv(2).decode())\nexcept OSError as e: print('unreachable')")

        def reach() -> str:
            return str(a.run("python3", "-c", probe, b.address, check=False).stdout.strip())

        hosts.wait_for("the listener", lambda: reach() == "hi", 10, every=0.2)
        b.cut()
        assert reach() == "unreachable"
        b.mend()
        hosts.wait_for("the mended link", lambda: reach() == "hi", 10, every=0.2)
    finally:
        hosts.remove_network(list(made.values()), "emkt0")
