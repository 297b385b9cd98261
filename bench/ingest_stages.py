"""Benchmark: the ingester's CPU per 5 s clip, by stage, for wire v1, v2 and v3 envelopes.

In one process, on N signed 5-second clips (~160 KB) from one registered device, it times
each stage on its own (process CPU, user + kernel, every thread; best of --runs), then the
whole judged-and-committed path (Ingestor.handle_batch on a SQLite store, batches of 64,
as the message sources run it), alternating v1, v2 and v3 runs (v3: sealed to the
household on the device, what paired devices send; the server seals nothing):

  decode       strict parse of the framing and header, WAV check, the audio's SHA-256
  verify       Ed25519 (libsodium): v1 over the whole envelope, v2 over preamble and header
  digest       the envelope's digest (v1: SHA-256 of every byte; v2, v3: of all but the audio)
  seal         AES-256-GCM of the envelope under the owner's key (v1, v2 only)
  blob write   the blobs written whole and durably (one syncfs per batch, renames, dir fsyncs)

What the whole path costs beyond these stages is the rest: the registry view, the database
rows, audit events and their durable commit, and Python's bookkeeping. Receiving from the
broker is not in here: bench/ingest_throughput.py measures it beside a plain paho subscriber.

Usage: .venv/bin/python bench/ingest_stages.py [--clips 640] [--runs 3]
(Receiving from the broker and answering are not in here: bench/ingest_throughput.py.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earmark.cloud.ingest.ingestor import Ingestor  # noqa: E402
from earmark.cloud.store.clips import HOUSEHOLD_SEALED  # noqa: E402
from earmark.cloud.store.crypto import seal  # noqa: E402
from earmark.runtime.durable import Data  # noqa: E402
from earmark.wire.envelope import decode_envelope, envelope_digest, parse_public_key  # noqa: E402
from tests.support.cloudkit import SimDevice, make_store  # noqa: E402

BATCH = 64
VERSIONS = (1, 2, 3)
HOUSEHOLD = "age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"  # any valid recipient


def cpu_s(action: Callable[[], object]) -> float:
    """Process CPU (user + kernel, all threads) spent by `action`, to the nanosecond (os.times
    counts 10 ms ticks)."""
    before = time.process_time()
    action()
    return time.process_time() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=640)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    key = b"k" * 32
    best: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        setups = {}
        for version in VERSIONS:
            store = make_store(Path(tmp) / f"v{version}")
            owner = store.registry.add_owner("Bench").owner_id
            device = SimDevice("bench-pi", owner)
            store.registry.add_device(owner, device.public_key, device.device_id)
            if version == 3:
                store.registry.set_recipient(owner, HOUSEHOLD)
            setups[version] = (store, device, parse_public_key(device.public_key), Ingestor(store))
        for run in range(args.runs):
            for version in VERSIONS:  # alternating, so drift in the machine hits all alike
                store, device, public, ingestor = setups[version]
                envelopes = [device.clip(seconds=5.0, seed=run * 100_000 + i, v1=version == 1,
                                         sealed_to=(HOUSEHOLD,) if version == 3 else ())
                             for i in range(args.clips)]  # new clips each run: the same ones would be duplicates
                decoded = [decode_envelope(e) for e in envelopes]
                blobs: list[Data] = ([(HOUSEHOLD_SEALED, e) for e in envelopes] if version == 3  # as stored
                                     else [seal(key, e, b"aad") for e in envelopes])
                folder = f"bench-{version}-{run}"
                stages: dict[str, Callable[[], object]] = {
                    "decode": lambda envelopes=envelopes: [decode_envelope(e) for e in envelopes],
                    "verify (Ed25519)": lambda decoded=decoded, public=public: [d.verify(public) for d in decoded],
                    "digest": lambda envelopes=envelopes: [envelope_digest(e) for e in envelopes],
                    "seal (AES-256-GCM)": lambda envelopes=envelopes, version=version: [
                        seal(key, e, b"aad") for e in envelopes] if version < 3 else None,
                    "blob write (durable)": lambda store=store, blobs=blobs, folder=folder: [
                        store.blobs.write_many([(f"{folder}/{i + j}.bin", blob)
                                                for j, blob in enumerate(blobs[i:i + BATCH])])
                        for i in range(0, len(blobs), BATCH)],
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
    print(f"{'stage':<28}" + "".join(f"{f'v{v}':>8}" for v in VERSIONS))
    for name, by_version in best.items():
        print(f"{name:<28}" + "".join(f"{by_version[v]:>8.3f}" if v < 3 or not name.startswith("seal") else
                                      f"{'-':>8}" for v in VERSIONS))
    parts = [v for k, v in best.items() if k != "whole path"]
    rest = {version: best["whole path"][version] - sum(p[version] for p in parts) for version in VERSIONS}
    print(f"{'rest (rows, audit, commit)':<28}" + "".join(f"{rest[v]:>8.3f}" for v in VERSIONS))


if __name__ == "__main__":
    main()
