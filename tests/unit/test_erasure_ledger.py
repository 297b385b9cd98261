"""The erasure ledger, outside the database: chained MACs under the master key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from earmark.cloud.store.database import StoreError
from earmark.cloud.store.ledger import DeletionLedger, ErasureEntry, ErasureLedger

KEY, OTHER_KEY = os.urandom(32), os.urandom(32)


def test_entries_round_trip_once_each_and_the_file_is_private(tmp_path: Path) -> None:
    ledger = ErasureLedger(tmp_path / "keys" / "erasures.ledger", KEY)
    ledger.record("6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", "2026-11-23T10:00:00.000000Z")
    ledger.record("6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", "2026-11-23T10:05:00.000000Z")  # already there
    ledger.record("0d2b0e4e-7f6b-4c1a-9f55-2e1c7a9b8d10", "2026-11-23T11:00:00.000000Z")
    assert [e.owner_id[:8] for e in ledger.entries()] == ["6f1d2c3b", "0d2b0e4e"]
    assert oct(ledger.path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("edit", ["change", "reorder", "drop_first", "garbage"])
def test_a_tampered_ledger_stops_the_store(tmp_path: Path, edit: str) -> None:
    ledger = ErasureLedger(tmp_path / "erasures.ledger", KEY)
    for n in range(3):
        ledger.record(f"6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4{n}", "2026-11-23T10:00:00.000000Z")
    lines = ledger.path.read_text().splitlines()
    edited = {"change": [lines[0].replace("3a40", "3a49"), *lines[1:]], "reorder": [lines[1], lines[0], lines[2]],
              "drop_first": lines[1:], "garbage": [*lines, "{not json"]}[edit]
    ledger.path.write_text("\n".join(edited) + "\n")
    with pytest.raises(StoreError, match="erasure ledger"):
        ledger.entries()


def test_rotation_rewrites_it_under_the_new_key(tmp_path: Path) -> None:
    ledger = ErasureLedger(tmp_path / "erasures.ledger", KEY)
    ledger.record("6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", "2026-11-23T10:00:00.000000Z")
    moved = ledger.rewrap(OTHER_KEY)
    assert moved.entries() == [ErasureEntry("6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", "2026-11-23T10:00:00.000000Z")]
    with pytest.raises(StoreError):
        ErasureLedger(tmp_path / "erasures.ledger", KEY).entries()


def test_the_deletion_ledger_is_read_on_from_its_mark_and_wholly_when_the_mark_is_gone(tmp_path: Path) -> None:
    """Opening the store reads the deletion ledger from the database's mark on; a ledger
    rewritten since (a master key rotation) or shorter than the mark (an older copy) is read
    whole, so no deletion is missed."""
    ledger = DeletionLedger(tmp_path / "deletions.ledger", KEY)
    for n in range(4):
        ledger.record("6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", [f"clip-{n}"], f"2026-11-23T10:00:0{n}.000000Z")
    every = ledger.entries()
    assert [e.clip_ids for e in every] == [("clip-0",), ("clip-1",), ("clip-2",), ("clip-3",)]
    mark = (every[1].line, every[1].mac)
    assert [e.clip_ids for e in ledger.entries(after=mark)] == [("clip-2",), ("clip-3",)]
    assert ledger.entries(after=(every[-1].line, every[-1].mac)) == []
    moved = ledger.rewrap(OTHER_KEY)
    assert isinstance(moved, DeletionLedger) and len(moved.entries(after=mark)) == 4  # new MACs: all of them
    lines = (tmp_path / "deletions.ledger").read_text().splitlines(keepends=True)
    (tmp_path / "deletions.ledger").write_text("".join(lines[:1]))
    assert len(moved.entries(after=(3, every[2].mac))) == 1  # shorter than the mark: all of it
