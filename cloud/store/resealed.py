"""A clip from before household keys (wire v1 or v2: plain audio, sealed at rest with the
owner's server key), re-sealed once to its household's key by `earmark-cloud owner reseal`.

The blob keeps everything of the device's envelope except the plain audio, which becomes age
ciphertext to the household's recipients; nothing on the server opens it any more:

    MARK | ">HI": header length, plain audio length | header (as signed) | signature (64) |
    age ciphertext of the clip's WAV

The envelope's digest (what the device's chain and the store's row name) is the same as
before, and for a v2 clip the device's signature still verifies without the audio (it
covers the preamble, which holds the audio's length, and the header, which holds the WAV's
SHA-256). Who opens the audio (the owner's page, `verify-export --identity`) can then hold
the WAV to the header's hash, and for a v1 clip (signed over its audio) verify the signature
itself: `original`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from earmark.wire.envelope import (
    MAGIC,
    PREAMBLE,
    SIGNATURE_BYTES,
    ClipHeader,
    Envelope,
    EnvelopeError,
    decode_envelope,
    parse_header,
    reassemble,
    signed_by,
    signed_digest,
)

MARK = b"earmark/household-resealed-envelope\n"
_SIZES = struct.Struct(">HI")


@dataclass(frozen=True)
class Resealed:
    """A re-sealed clip: its device's signed header and signature, the household's ciphertext."""

    header: ClipHeader
    header_bytes: bytes
    plain_audio_bytes: int
    signature: bytes
    audio: bytes  # age ciphertext of the WAV the header describes

    @property
    def version(self) -> int:
        return self.header.version

    @cached_property
    def digest(self) -> str | None:
        """The original envelope's digest for a v2 clip; None for v1 (its signed bytes include
        the audio): the store's row names it, and `original` checks it once the audio is open."""
        if self.version < 2:
            return None
        return signed_digest(self._preamble() + self.header_bytes, self.signature)

    def verify(self, public_key: Ed25519PublicKey) -> bool | None:
        """The device's signature over a v2 clip's preamble and header (which names the WAV's
        hash); None for v1, whose signature covers the audio: see `original`."""
        if self.version < 2:
            return None
        return signed_by(public_key, self._preamble() + self.header_bytes, self.signature)

    def original(self, wav: bytes) -> Envelope:
        """The device's envelope again, from the WAV the household's key opened: decoded (the
        WAV must be the one the header hashed) for the caller to verify as any envelope."""
        if len(wav) != self.plain_audio_bytes:
            raise EnvelopeError("audio_hash", "the opened audio is not the length the device signed")
        return decode_envelope(reassemble(self.header_bytes, wav, self.signature))

    def _preamble(self) -> bytes:
        return PREAMBLE.pack(MAGIC, self.version, 0, len(self.header_bytes), self.plain_audio_bytes)

    def to_blob(self) -> bytes:
        return b"".join((MARK, _SIZES.pack(len(self.header_bytes), self.plain_audio_bytes), self.header_bytes,
                         self.signature, self.audio))


def reseal(envelope: Envelope, recipients: list[str]) -> Resealed:
    """`envelope` (v1 or v2) with its WAV sealed to these age recipients."""
    import pyrage
    from pyrage import x25519

    if envelope.header.sealed:
        raise ValueError("the clip is sealed to its household already")
    sealed = pyrage.encrypt(bytes(envelope.audio), [x25519.Recipient.from_str(r) for r in recipients])
    return Resealed(envelope.header, bytes(envelope.header_bytes), len(envelope.audio), bytes(envelope.signature),
                    sealed)


def parse(blob: bytes) -> Resealed:
    """A re-sealed blob (starting with MARK); EnvelopeError if it is not well formed."""
    at = len(MARK)
    if not blob.startswith(MARK) or len(blob) < at + _SIZES.size:
        raise EnvelopeError("malformed", "not a re-sealed clip")
    header_len, plain = _SIZES.unpack_from(blob, at)
    at += _SIZES.size
    header_bytes = blob[at:at + header_len]
    signature = blob[at + header_len:at + header_len + SIGNATURE_BYTES]
    audio = blob[at + header_len + SIGNATURE_BYTES:]
    if len(signature) != SIGNATURE_BYTES or not audio:
        raise EnvelopeError("malformed", "a re-sealed clip is cut short")
    return from_parts(header_bytes, plain, signature, audio)


def from_parts(header_bytes: bytes, plain_audio_bytes: int, signature: bytes, audio: bytes) -> Resealed:
    """A re-sealed clip from what a blob or an export's manifest and file keep of it: the
    header checked as the envelope decoder checks it (EnvelopeError if it is not valid)."""
    if len(signature) != SIGNATURE_BYTES:
        raise EnvelopeError("malformed", "a re-sealed clip's signature is not 64 bytes")
    header = parse_header(header_bytes, 2 if b'"seq":' in header_bytes else 1)
    return Resealed(header, header_bytes, plain_audio_bytes, signature, audio)


def sealed_audio(clip: Envelope | Resealed) -> bool:
    """Is the clip's audio the household's age ciphertext (sealed on its device, or re-sealed)?"""
    return isinstance(clip, Resealed) or clip.header.sealed
