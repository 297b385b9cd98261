"""Sealing a clip's audio to its household: age (age-encryption.org/v1) to the household's
X25519 recipients, with pyrage (Python bindings to rage, the Rust implementation of age:
an abi3 wheel for every platform the Pi runs, aarch64 included, so the device owns no
cryptographic code of its own). The WAV is encrypted in memory; only ciphertext ever reaches
the spool. The household's identity never comes near the device: it holds only recipients,
which are public."""

from __future__ import annotations

from pyrage import encrypt, x25519

from earmark.wire.envelope import RECIPIENT_PATTERN
from earmark.wire.errors import ConfigError


def parse_recipient(text: str) -> x25519.Recipient:
    """An `age1…` X25519 recipient; ConfigError (one line) for anything else."""
    if not RECIPIENT_PATTERN.fullmatch(text):
        raise ConfigError(f"{text[:24]!r} is not an age X25519 recipient (age1…, as age-keygen prints it)")
    try:
        return x25519.Recipient.from_str(text)
    except Exception:  # pyrage raises its own untyped error for a bad checksum
        raise ConfigError(f"{text[:24]!r} is not a valid age recipient (its checksum does not match)") from None


def seal_audio(wav: bytes, recipients: list[x25519.Recipient]) -> bytes:
    """The WAV as an age file only the holders of these recipients' identities can open."""
    return bytes(encrypt(wav, recipients))
