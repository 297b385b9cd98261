"""The device's clip chain (wire v2) on its own: where it resumes after a restart, a crash
between the spool write and the chain's, and an unreadable chain file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from earmark.device.sync.chain import Chain
from earmark.wire.envelope import NO_PREVIOUS, decode_envelope, envelope_digest
from tests.support.cloudkit import SimDevice

OWNER = "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"


def test_a_new_device_starts_at_one_naming_no_previous_clip(tmp_path: Path) -> None:
    link = Chain(tmp_path / "chain.json").next()
    assert (link.seq, link.prev_sha256) == (1, NO_PREVIOUS)


def test_each_spooled_clip_moves_the_chain_and_a_restart_resumes_after_it(tmp_path: Path) -> None:
    device = SimDevice("porch-pi", OWNER)
    first = device.clip(seed=1, chain=Chain(tmp_path / "chain.json"))
    resumed = Chain(tmp_path / "chain.json").next()
    assert (resumed.seq, resumed.prev_sha256) == (2, envelope_digest(first))
    assert json.loads((tmp_path / "chain.json").read_text()) == {"seq": 1, "sha256": envelope_digest(first)}


@pytest.mark.parametrize("saved", ["{not json", '{"seq": "7", "sha256": "x"}', '{"seq": 3, "sha256": "zz"}', "[]"])
def test_an_unreadable_chain_file_is_one_warning_and_the_spool_carries_on(
        tmp_path: Path, saved: str, caplog: pytest.LogCaptureFixture) -> None:
    device = SimDevice("porch-pi", OWNER)
    spooled = [device.clip(seed=n) for n in range(3)]  # positions 1-3, still in the spool
    (tmp_path / "chain.json").write_text(saved)
    with caplog.at_level(logging.WARNING):
        chain = Chain(tmp_path / "chain.json", spooled=spooled)
    assert [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()] != []
    following = decode_envelope(device.clip(seed=9, chain=chain)).header
    assert (following.seq, following.prev_sha256) == (4, envelope_digest(spooled[-1]))
