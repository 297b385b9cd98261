"""A property test: over random sequences of ingest, handover (revoke, then a new enrollment
with a new key for another owner), erase and export, every export holds exactly the clips
its owner's devices made while they were theirs, and an erased owner's export is refused."""

from __future__ import annotations

import json
import tempfile
import zipfile
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import erase_owner
from earmark.cloud.owner.export import ExportError, export_owner
from earmark.wire.envelope import decode_envelope
from tests.support.cloudkit import SimDevice, make_store
from tests.support.pgdb import temporary_database

OWNERS, DEVICES = 3, 3
operation = st.one_of(
    st.tuples(st.just("ingest"), st.integers(0, DEVICES - 1)),
    st.tuples(st.just("handover"), st.integers(0, DEVICES - 1), st.integers(0, OWNERS - 1)),
    st.tuples(st.just("erase"), st.integers(0, OWNERS - 1)),
    st.tuples(st.just("export"), st.integers(0, OWNERS - 1)),
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@settings(max_examples=30, deadline=None)
@given(st.lists(operation, min_size=1, max_size=14))
def test_exports_hold_exactly_what_each_owners_devices_made(backend: str, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url = stack.enter_context(temporary_database()) if backend == "postgres" else ""
        store = make_store(Path(tmp) / "cloud", url)
        stack.callback(store.close)
        owners = [store.registry.add_owner(f"o{i}").owner_id for i in range(OWNERS)]
        devices = []
        for i in range(DEVICES):
            device = SimDevice(f"pi-{i}", owners[i % OWNERS])
            store.registry.add_device(device.owner_id, device.public_key, device.device_id)
            devices.append(device)
        expected: dict[str, set[str]] = {o: set() for o in owners}
        erased: set[str] = set()
        revoked: set[str] = set()
        ingestor = Ingestor(store)
        for step, op in enumerate(ops):
            if op[0] == "ingest":
                device = devices[op[1]]
                envelope = device.clip(seed=step, seconds=0.1)
                outcome = ingestor.handle(device.topic, envelope)
                if device.device_id in revoked:
                    assert outcome.reason == "revoked_device"
                else:
                    assert outcome.status == "stored" and outcome.owner_id == device.owner_id
                    expected[device.owner_id].add(decode_envelope(envelope).header.clip_id)
            elif op[0] == "handover":
                device, target = devices[op[1]], owners[op[2]]
                if device.device_id in revoked or target in erased:
                    continue
                store.registry.revoke_device(device.device_id)
                revoked.add(device.device_id)
                successor = SimDevice(f"{device.device_id}-{step}", target)  # a new key, a new id
                store.registry.add_device(target, successor.public_key, successor.device_id)
                devices[op[1]] = successor
            elif op[0] == "erase":
                owner = owners[op[1]]
                if owner in erased:
                    continue
                erase_owner(store, owner)
                erased.add(owner)
                expected[owner] = set()
                revoked |= {d.device_id for d in devices if d.owner_id == owner}
            else:
                owner = owners[op[1]]
                if owner in erased:
                    try:
                        export_owner(store, owner, Path(tmp) / "out")
                    except ExportError as exc:
                        assert "erased" in str(exc)
                    else:
                        raise AssertionError("an erased owner's export was produced")
                    continue
                archive = export_owner(store, owner, Path(tmp) / "out").path
                with zipfile.ZipFile(archive) as zf:
                    got = {c["clip_id"] for c in json.loads(zf.read("manifest.json"))["clips"]}
                assert got == expected[owner]
        assert store.audit.verify() == []
        store.close()
