"""One module owns the UTC timestamp format, for the wire and the store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from earmark.wire.envelope import EnvelopeError, encode_envelope
from earmark.wire.timestamps import format_utc, is_utc_stamp, parse_utc, utc_now
from tests.unit.test_wire_format import example_audio, example_header


def test_a_stamp_round_trips_in_utc_whatever_the_zone_it_came_in() -> None:
    moment = datetime(2026, 11, 23, 10, 5, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_utc(moment) == "2026-11-23T08:05:07.123Z"
    assert format_utc(moment, places=6) == "2026-11-23T08:05:07.123456Z"
    assert parse_utc(format_utc(moment, places=6)) == moment.astimezone(UTC)
    assert parse_utc(utc_now()) <= datetime.now(UTC)


@pytest.mark.parametrize("text", [
    "2026-11-23T08:05:07Z", "2026-11-23 08:05:07.123Z", "2026-02-30T08:05:07.123Z", "2026-11-23T08:05:07.123",
    "\u0662\u0660\u0662\u0666-11-23T08:05:07.123Z",  # Arabic-Indic digits match \\d, not our format
    "2026-11-23T08:05:07.123Z\n",
])
def test_anything_else_is_not_a_stamp(text: str) -> None:
    assert not is_utc_stamp(text)
    with pytest.raises(ValueError):
        parse_utc(text)


def test_an_envelope_with_non_ascii_digits_in_its_capture_time_is_malformed() -> None:
    header = replace(example_header(), captured_at="2026-11-23T08:05:0\u0667.123Z")  # ARABIC-INDIC DIGIT SEVEN
    with pytest.raises(EnvelopeError) as caught:  # the encoder checks with the decoder's rules
        encode_envelope(header, example_audio(), Ed25519PrivateKey.generate())
    assert caught.value.reason == "malformed" and "captured_at" in caught.value.detail
