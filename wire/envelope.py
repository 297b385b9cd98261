"""The signed clip envelope (wire contract v2, and v1 still read). `docs/wire-format.md`
gives the exact bytes; tests hold this module to that document.

    magic "EMRK" | version u8 | flags u8 | header_len u32be | audio_len u32be
    | header (canonical JSON, ASCII) | audio (canonical 44-byte-header PCM WAV)
    | Ed25519 signature (64 bytes)

v1 signs every byte before the signature (Ed25519 hashes the whole 160 KB clip, twice). v2
signs the preamble and header only: the header carries the audio's SHA-256, which every
decoder checks, so verifying costs one SHA-256 pass over the audio and an Ed25519 check over
a few hundred bytes. v2 headers also carry `seq` (the device's clip counter, from 1) and
`prev_sha256` (the digest of the device's previous envelope; 64 zeros for its first), so an
export can show that nothing between two clips was left out.

An envelope's digest (`envelope_digest`, `Envelope.digest`) is SHA-256 over its signed bytes
followed by its signature: for v1 that is every byte; for v2 every byte but the audio, which
the signed header names by its SHA-256, so the digest still pins every byte without a second
pass over the audio. It is the store's de-duplication key and the link of the v2 chain.

v3 is v2 with the audio sealed on the device to its household's age recipients (`age1…`,
X25519): the payload is the age file (binary format, age-encryption.org/v1) whose plaintext
is the canonical WAV, the header's `audio_sha256` names the ciphertext, and the header lists
the `recipients` it was sealed to. Everything a receiver checks (framing, header, the
ciphertext's hash, the signature over preamble and header, the chain) it checks without
opening the audio: no key on the receiving side can.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from earmark.wire.errors import EarmarkError
from earmark.wire.timestamps import format_utc, is_utc_stamp
from earmark.wire.topics import DEVICE_ID_PATTERN

MAGIC = b"EMRK"
VERSION = 3  # what paired devices send: the audio sealed to the household
VERSIONS = (1, 2, 3)  # what receivers read
NO_PREVIOUS = "0" * 64  # prev_sha256 of a device's first v2 clip
PREAMBLE = struct.Struct(">4sBBII")
SIGNATURE_BYTES = 64
WAV_HEADER_BYTES = 44
MAX_HEADER_BYTES = 4096
# 30 s of 16 kHz mono 16-bit audio plus its header: twice the device's default maximum.
MAX_AUDIO_BYTES = 16_000 * 2 * 30 + WAV_HEADER_BYTES
# v3: the same WAV as an age file: its header (a stanza of ~100 bytes per recipient, the MAC),
# a 16-byte nonce and a 16-byte tag per 64 KiB chunk.
MAX_RECIPIENTS = 8
MAX_SEALED_AUDIO_BYTES = MAX_AUDIO_BYTES + 4096
MAX_ENVELOPE_BYTES = PREAMBLE.size + MAX_HEADER_BYTES + MAX_SEALED_AUDIO_BYTES + SIGNATURE_BYTES
AGE_MAGIC = b"age-encryption.org/v1\n"
# An age X25519 recipient: "age1" and the bech32 of 32 bytes (52 data and 6 checksum characters).
RECIPIENT_PATTERN = re.compile(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$")

CLIP_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
OWNER_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# ASCII digits only (`\d` would also take other scripts' digits); milliseconds on the wire.
CAPTURED_AT_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")
WAKE_WORD_PATTERN = re.compile(r"^[a-z0-9_]{1,64}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CODEC = "pcm_s16le"
TRIGGERS = ("wake_word", "button")


class EnvelopeError(EarmarkError, ValueError):
    """Why an envelope was refused. The only exception the decoder raises."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ClipHeader:
    clip_id: str
    device_id: str
    owner_id: str
    captured_at: str
    duration_ms: int
    sample_rate: int
    channels: int
    sample_width: int
    codec: str
    trigger: str
    wake_word: str | None
    wake_score: float | None
    audio_sha256: str
    seq: int | None = None  # v2 and v3: the device's clip counter, from 1
    prev_sha256: str | None = None  # v2 and v3: SHA-256 of the device's previous envelope
    recipients: tuple[str, ...] | None = None  # v3 only: the age recipients the audio is sealed to

    @property
    def version(self) -> int:
        return 1 if self.seq is None else 2 if self.recipients is None else 3

    @property
    def sealed(self) -> bool:
        """Is the audio the household's age ciphertext (v3), not a plain WAV?"""
        return self.recipients is not None

    def to_json_bytes(self) -> bytes:
        fields = asdict(self)
        if self.version == 1:
            del fields["seq"], fields["prev_sha256"]
        if self.recipients is None:
            del fields["recipients"]
        else:
            fields["recipients"] = list(self.recipients)
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class Envelope:
    header: ClipHeader
    header_bytes: bytes
    audio: memoryview  # a view into the decoded bytes
    signature: bytes
    signed_bytes: bytes | memoryview

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """Whether the signature is `public_key`'s over the signed bytes."""
        return signed_by(public_key, self.signed_bytes, self.signature)

    @cached_property
    def digest(self) -> str:
        """The envelope's digest (see the module docstring)."""
        return signed_digest(self.signed_bytes, self.signature)


def signed_by(public_key: Ed25519PublicKey, signed: bytes | memoryview, signature: bytes) -> bool:
    """Whether `signature` is `public_key`'s over `signed`. Checked by libsodium, which verifies
    RFC 8032 Ed25519 in half the time OpenSSL takes (and releases the GIL)."""
    try:
        crypto_sign_open(signature + bytes(signed), public_key.public_bytes_raw())
    except BadSignatureError:
        return False
    return True


def format_captured_at(moment: datetime) -> str:
    return format_utc(moment, places=3)


def encode_envelope(header: ClipHeader, audio: bytes, key: Ed25519PrivateKey) -> bytes:
    """Frame and sign a clip: v3 when the header names recipients (`audio` is then the age
    ciphertext of the WAV), v2 when it carries seq and prev_sha256, else v1. Refuses
    anything the decoder would refuse."""
    header_bytes = header.to_json_bytes()
    preamble = PREAMBLE.pack(MAGIC, header.version, 0, len(header_bytes), len(audio))
    signature = key.sign(preamble + header_bytes if header.version >= 2 else preamble + header_bytes + audio)
    signed = preamble + header_bytes + audio + signature
    decode_envelope(signed)  # one definition of "valid": the decoder's
    return signed


def reassemble(header_bytes: bytes, audio: bytes | memoryview, signature: bytes) -> bytes:
    """The envelope bytes from its three parts (as an export keeps them), for decoding and
    verifying again. The version follows from the header: v2 and v3 headers hold `seq`, only
    v3 headers `recipients`."""
    version = 3 if b'"recipients":' in header_bytes else 2 if b'"seq":' in header_bytes else 1
    return b"".join((PREAMBLE.pack(MAGIC, version, 0, len(header_bytes), len(audio)), header_bytes, audio, signature))


def envelope_digest(envelope: bytes) -> str:
    """The digest of an envelope already known to be well framed (one this side encoded or
    decoded): what the device's next v2 clip names as `prev_sha256`."""
    view = memoryview(envelope)
    signed_end = len(view) - SIGNATURE_BYTES
    if view[4] >= 2:
        signed_end = PREAMBLE.size + PREAMBLE.unpack_from(view)[3]
    return signed_digest(view[:signed_end], view[-SIGNATURE_BYTES:])


def signed_digest(signed: bytes | memoryview, signature: bytes | memoryview) -> str:
    """SHA-256 over an envelope's signed bytes and its signature: the envelope's digest."""
    digest = hashlib.sha256(signed)
    digest.update(signature)
    return digest.hexdigest()


def decode_envelope(data: bytes, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
    """Strictly parse an envelope. Checks framing, header types and patterns, and that the
    audio is the WAV the header describes. Does not check the signature (the caller knows
    which key should have made it): call `Envelope.verify`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EnvelopeError("malformed", "envelope is not bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise EnvelopeError("oversize", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < PREAMBLE.size + SIGNATURE_BYTES:
        raise EnvelopeError("malformed", f"{len(data)} bytes is too short for an envelope")
    magic, version, flags, header_len, audio_len = PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError("malformed", "bad magic")
    if version not in VERSIONS:
        raise EnvelopeError("unknown_version", f"envelope version {version} (this reads 1, 2 and 3)")
    if flags != 0:
        raise EnvelopeError("malformed", f"reserved flags {flags:#x} are set")
    if header_len > MAX_HEADER_BYTES:
        raise EnvelopeError("oversize", f"header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    audio_max = MAX_SEALED_AUDIO_BYTES if version == 3 else MAX_AUDIO_BYTES
    if audio_len > audio_max:
        raise EnvelopeError("oversize", f"audio of {audio_len} bytes exceeds {audio_max}")
    expected = PREAMBLE.size + header_len + audio_len + SIGNATURE_BYTES
    if len(data) != expected:
        raise EnvelopeError("malformed", f"length {len(data)} does not match framing ({expected})")
    header_end = PREAMBLE.size + header_len
    audio_end = header_end + audio_len
    header_bytes = data[PREAMBLE.size:header_end]
    view = memoryview(data)  # the audio (and v1's signed bytes) are views: 160 KB not copied again
    audio = view[header_end:audio_end]
    header = parse_header(header_bytes, version)
    _check_audio(header, audio)
    signed = data[:header_end] if version >= 2 else view[:audio_end]
    return Envelope(header, header_bytes, audio, data[audio_end:], signed)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EnvelopeError("malformed", f"header repeats key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise EnvelopeError("malformed", f"header holds {name}")


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "clip_id": (str,),
    "device_id": (str,),
    "owner_id": (str,),
    "captured_at": (str,),
    "duration_ms": (int,),
    "sample_rate": (int,),
    "channels": (int,),
    "sample_width": (int,),
    "codec": (str,),
    "trigger": (str,),
    "wake_word": (str, type(None)),
    "wake_score": (float, type(None)),
    "audio_sha256": (str,),
}
_V2_FIELD_TYPES: dict[str, tuple[type, ...]] = {**_FIELD_TYPES, "seq": (int,), "prev_sha256": (str,)}
_V3_FIELD_TYPES: dict[str, tuple[type, ...]] = {**_V2_FIELD_TYPES, "recipients": (list,)}
_FIELDS_OF = {1: _FIELD_TYPES, 2: _V2_FIELD_TYPES, 3: _V3_FIELD_TYPES}
MAX_SEQ = 2**53  # exact in every JSON reader


# One decoder for every header (json.loads with hooks would build a new one per call).
_HEADER_JSON = json.JSONDecoder(object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)


def parse_header(header_bytes: bytes, version: int) -> ClipHeader:
    """A header as signed, parsed and checked field by field (EnvelopeError if not valid)."""
    try:
        raw = _HEADER_JSON.decode(header_bytes.decode("ascii"))
    except EnvelopeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError("malformed", f"header is not ASCII JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise EnvelopeError("malformed", "header is not a JSON object")
    field_types = _FIELDS_OF[version]
    if set(raw) != set(field_types):
        missing = sorted(set(field_types) - set(raw))
        extra = sorted(set(raw) - set(field_types))
        raise EnvelopeError("malformed", f"header keys differ (missing {missing}, unknown {extra})")
    for name, types in field_types.items():
        value = raw[name]
        # bool is an int subclass; JSON true must never pass for a number.
        if isinstance(value, bool) or type(value) not in types:
            raise EnvelopeError("malformed", f"header field {name} has type {type(value).__name__}")
    if "recipients" in raw:
        recipients = raw["recipients"]
        if not 1 <= len(recipients) <= MAX_RECIPIENTS or not all(
                isinstance(r, str) and RECIPIENT_PATTERN.fullmatch(r) for r in recipients):
            raise EnvelopeError("malformed", f"header field recipients must list 1..{MAX_RECIPIENTS} age1… "
                                             "X25519 recipients")
        if len(set(recipients)) != len(recipients) or recipients != sorted(recipients):
            raise EnvelopeError("malformed", "header field recipients must be sorted and distinct")
        raw["recipients"] = tuple(recipients)
    header = ClipHeader(**raw)
    _check_header_values(header)
    return header


def _check_header_values(h: ClipHeader) -> None:
    def bad(field: str, why: str) -> EnvelopeError:
        return EnvelopeError("malformed", f"header field {field} {why}")

    if not CLIP_ID_PATTERN.fullmatch(h.clip_id):
        raise bad("clip_id", "is not a lowercase UUID4")
    if not DEVICE_ID_PATTERN.fullmatch(h.device_id):
        raise bad("device_id", "does not match the device id pattern")
    if not OWNER_ID_PATTERN.fullmatch(h.owner_id):
        raise bad("owner_id", "is not a lowercase UUID")
    if not CAPTURED_AT_PATTERN.fullmatch(h.captured_at):
        raise bad("captured_at", "is not YYYY-MM-DDTHH:MM:SS.mmmZ")
    if not is_utc_stamp(h.captured_at):
        raise bad("captured_at", "is not a real UTC time")
    if h.sample_rate != 16_000 or h.channels != 1 or h.sample_width != 2 or h.codec != CODEC:
        raise bad("format", "must be 16000 Hz, 1 channel, 2 bytes, pcm_s16le")
    if not 0 <= h.duration_ms <= 30_000:
        raise bad("duration_ms", "is outside 0..30000")
    if h.trigger not in TRIGGERS:
        raise bad("trigger", f"is not one of {TRIGGERS}")
    if h.trigger == "wake_word":
        if h.wake_word is None or not WAKE_WORD_PATTERN.fullmatch(h.wake_word):
            raise bad("wake_word", "must name the wake word when trigger is wake_word")
        if h.wake_score is None or not 0.0 <= h.wake_score <= 1.0:
            raise bad("wake_score", "must be within 0..1 when trigger is wake_word")
    elif h.wake_word is not None or h.wake_score is not None:
        raise bad("wake_word", "must be null when trigger is button")
    if not SHA256_PATTERN.fullmatch(h.audio_sha256):
        raise bad("audio_sha256", "is not 64 lowercase hex digits")
    if h.seq is not None and not 1 <= h.seq <= MAX_SEQ:
        raise bad("seq", f"is outside 1..{MAX_SEQ}")
    if h.prev_sha256 is not None and not SHA256_PATTERN.fullmatch(h.prev_sha256):
        raise bad("prev_sha256", "is not 64 lowercase hex digits")


def _check_audio(h: ClipHeader, audio: memoryview) -> None:
    if hashlib.sha256(audio).hexdigest() != h.audio_sha256:
        raise EnvelopeError("audio_hash", "audio does not match audio_sha256")
    if h.sealed:  # the household's ciphertext: its framing is all a receiver can see
        if audio[:len(AGE_MAGIC)] != AGE_MAGIC:
            raise EnvelopeError("malformed", "sealed audio is not an age file")
        if len(audio) < WAV_HEADER_BYTES + h.duration_ms * 32 - 32:
            raise EnvelopeError("malformed", "sealed audio is shorter than its duration")
        return
    if len(audio) < WAV_HEADER_BYTES:
        raise EnvelopeError("malformed", "audio is shorter than a WAV header")
    data_len = len(audio) - WAV_HEADER_BYTES
    expected = wav_header(data_len)
    if audio[:WAV_HEADER_BYTES] != expected:
        raise EnvelopeError("malformed", "audio is not a canonical 16 kHz mono 16-bit PCM WAV")
    if data_len % 2:
        raise EnvelopeError("malformed", "audio holds a partial sample")
    if abs(data_len // 2 * 1000 // 16_000 - h.duration_ms) > 1:
        raise EnvelopeError("malformed", "duration_ms does not match the audio length")


def wav_header(data_len: int, rate: int = 16_000, channels: int = 1, width: int = 2) -> bytes:
    """The canonical 44-byte RIFF/WAVE header for PCM data of `data_len` bytes."""
    return (
        b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * width,
                                channels * width, width * 8)
        + b"data" + struct.pack("<I", data_len)
    )


def wav_bytes(pcm: bytes) -> bytes:
    return wav_header(len(pcm)) + pcm


def audio_sha256(audio: bytes) -> str:
    return hashlib.sha256(audio).hexdigest()


def public_key_text(key: Ed25519PublicKey) -> str:
    """A device public key as one copy-pasteable word: `ed25519:` + base64 of the raw key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    prefix = "ed25519:"
    if not text.startswith(prefix):
        raise ValueError("a device public key starts with 'ed25519:'")
    try:
        raw = base64.b64decode(text[len(prefix):], validate=True)
    except binascii.Error:
        raise ValueError("the device public key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)
