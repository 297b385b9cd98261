"""Fuzzing the envelope parser: whatever the bytes, it returns an envelope or raises its
own rejection error, never anything else."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earmark.wire.envelope import EnvelopeError, decode_envelope
from tests.unit.test_wire_format import example_header, reframe, sample

VALID = sample()


def decodes_or_rejects(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode_envelope(data)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    decodes_or_rejects(data)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_valid_envelopes(edits: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for index, value in edits:
        data[index] = value
    decodes_or_rejects(bytes(data))


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, len(VALID)), st.binary(max_size=64))
def test_truncated_and_extended(cut: int, tail: bytes) -> None:
    decodes_or_rejects(VALID[:cut] + tail)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=2000, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(example_header().__dict__), "x"]), json_values))
def test_well_framed_envelopes_with_arbitrary_headers(changes: dict[str, object]) -> None:
    fields = dict(example_header().__dict__)
    fields.update(changes)
    decodes_or_rejects(reframe(json.dumps(fields).encode()))
