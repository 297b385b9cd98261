"""Benchmark: what sealing a clip to its household costs the device (issue 34).

A 5 s clip (16 kHz mono 16-bit, 160 KB of WAV) is, per clip, in the same process:

  sign      the Ed25519 signature of the whole clip (what wire v1 signed: Ed25519 hashes
            every byte twice), the reference the ratio is taken against
  envelope  what the device does without a household key (wire v2: SHA-256 of the WAV, a
            signature over the header)
  seal      the age encryption of the WAV to the household's recipient (pyrage: X25519,
            HKDF, ChaCha20-Poly1305 in 64 KiB chunks)
  sealed    the whole v3 sealing: seal, then SHA-256 of the ciphertext and the signature

Each is timed as the median of --rounds rounds of --clips clips, alternating, on one core.
It prints milliseconds per clip and each as a ratio to `sign`.

A Pi 4 estimate, two ways. The ratio: `sign` is SHA-512 over the clip twice plus a scalar
multiplication; on a Pi 4 core (Cortex-A72, 1.5 GHz, no ARMv8 crypto extensions) SHA-512 runs
at about PI_SHA512 MB/s, so `sign` there is about 2 x 160 KB / PI_SHA512, and `sealed` the
measured ratio times that. Per primitive, which does not assume the ratio carries over (this
machine hashes SHA-256 in hardware, the Pi does not): ChaCha20-Poly1305 and SHA-256 over the
ciphertext at PI_CHACHA and PI_SHA256 MB/s, two X25519 operations, the header's signature,
and this machine's Python overhead x PI_SLOWER. The throughputs are assumptions (openssl-speed
class figures for the A72), printed with the estimate.

Usage: .venv/bin/python bench/seal_clip.py [--clips 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from pyrage import x25519  # noqa: E402

from earmark.device.listening.recorder import Recording  # noqa: E402
from earmark.device.sync.chain import Chain  # noqa: E402
from earmark.device.sync.household import seal_audio  # noqa: E402
from earmark.device.sync.identity import Sealer  # noqa: E402
from earmark.wire.envelope import wav_bytes  # noqa: E402

# Assumed Pi 4 core throughputs (Cortex-A72 at 1.5 GHz, no crypto extensions), MB/s and ms.
PI_SHA512, PI_SHA256, PI_CHACHA = 230.0, 120.0, 240.0
PI_X25519_MS, PI_SIGN_HEADER_MS, PI_SLOWER = 0.12, 0.1, 4.0


def timed(work: Callable[[], object], clips: int) -> float:
    start = time.perf_counter()
    for _ in range(clips):
        work()
    return (time.perf_counter() - start) / clips * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as on the Pi
    audio = (np.random.default_rng(7).normal(0, 3000, 16000 * 5)).astype(np.int16)
    wav = wav_bytes(audio.astype("<i2").tobytes())
    recording = Recording(audio, 0, "wake_word", "alexa", 0.97, "end_of_speech")
    key = Ed25519PrivateKey.generate()
    recipient = x25519.Identity.generate().to_public()
    owner = str(uuid.uuid4())
    plain = Sealer("bench-pi", owner, key, Chain(None))
    sealed = Sealer("bench-pi", owner, key, Chain(None), (str(recipient),))
    now = datetime.now(UTC)
    work: dict[str, Callable[[], object]] = {
        "sign": lambda: key.sign(wav),
        "envelope": lambda: plain.seal(recording, now),
        "seal": lambda: seal_audio(wav, [recipient]),
        "sealed": lambda: sealed.seal(recording, now),
    }
    for job in work.values():
        job()  # warm
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(args.rounds):
        for name, job in work.items():
            times[name].append(timed(job, args.clips))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"5 s clip ({len(wav)} bytes of WAV), {args.clips} clips x {args.rounds} rounds, one core, median:")
    for name, ms in median.items():
        print(f"  {name:9s} {ms:7.3f} ms/clip   {ms / median['sign']:5.2f}x sign   "
              f"[{min(times[name]):.3f}-{max(times[name]):.3f}]")
    mb = len(wav) / 1e6
    by_ratio = median["sealed"] / median["sign"] * (2 * mb / PI_SHA512 * 1000 + PI_X25519_MS)
    overhead = max(0.0, median["sealed"] - median["seal"]) * 0.5  # the Python part of it, roughly half
    by_parts = (mb / PI_CHACHA + mb / PI_SHA256) * 1000 + 2 * PI_X25519_MS + PI_SIGN_HEADER_MS + overhead * PI_SLOWER
    print(f"a Pi 4 core, estimated (SHA-512 {PI_SHA512:.0f}, SHA-256 {PI_SHA256:.0f}, ChaCha20-Poly1305 "
          f"{PI_CHACHA:.0f} MB/s assumed): by the ratio ~{by_ratio:.1f} ms, by the parts ~{by_parts:.1f} ms per "
          "sealed clip (goal < 5 ms)")


if __name__ == "__main__":
    main()
