"""Benchmark: the ingester's CPU per 5 s clip, by stage, for wire v1 and v2 envelopes.

In one process, on N signed 5-second clips (~160 KB) from one registered device, it times
each stage on its own (process CPU, user + kernel, every thread; best of --runs), then the
whole judged-and-committed path (Ingestor.handle_batch on a SQLite store, batches of 64,
as the message sources run it), alternating v1 and v2 runs:

  decode       strict parse of the framing and header, WAV check, the audio's SHA-256
  verify       Ed25519 (libsodium): v1 over the whole envelope, v2 over preamble and header
  digest       the envelope's digest (v1: SHA-256 of every byte; v2: of all but the audio)
  seal         AES-256-GCM of the envelope under the owner's key
  blob write   the sealed blobs written whole and durably (temp file, fsync, rename, dir fsync)

What the whole path costs beyond these stages is the rest: the registry view, the database
rows, audit events and their durable commit, and Python's bookkeeping. Receiving from the
broker is not in here: bench/ingest_throughput.py measures it beside a plain paho subscriber.

Usage: .venv/bin/python bench/ingest_stages.py [--clips 640] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earmark.cloud.ingest.ingestor import Ingestor  # noqa: E402
from earmark.cloud.store.crypto import seal  # noqa: E402
from earmark.wire.envelope import decode_envelope, envelope_digest, parse_public_key  # noqa: E402
from tests.support.cloudkit import SimDevice, make_store  # noqa: E402

BATCH = 64


def cpu_s(action: Callable[[], object]) -> float:
    """Process CPU (user + kernel, all threads) spent by `action`."""
    before = os.times()
    action()
    after = os.times()
    return (after.user - before.user) + (after.system - before.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=640)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    key = b"k" * 32
    best: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        setups = {}
        for version in (1, 2):
            store = make_store(Path(tmp) / f"v{version}")
            owner = store.registry.add_owner("Bench").owner_id
            device = SimDevice("bench-pi", owner)
            store.registry.add_device(owner, device.public_key, device.device_id)
            setups[version] = (store, device, parse_public_key(device.public_key), Ingestor(store))
        for run in range(args.runs):
            for version in (1, 2):  # alternating, so drift in the machine hits both alike
                store, device, public, ingestor = setups[version]
                envelopes = [device.clip(seconds=5.0, seed=run * 100_000 + i, v1=version == 1)
                             for i in range(args.clips)]  # new clips each run: the same ones would be duplicates
                decoded = [decode_envelope(e) for e in envelopes]
                sealed = [seal(key, e, b"aad") for e in envelopes]
                folder = f"bench-{version}-{run}"
                stages: dict[str, Callable[[], object]] = {
                    "decode": lambda envelopes=envelopes: [decode_envelope(e) for e in envelopes],
                    "verify (Ed25519)": lambda decoded=decoded, public=public: [d.verify(public) for d in decoded],
                    "digest": lambda envelopes=envelopes: [envelope_digest(e) for e in envelopes],
                    "seal (AES-256-GCM)": lambda envelopes=envelopes: [seal(key, e, b"aad") for e in envelopes],
                    "blob write (durable)": lambda store=store, sealed=sealed, folder=folder: [
                        store.blobs.write_many([(f"{folder}/{i + j}.bin", blob)
                                                for j, blob in enumerate(sealed[i:i + BATCH])])
                        for i in range(0, len(sealed), BATCH)],
                    "whole path": lambda ingestor=ingestor, device=device, envelopes=envelopes: [
                        ingestor.handle_batch([(device.topic, e) for e in envelopes[i:i + BATCH]])
                        for i in range(0, len(envelopes), BATCH)],
                }
                for name, action in stages.items():
                    ms = cpu_s(action) * 1000 / args.clips
                    best.setdefault(name, {})[version] = min(ms, best.get(name, {}).get(version, float("inf")))
        for store, *_ in setups.values():
            store.close()
    print(f"{args.clips} clips of 5 s, {args.runs} alternating runs, best of each; process CPU ms per clip")
    print(f"{'stage':<24}{'v1':>8}{'v2':>8}")
    for name, by_version in best.items():
        print(f"{name:<24}{by_version[1]:>8.3f}{by_version[2]:>8.3f}")
    parts = [v for k, v in best.items() if k != "whole path"]
    rest = {version: best["whole path"][version] - sum(p[version] for p in parts) for version in (1, 2)}
    print(f"{'rest (rows, audit, commit)':<24}{rest[1]:>8.3f}{rest[2]:>8.3f}")


if __name__ == "__main__":
    main()
