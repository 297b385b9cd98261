"""Helpers for cloud tests: a store in tmp_path and simulated devices that sign real clips."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from earmark.cloud.settings import S3Settings, default_master_key_path
from earmark.cloud.store.crypto import create_master_key
from earmark.cloud.store.store import Store
from earmark.device.listening.recorder import Recording
from earmark.device.sync.chain import Chain
from earmark.device.sync.identity import Sealer, public_key_of
from earmark.wire.envelope import ClipHeader, decode_envelope, encode_envelope
from earmark.wire.topics import clip_topic
from tests.support.pgdb import admin_execute

# A module whose tests take `store` runs each on every blob store too (files, database rows and
# an S3 bucket on a real S3 server: tests/support/s3.py).
EVERY_BLOB_STORE = pytest.mark.parametrize("blob_store", ["files", "database", "s3"], indirect=True)


def make_store(data_dir: Path, database_url: str = "", blob_store: str = "files",
               s3: S3Settings | None = None) -> Store:
    """A new store: SQLite in data_dir, or rows in the PostgreSQL database at database_url;
    blobs as files under data_dir, as rows of the database, or objects in the bucket `s3`."""
    key_file = default_master_key_path(data_dir)
    create_master_key(key_file)
    return Store(data_dir, key_file, create=True, database_url=database_url, blob_store=blob_store, s3=s3)


def reopen(store: Store) -> Store:
    """Another Store on the same data (as another process would open it)."""
    return Store(store.data_dir, store.master_key_path, database_url=store.database_url, blob_store=store.blob_store,
                 s3=store.s3)


def tamper(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Edit the database directly, as someone with access to it could (past row-level security)."""
    if store.database_url:
        return admin_execute(store.database_url, sql, params)
    db = sqlite3.connect(store.data_dir / "earmark.db")
    with db:
        rows = db.execute(sql, params).fetchall()
    db.close()
    return rows


@dataclass
class SimDevice:
    device_id: str
    owner_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    chain: Chain = field(default_factory=lambda: Chain(None))  # wire v2's clip chain, in memory

    @property
    def public_key(self) -> str:
        return public_key_of(self.key)

    @property
    def topic(self) -> str:
        return clip_topic(self.device_id)

    def clip(self, canary: bytes = b"", seconds: float = 0.5, captured: datetime | None = None,
             seed: int = 0, chain: Chain | None = None, v1: bool = False, sealed_to: tuple[str, ...] = ()) -> bytes:
        """A signed envelope whose audio starts with `canary` (so a leak can be spotted): wire
        v2 on `chain` (default: the device's own, in memory), which then moves past it as after
        a spool; v3 when `sealed_to` names the household's recipients; or v1, as a device not
        yet updated sends."""
        chain = None if v1 else (chain or self.chain)
        rng = np.random.default_rng(seed)
        audio = rng.integers(-2000, 2000, int(16000 * seconds)).astype(np.int16)
        if canary:
            raw = np.frombuffer(canary + b"\0" * (len(canary) % 2), dtype="<i2")
            audio[: len(raw)] = raw
        recording = Recording(audio, 0, "wake_word", "alexa", 0.97, "end_of_speech")
        sealer = Sealer(self.device_id, self.owner_id, self.key, chain, sealed_to)
        envelope = sealer.seal(recording, captured or datetime.now(UTC))[1]
        sealer.spooled(envelope)
        return envelope

    def resign(self, envelope: bytes, key: Ed25519PrivateKey | None = None, **changes: object) -> bytes:
        """The same clip with header fields changed, signed by `key` (default: this device's)."""
        env = decode_envelope(envelope)
        header: ClipHeader = replace(env.header, **changes)  # type: ignore[arg-type]
        return encode_envelope(header, env.audio, key or self.key)


def enrolled_device(store: Store, name: str, device_id: str | None = None) -> SimDevice:
    """A new owner called `name` with one registered device (id: `<name>-pi` by default)."""
    owner = store.registry.add_owner(name).owner_id
    device = SimDevice(device_id or f"{name.lower()}-pi", owner)
    store.registry.add_device(owner, device.public_key, device.device_id)
    return device


def new_clip_id() -> str:
    return str(uuid.uuid4())
