"""Keys and sealing for the store. AES-256-GCM throughout.

- The master key (32 random bytes) lives in a file of its own (0600), never in the
  database. It only wraps other keys.
- Each owner has a data key, stored wrapped under HKDF(master key, the owner's secret) with
  the owner id as associated data: a wrapped key copied onto another owner's row does not
  unwrap, and without the owner's secret (store/keystore.py, outside the database, shredded
  at erasure) the master key alone opens nothing. Stores made before owner secrets existed
  have keys wrapped by the master key alone until they are moved out (Keys.move_out).
- A clip's envelope is sealed with its owner's data key, with associated data that binds
  owner id, device id and clip id: a blob moved under another owner, or renamed to
  another clip, fails to open.
- Quarantined payloads are sealed with a quarantine key tied to no owner, mixed with the
  secrets of the owners a payload names (its device's, the one its header claims), so an
  erasure shreds those too.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from earmark.runtime.durable import write_file
from earmark.wire.errors import EarmarkError, UsageError

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class CryptoError(EarmarkError, RuntimeError):
    """A sealed value did not open: wrong key, wrong binding, or tampered bytes."""


class MasterKeyError(UsageError, RuntimeError):
    """The master key file is missing or unusable; the message says what to do."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytearray:
    """nonce || ciphertext || tag, encrypted straight into one buffer (no copy of a 160 KB clip)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = bytearray(NONCE_BYTES + len(plaintext) + TAG_BYTES)
    sealed[:NONCE_BYTES] = nonce
    AESGCM(key).encrypt_into(nonce, plaintext, aad, memoryview(sealed)[NONCE_BYTES:])
    return sealed


def open_sealed(key: bytes, sealed: bytes | bytearray, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise CryptoError("sealed value is too short")
    view = memoryview(sealed)
    try:
        return AESGCM(key).decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], aad)
    except InvalidTag:
        raise CryptoError("authentication failed") from None


def clip_aad(owner_id: str, device_id: str, clip_id: str) -> bytes:
    return b"\0".join((b"earmark/v1/clip", owner_id.encode(), device_id.encode(), clip_id.encode()))


def owner_key_aad(owner_id: str) -> bytes:
    return b"earmark/v1/owner-key\0" + owner_id.encode()


def owner_wrapping_key(master_key: bytes, owner_secret: bytes, owner_id: str) -> bytes:
    """What an owner's data key is wrapped under: both the master key and the owner's secret."""
    return HKDF(SHA256(), KEY_BYTES, salt=owner_secret, info=owner_key_aad(owner_id)).derive(master_key)


QUARANTINE_KEY_AAD = b"earmark/v1/quarantine-key"


def linked_quarantine_key(quarantine_key: bytes, owner_secrets: list[bytes]) -> bytes:
    """The key for a quarantined payload that names owners (their secrets, in owner id order):
    it opens only while every one of them is kept."""
    if not owner_secrets:
        return quarantine_key
    return HKDF(SHA256(), KEY_BYTES, salt=b"".join(owner_secrets), info=QUARANTINE_KEY_AAD).derive(quarantine_key)


def quarantine_aad(quarantine_id: str) -> bytes:
    return b"earmark/v1/quarantine\0" + quarantine_id.encode()


def create_master_key(path: Path) -> bool:
    """Make the master key file (0600) if it does not exist. Returns True if made."""
    if path.exists():
        load_master_key(path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_file(path, base64.b64encode(new_key()) + b"\n")
    return True


def load_master_key(path: Path) -> bytes:
    try:
        text = path.read_bytes().strip()
    except FileNotFoundError:
        raise MasterKeyError(f"master key {path} does not exist: run `earmark-cloud init`, "
                             "or point master_key_file at it") from None
    if path.stat().st_mode & 0o077:
        raise MasterKeyError(f"master key {path} is readable by others: chmod 600 {path}")
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"master key {path} is not a base64 256-bit key")
    return key
