"""The wire contract held to docs/wire-format.md, and the decoder's strictness."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from earmark.wire import envelope as wire
from earmark.wire.envelope import ClipHeader, EnvelopeError, decode_envelope, encode_envelope
from earmark.wire.receipt import Receipt, ReceiptError, parse_receipt
from earmark.wire.topics import (
    TopicError,
    clip_topic,
    device_from_clip_topic,
    device_from_receipt_topic,
    receipt_topic,
    shared_clip_subscription,
    status_topic,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text()
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def doc_block(label: str) -> str:
    match = re.search(rf"```\w+ {label}\n(.*?)```", DOC, re.S)
    assert match, f"docs/wire-format.md has no {label} block"
    return match.group(1)


def example_header() -> ClipHeader:
    return ClipHeader(**json.loads(doc_block("example-header")))


def example_audio() -> bytes:
    return wire.wav_bytes(bytes.fromhex("0000ff7f0080e803"))


def test_encoder_writes_the_documented_example_bytes() -> None:
    expected = bytes.fromhex("".join(doc_block("example-envelope").split()))
    assert encode_envelope(example_header(), example_audio(), KEY) == expected


def test_decoder_reads_the_documented_example() -> None:
    data = bytes.fromhex("".join(doc_block("example-envelope").split()))
    env = decode_envelope(data)
    assert env.header == example_header()
    assert env.audio == example_audio()
    assert env.verify(wire.parse_public_key("ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="))
    assert data[:14] == struct.pack(">4sBBII", b"EMRK", 1, 0, len(env.header_bytes), len(env.audio))


def test_documented_limits_are_the_code_limits() -> None:
    assert f"at most {wire.MAX_HEADER_BYTES}" in DOC
    assert f"at most {wire.MAX_AUDIO_BYTES}" in DOC
    assert f"at most {wire.MAX_ENVELOPE_BYTES} bytes" in DOC
    assert sorted(wire._FIELD_TYPES) == sorted(json.loads(doc_block("example-header")))
    assert sorted(wire._V2_FIELD_TYPES) == sorted(json.loads(doc_block("example-header-v2")))
    assert sorted(wire._V3_FIELD_TYPES) == sorted(json.loads(doc_block("example-header-v3")))
    assert f"at most {wire.MAX_SEALED_AUDIO_BYTES}" in DOC


def example_v2() -> tuple[ClipHeader, bytes]:
    header = ClipHeader(**json.loads(doc_block("example-header-v2")))
    return header, bytes.fromhex("".join(doc_block("example-envelope-v2").split()))


def test_v2_is_the_documented_bytes_and_chains_to_the_v1_example() -> None:
    header, expected = example_v2()
    assert encode_envelope(header, example_audio(), KEY) == expected
    env = decode_envelope(expected)
    assert env.header == header and env.header.version == 2 and expected[4] == 2
    assert env.verify(KEY.public_key())
    # The signature covers the preamble and header only; the header names the audio's hash.
    assert env.signed_bytes == expected[:14 + len(env.header_bytes)]
    v1 = bytes.fromhex("".join(doc_block("example-envelope").split()))
    assert header.prev_sha256 == wire.envelope_digest(v1)
    assert wire.reassemble(env.header_bytes, env.audio, env.signature) == expected


def test_the_digest_is_the_documented_one_for_both_versions() -> None:
    _, v2 = example_v2()
    v1 = bytes.fromhex("".join(doc_block("example-envelope").split()))
    assert wire.envelope_digest(v1) == hashlib.sha256(v1).hexdigest() == decode_envelope(v1).digest
    signed_end = 14 + len(decode_envelope(v2).header_bytes)  # v2: all but the audio
    assert wire.envelope_digest(v2) == hashlib.sha256(v2[:signed_end] + v2[-64:]).hexdigest()
    assert decode_envelope(v2).digest == wire.envelope_digest(v2)
    assert f"is `{wire.envelope_digest(v2)}`" in DOC


def test_v2_audio_is_covered_through_its_hash_and_the_versions_keep_their_own_keys() -> None:
    _, data = example_v2()
    tampered = bytearray(data)
    tampered[-64 - 1] ^= 1  # the last audio byte: the signature still matches the header...
    with pytest.raises(EnvelopeError) as caught:
        decode_envelope(bytes(tampered))  # ...but the decoder checks the audio's hash first
    assert caught.value.reason == "audio_hash"
    v2_header = example_v2()[0].to_json_bytes()
    for header, version in ((v2_header, 1), (example_header().to_json_bytes(), 2)):
        with pytest.raises(EnvelopeError, match="header keys differ"):
            decode_envelope(reframe(header, version=version))


HOUSEHOLD = "AGE-SECRET-KEY-1PA5838KK9JXNZ3AECS5X86WKLA3X0D8YY6JFSUH472YZPLT2Y85SYGMYUU"  # the doc's test identity


def example_v3() -> tuple[ClipHeader, bytes]:
    raw = json.loads(doc_block("example-header-v3"))
    header = ClipHeader(**{**raw, "recipients": tuple(raw["recipients"])})
    return header, bytes.fromhex("".join(doc_block("example-envelope-v3").split()))


def test_v3_is_the_documented_bytes_sealed_to_the_household_and_chains_to_the_v2_example() -> None:
    """The audio is the documented WAV, sealed with age: the signature covers the header,
    which names the ciphertext's hash and its recipients; only the identity opens it."""
    header, expected = example_v3()
    env = decode_envelope(expected)
    assert env.header == header and env.header.version == 3 and expected[4] == 3 and env.header.sealed
    assert encode_envelope(header, bytes(env.audio), KEY) == expected  # the signature is deterministic
    assert env.verify(KEY.public_key()) and env.signed_bytes == expected[:14 + len(env.header_bytes)]
    assert header.prev_sha256 == wire.envelope_digest(example_v2()[1])
    assert f"is `{wire.envelope_digest(expected)}`" in DOC
    assert example_audio() not in expected  # nothing of the WAV in the clear
    identity = x25519.Identity.from_str(HOUSEHOLD)
    assert header.recipients == (str(identity.to_public()),)
    assert pyrage.decrypt(bytes(env.audio), [identity]) == example_audio()


def v3_header(**changes: object) -> bytes:
    fields = json.loads(doc_block("example-header-v3"))
    fields.update(changes)
    return json.dumps(fields).encode()


def v3_audio() -> bytes:
    return bytes(decode_envelope(example_v3()[1]).audio)


@pytest.mark.parametrize(("header", "audio", "why"), [
    (v3_header(recipients=[]), None, "1..8 age1"),
    (v3_header(recipients=["age1" + "q" * 57]), None, "1..8 age1"),
    (v3_header(recipients=["AGE-SECRET-KEY-1PA5838KK9JXNZ3AECS5X86WKLA3X0D8YY6JFSUH472YZPLT2Y85SYGMYUU"]), None,
     "1..8 age1"),
    (v3_header(recipients="age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"), None, "type str"),
    (v3_header(recipients=["age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"] * 2), None,
     "sorted and distinct"),
    (v3_header(audio_sha256=wire.audio_sha256(example_audio())), example_audio(), "not an age file"),
    (v3_header(duration_ms=1000), None, "shorter than its duration"),
])
def test_a_v3_header_or_sealed_audio_the_contract_forbids_is_malformed(header: bytes, audio: bytes | None,
                                                                        why: str) -> None:
    with pytest.raises(EnvelopeError, match=why) as caught:
        decode_envelope(reframe(header, v3_audio() if audio is None else audio, version=3))
    assert caught.value.reason == "malformed"


def test_a_damaged_ciphertext_is_an_audio_hash_refusal_before_anyone_tries_to_open_it() -> None:
    _, data = example_v3()
    for at in (14 + len(decode_envelope(data).header_bytes) + 40, len(data) - 64 - 1):  # a stanza, the payload
        damaged = bytearray(data)
        damaged[at] ^= 1
        with pytest.raises(EnvelopeError) as caught:
            decode_envelope(bytes(damaged))
        assert caught.value.reason == "audio_hash"


def test_recipients_belong_to_v3_alone() -> None:
    with pytest.raises(EnvelopeError, match="header keys differ"):
        decode_envelope(reframe(v3_header(), v3_audio(), version=2))
    with pytest.raises(EnvelopeError, match="header keys differ"):
        decode_envelope(reframe(example_v2()[0].to_json_bytes(), example_audio(), version=3))


def sample() -> bytes:
    return encode_envelope(example_header(), example_audio(), KEY)


def reframe(header: bytes, audio: bytes | None = None, version: int = 1, flags: int = 0) -> bytes:
    audio = example_audio() if audio is None else audio
    body = struct.pack(">4sBBII", b"EMRK", version, flags, len(header), len(audio)) + header + audio
    return body + KEY.sign(body)


def header_with(**changes: object) -> bytes:
    fields = json.loads(doc_block("example-header"))
    fields.update(changes)
    return json.dumps(fields).encode()


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "malformed"),
    (b"XXXX" + sample()[4:], "malformed"),
    (reframe(header_with(), version=4), "unknown_version"),
    (reframe(header_with(), version=0), "unknown_version"),
    (reframe(header_with(), flags=1), "malformed"),
    (sample() + b"\0", "malformed"),
    (sample()[:-1], "malformed"),
    (b"\0" * (wire.MAX_ENVELOPE_BYTES + 1), "oversize"),
    (reframe(b"{" + b" " * 5000 + b"}"), "oversize"),
    (reframe(header_with(channels=True)), "malformed"),
    (reframe(header_with(duration_ms=0.0)), "malformed"),
    (reframe(header_with(clip_id="1B4E28BA-2FA1-41D2-883F-0016D3CCA427")), "malformed"),
    (reframe(header_with(device_id="a/b")), "malformed"),
    (reframe(header_with(owner_id="+")), "malformed"),
    (reframe(header_with(captured_at="2026-02-30T00:00:00.000Z")), "malformed"),
    (reframe(header_with(sample_rate=48000)), "malformed"),
    (reframe(header_with(wake_word=None)), "malformed"),
    (reframe(header_with(trigger="button")), "malformed"),
    (reframe(header_with(extra=1)), "malformed"),
    (reframe(header_with()[:-1] + b',"clip_id":"x"}'), "malformed"),
    (reframe(header_with(wake_score=float("nan")).replace(b"NaN", b"NaN")), "malformed"),
    (reframe(header_with(), audio=example_audio()[:-2] + b"\1\1"), "audio_hash"),
])
def test_decoder_refuses_what_the_contract_forbids(data: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode_envelope(data)
    assert caught.value.reason == reason


def test_a_bit_flip_anywhere_breaks_the_signature_or_the_parse() -> None:
    data = sample()
    public = KEY.public_key()
    for i in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[i] ^= 0x10
        try:
            env = decode_envelope(bytes(flipped))
        except EnvelopeError:
            continue
        assert not env.verify(public), f"flip at byte {i} still verifies"


def test_another_devices_key_does_not_verify() -> None:
    assert not decode_envelope(sample()).verify(Ed25519PrivateKey.generate().public_key())


def test_encoder_refuses_a_header_the_decoder_would_refuse() -> None:
    from dataclasses import replace

    with pytest.raises(EnvelopeError):
        encode_envelope(replace(example_header(), owner_id="someone-else"), example_audio(), KEY)


def test_topics_round_trip_and_refuse_wildcards() -> None:
    assert clip_topic("kitchen-pi") == "earmark/v1/clips/kitchen-pi"
    assert device_from_clip_topic(clip_topic("kitchen-pi")) == "kitchen-pi"
    assert device_from_receipt_topic(receipt_topic("pi-2")) == "pi-2"
    assert status_topic("pi-2") == "earmark/v1/status/pi-2"
    assert shared_clip_subscription("ingest") == "$share/ingest/earmark/v1/clips/+"
    for bad in ("+", "#", "a/b", "Kitchen", "ab", "-ab", "a" * 64):
        with pytest.raises(TopicError):
            clip_topic(bad)
    with pytest.raises(TopicError):
        device_from_clip_topic("earmark/v1/receipts/kitchen-pi")
    with pytest.raises(TopicError):
        device_from_clip_topic("earmark/v1/clips/kitchen-pi/extra")


def test_receipts_round_trip_and_parse_strictly() -> None:
    r = Receipt("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "rejected", "bad_signature")
    assert parse_receipt(r.encode()) == r
    for bad in (b"[]", b"{}", b"not json", b'{"clip_id":"x","status":"stored","reason":""}',
                r.encode().replace(b"rejected", b"lost"), b" " * 2000):
        with pytest.raises(ReceiptError):
            parse_receipt(bad)


def test_public_key_text_round_trips_and_refuses_junk() -> None:
    text = wire.public_key_text(KEY.public_key())
    assert text == "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    assert wire.public_key_text(wire.parse_public_key(text)) == text
    for bad in ("A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=", "ed25519:!!", "ed25519:AAAA"):
        with pytest.raises(ValueError):
            wire.parse_public_key(bad)
