"""Helpers for cloud tests: a store in tmp_path and simulated devices that sign real clips."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.crypto import create_master_key
from cloud.store import Store
from device.identity import Sealer, public_key_of
from device.recorder import Recording
from earmark_wire.envelope import ClipHeader, decode_envelope, encode_envelope
from earmark_wire.topics import clip_topic


def make_store(data_dir: Path) -> Store:
    key_file = data_dir / "secrets" / "master.key"
    create_master_key(key_file)
    return Store(data_dir, key_file, create=True)


@dataclass
class SimDevice:
    device_id: str
    owner_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_key(self) -> str:
        return public_key_of(self.key)

    @property
    def topic(self) -> str:
        return clip_topic(self.device_id)

    def clip(self, canary: bytes = b"", seconds: float = 0.5, captured: datetime | None = None,
             seed: int = 0) -> bytes:
        """A signed envelope whose audio starts with `canary` (so a leak can be spotted)."""
        rng = np.random.default_rng(seed)
        audio = rng.integers(-2000, 2000, int(16000 * seconds)).astype(np.int16)
        if canary:
            raw = np.frombuffer(canary + b"\0" * (len(canary) % 2), dtype="<i2")
            audio[: len(raw)] = raw
        recording = Recording(audio, 0, "wake_word", "alexa", 0.97, "end_of_speech")
        return Sealer(self.device_id, self.owner_id, self.key).seal(recording, captured or datetime.now(UTC))[1]

    def resign(self, envelope: bytes, key: Ed25519PrivateKey | None = None, **changes: object) -> bytes:
        """The same clip with header fields changed, signed by `key` (default: this device's)."""
        env = decode_envelope(envelope)
        header: ClipHeader = replace(env.header, **changes)  # type: ignore[arg-type]
        return encode_envelope(header, env.audio, key or self.key)


def new_clip_id() -> str:
    return str(uuid.uuid4())
