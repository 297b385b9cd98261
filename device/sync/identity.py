"""The device's own Ed25519 key pair, and sealing a recording into a signed clip envelope.
The private key is made on the device, written 0600, and never leaves it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pyrage import x25519

from earmark.device.audio.resample import TARGET_RATE
from earmark.device.listening.recorder import Recording
from earmark.device.sync.chain import Chain
from earmark.device.sync.household import parse_recipient, seal_audio
from earmark.runtime.durable import write_file
from earmark.wire.envelope import (
    CODEC,
    ClipHeader,
    audio_sha256,
    decode_envelope,
    encode_envelope,
    format_captured_at,
    public_key_text,
    wav_bytes,
)
from earmark.wire.errors import UsageError


class DeviceKeyError(UsageError, RuntimeError):
    """The key file exists but cannot be used."""


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The device key at `path`, made (0600, atomically) if there is none. Returns (key, created)."""
    if path.exists():
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except ValueError:
            raise DeviceKeyError(
                f"device key {path} is not a PEM private key; move it aside to make a new one"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise DeviceKeyError(f"device key {path} is not an Ed25519 key")
        return key, False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    write_file(path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return key, True


def public_key_of(key: Ed25519PrivateKey) -> str:
    return public_key_text(key.public_key())


@dataclass(frozen=True)
class Sealer:
    """Turns recordings into signed envelopes for one device and owner, chained by `chain`:
    v3 when the household's age `recipients` are known (the WAV is encrypted to them here, in
    memory, so no plaintext audio ever reaches the spool or any file), else v2; without a
    chain, v1 (what devices not yet updated send)."""

    device_id: str
    owner_id: str
    key: Ed25519PrivateKey
    chain: Chain | None = None
    recipients: tuple[str, ...] = ()
    _age: list[x25519.Recipient] = field(init=False, repr=False, compare=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.recipients and self.chain is None:
            raise ValueError("a sealed (v3) clip is always chained")
        object.__setattr__(self, "recipients", tuple(sorted(set(self.recipients))))
        object.__setattr__(self, "_age", [parse_recipient(r) for r in self.recipients])

    def seal(self, recording: Recording, captured: datetime) -> tuple[str, bytes]:
        audio = wav_bytes(recording.audio.astype("<i2").tobytes())
        if self.recipients:
            audio = seal_audio(audio, self._age)
        link = self.chain.next() if self.chain is not None else None
        header = ClipHeader(
            clip_id=str(uuid.uuid4()),
            device_id=self.device_id,
            owner_id=self.owner_id,
            captured_at=format_captured_at(captured),
            duration_ms=len(recording.audio) * 1000 // TARGET_RATE,
            sample_rate=TARGET_RATE,
            channels=1,
            sample_width=2,
            codec=CODEC,
            trigger=recording.trigger,
            wake_word=recording.wake_word,
            wake_score=recording.wake_score,
            audio_sha256=audio_sha256(audio),
            seq=link.seq if link else None,
            prev_sha256=link.prev_sha256 if link else None,
            recipients=self.recipients or None,
        )
        return header.clip_id, encode_envelope(header, audio, self.key)

    def spooled(self, envelope: bytes) -> None:
        """The envelope is durably in the spool: the chain moves past it."""
        if self.chain is not None:
            seq = decode_envelope(envelope).header.seq
            assert seq is not None
            self.chain.advance(seq, envelope)
