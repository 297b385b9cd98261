"""The contract shared by the device and the cloud, as plain data and pure functions with no
I/O: topics, receipts, the signed clip envelope, device public keys and pairing bundles,
the UTC timestamp format, and the error root. What both sides run on besides (the command
runner, settings, durable writes, the MQTT client) lives in runtime/, beside it."""

from earmark.wire.bundle import BundleError, PairingBundle, parse_bundle
from earmark.wire.envelope import (
    MAX_ENVELOPE_BYTES,
    ClipHeader,
    Envelope,
    EnvelopeError,
    decode_envelope,
    encode_envelope,
    parse_public_key,
    public_key_text,
)
from earmark.wire.errors import ConfigError, EarmarkError, TransientError, UsageError, exit_code_for
from earmark.wire.receipt import Receipt, ReceiptError, parse_receipt
from earmark.wire.timestamps import format_utc, parse_utc, utc_now
from earmark.wire.topics import (
    TopicError,
    clip_topic,
    device_from_clip_topic,
    device_from_receipt_topic,
    receipt_topic,
    shared_clip_subscription,
    status_topic,
)

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "BundleError",
    "ClipHeader",
    "ConfigError",
    "EarmarkError",
    "Envelope",
    "EnvelopeError",
    "PairingBundle",
    "Receipt",
    "ReceiptError",
    "TopicError",
    "TransientError",
    "UsageError",
    "clip_topic",
    "decode_envelope",
    "device_from_clip_topic",
    "device_from_receipt_topic",
    "encode_envelope",
    "exit_code_for",
    "format_utc",
    "parse_bundle",
    "parse_public_key",
    "parse_receipt",
    "parse_utc",
    "public_key_text",
    "receipt_topic",
    "shared_clip_subscription",
    "status_topic",
    "utc_now",
]
