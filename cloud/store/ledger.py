"""Ledgers kept outside the database (beside the master key, not in the data dir), so that a
database or data dir restored from a backup taken before a deletion never yields what was
deleted again: each is applied whenever the store is opened for work.

- The erasure ledger: which owners were erased (owner/erasure.py: `apply_erasure_ledger`).
- The deletion ledger: which clips their owners (or retention) deleted, by id
  (owner/erasure.py: `apply_deletion_ledger`). A person who deleted a recording never sees it
  again, whatever the operator restores.

One line per entry, each with an HMAC-SHA256 under a key derived from the master key over the
entry and the MAC before it: an edited, reordered or inserted line breaks the chain and the
store refuses to start. They hold owner ids, clip ids and times only, never a name or a key.
Appends take the file's lock and read only its last line, so an append costs the same however
long the ledger has grown; reading checks every MAC.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earmark.cloud.store.database import StoreError
from earmark.runtime.durable import write_file
from earmark.wire.errors import EarmarkError

GENESIS = "0" * 64


class LedgerMoved(EarmarkError, LookupError):
    """The entry a reader was told to go on from is not in the ledger as it was (the reader
    then reads it whole): never escapes the ledger's readers."""


class Ledger:
    """An append-only file of MAC-chained JSON entries with the fields FIELDS."""

    NAME: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]
    DOMAIN: ClassVar[bytes]

    def __init__(self, path: Path, master_key: bytes) -> None:
        self.path = Path(path)
        self._key = hmac.new(master_key, self.DOMAIN, hashlib.sha256).digest()

    def _mac(self, prev: str, values: list[Any]) -> str:
        body = json.dumps([prev, *values], separators=(",", ":")).encode()
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def records(self, after: tuple[int, str] | None = None) -> Iterator[tuple[int, str, list[Any]]]:
        """(line number, MAC, field values) of every entry, each MAC checked (StoreError if the
        ledger was tampered with). With `after` = (line, MAC) of an entry checked before, only
        the entries after it, the chain checked from it on (the lines before are not parsed);
        LedgerMoved if that line is not there with that MAC (the ledger was rewritten since)."""
        if not self.path.exists():
            if after is not None:
                raise LedgerMoved
            return
        prev, start = GENESIS, after[0] if after is not None else 0
        with open(self.path) as file:
            for number, line in enumerate(file, start=1):
                if number < start:
                    continue
                try:
                    record = json.loads(line)
                    values = [record[f] for f in self.FIELDS]
                    mac = str(record["mac"])
                except (ValueError, KeyError, TypeError):
                    raise StoreError(f"{self.NAME} {self.path} line {number} is not a ledger entry: "
                                     "restore the ledger from its own backup") from None
                if number == start:  # the mark: the chain goes on from its MAC
                    if after is None or not hmac.compare_digest(mac, after[1]):
                        raise LedgerMoved
                    prev = mac
                    continue
                if not hmac.compare_digest(mac, self._mac(prev, values)):
                    raise StoreError(f"{self.NAME} {self.path} line {number} was altered (or the master key is "
                                     "not the one it was written with)")
                yield number, mac, values
                prev = mac
        if start and prev == GENESIS:  # the mark's line is gone: a shorter, older ledger
            raise LedgerMoved

    def check(self) -> None:
        for _ in self.records():
            pass

    def _append(self, entries: list[list[Any]]) -> None:
        """Append entries durably, chained to the last line (read under the file's lock)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            prev = _last_mac(fd)
            lines = []
            for values in entries:
                prev = self._mac(prev, values)
                lines.append(json.dumps({**dict(zip(self.FIELDS, values, strict=True)), "mac": prev}) + "\n")
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def rewrap(self, master_key: bytes) -> Ledger:
        """The same entries under another master key (for key rotation), written atomically."""
        moved = type(self)(self.path, master_key)
        prev, lines = GENESIS, []
        for _, _, values in self.records():
            prev = moved._mac(prev, values)
            lines.append(json.dumps({**dict(zip(self.FIELDS, values, strict=True)), "mac": prev}) + "\n")
        if self.path.exists():
            write_file(self.path, "".join(lines).encode())
        return moved


def _last_mac(fd: int) -> str:
    """The MAC on the file's last line (GENESIS when empty), reading back from its end."""
    size = os.fstat(fd).st_size
    if not size:
        return GENESIS
    chunk = min(size, 64 * 1024)
    while True:
        tail = os.pread(fd, chunk, size - chunk)
        lines = tail.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or chunk == size:
            try:
                return str(json.loads(lines[-1])["mac"])
            except (ValueError, KeyError, TypeError):
                raise StoreError("a ledger's last line is not a ledger entry: restore it from its own backup") from None
        chunk = min(size, chunk * 4)


@dataclass(frozen=True)
class ErasureEntry:
    owner_id: str
    erased_at: str


class ErasureLedger(Ledger):
    NAME = "erasure ledger"
    FIELDS = ("owner_id", "erased_at")
    DOMAIN = b"earmark/v1/erasure-ledger"

    def entries(self) -> list[ErasureEntry]:
        return [ErasureEntry(str(v[0]), str(v[1])) for _, _, v in self.records()]

    def record(self, owner_id: str, erased_at: str) -> None:
        """Append an erasure, durably, before the erasure itself starts (so a crash part-way
        leaves an erasure that the next start completes)."""
        if not any(e.owner_id == owner_id for e in self.entries()):
            self._append([[owner_id, erased_at]])


@dataclass(frozen=True)
class DeletionEntry:
    line: int
    mac: str
    owner_id: str
    clip_ids: tuple[str, ...]
    deleted_at: str


class DeletionLedger(Ledger):
    NAME = "deletion ledger"
    FIELDS = ("owner_id", "clip_ids", "deleted_at")
    DOMAIN = b"earmark/v1/deletion-ledger"

    def entries(self, after: tuple[int, str] | None = None) -> list[DeletionEntry]:
        """Every deletion, or those after the line `after` = (line, its MAC) if that line is
        still there with that MAC (else all of them: the ledger was rewritten since). Opening
        the store reads it each time: from its mark on, the rest is not parsed again."""
        def read(records: Iterator[tuple[int, str, list[Any]]]) -> list[DeletionEntry]:
            return [DeletionEntry(n, mac, str(v[0]), tuple(str(c) for c in v[1]), str(v[2])) for n, mac, v in records]
        if after is not None:
            try:
                return read(self.records(after))
            except LedgerMoved:
                pass
        return read(self.records())

    def record(self, owner_id: str, clip_ids: list[str], deleted_at: str) -> None:
        """Append a deletion, durably, before the rows go (a crash between leaves a deletion
        that the next start completes)."""
        if clip_ids:
            self._append([[owner_id, sorted(clip_ids), deleted_at]])
