"""Benchmark: the ingester's CPU per 5 s clip, by stage, for wire v1 and v2 envelopes.

In one process, on N signed 5-second clips (~160 KB) from one registered device, it times
(CPU time, best of --runs) each stage on its own, then the whole judged-and-committed batch
path (Ingestor.handle_batch on a fresh SQLite store, batches of 64, as the MQTT source runs
it). What the whole path costs beyond the stages is the durable write: blob fsync, rows,
audit events and the commit.

  decode     strict parse, WAV check and the audio's SHA-256 (both versions)
  verify     Ed25519: v1 over the whole envelope, v2 over preamble and header
  seal       AES-256-GCM of the envelope under the owner's key
  sha256     the envelope's SHA-256 (the store's fingerprint and the chain's link)

Usage: .venv/bin/python bench/ingest_stages.py [--clips 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earmark.cloud.ingest.ingestor import Ingestor  # noqa: E402
from earmark.cloud.store.crypto import seal  # noqa: E402
from earmark.wire.envelope import decode_envelope, parse_public_key  # noqa: E402
from tests.support.cloudkit import SimDevice, make_store  # noqa: E402


def cpu_s(action: Callable[[], object]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300)
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
            envelopes = [device.clip(seconds=5.0, seed=i, v1=version == 1) for i in range(args.clips)]
            setups[version] = (store, device, envelopes, [decode_envelope(e) for e in envelopes],
                               parse_public_key(device.public_key), Ingestor(store))
        for run in range(1, args.runs + 1):
            for version in (1, 2):  # alternating, so drift in the machine hits both alike
                store, device, envelopes, decoded, public, ingestor = setups[version]
                fresh = [device.clip(seconds=5.0, seed=run * 100_000 + i, v1=version == 1)
                         for i in range(args.clips)]  # new clips each run: the same ones would be duplicates
                batches = [[(device.topic, e) for e in fresh[i:i + 64]] for i in range(0, len(fresh), 64)]
                stages: dict[str, Callable[[], object]] = {
                    "decode (parse, audio hash)": lambda envelopes=envelopes: [decode_envelope(e) for e in envelopes],
                    "verify (Ed25519)": lambda decoded=decoded, public=public: [d.verify(public) for d in decoded],
                    "seal (AES-256-GCM)": lambda envelopes=envelopes: [seal(key, e, b"aad") for e in envelopes],
                    "sha256 (fingerprint)": lambda envelopes=envelopes: [hashlib.sha256(e).digest()
                                                                         for e in envelopes],
                    "whole path (handle_batch)": lambda batches=batches, ingestor=ingestor: [
                        ingestor.handle_batch(b) for b in batches],
                }
                for name, action in stages.items():
                    ms = cpu_s(action) * 1000 / args.clips
                    best.setdefault(name, {})[version] = min(ms, best.get(name, {}).get(version, float("inf")))
        for store, *_ in setups.values():
            store.close()
    print(f"{args.clips} clips of 5 s, {args.runs} alternating runs, best of each; CPU ms per clip")
    print(f"{'stage':<28}{'v1':>8}{'v2':>8}")
    for name, by_version in best.items():
        print(f"{name:<28}{by_version[1]:>8.3f}{by_version[2]:>8.3f}")
    whole, parts = best["whole path (handle_batch)"], [v for k, v in best.items() if k != "whole path (handle_batch)"]
    for version in (1, 2):
        rest = whole[version] - sum(p[version] for p in parts)
        print(f"v{version}: the durable write and bookkeeping (whole path minus the stages): {rest:.3f} ms")


if __name__ == "__main__":
    main()
