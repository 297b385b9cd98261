"""The erasure ledger: which owners were erased, kept outside the database (beside the master
key, not in the data dir), so that a database or data-dir restored from a backup taken before
an erasure never yields the erased owner again: the ledger is applied whenever the store is
opened for work (owner/erasure.py: `apply_erasure_ledger`).

One line per erasure, each with an HMAC-SHA256 under a key derived from the master key over
the line and the MAC before it: an edited, reordered or inserted line breaks the chain and
the store refuses to start. It holds owner ids and times only, never a name or a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from earmark.cloud.store.database import StoreError
from earmark.runtime.durable import write_file

GENESIS = "0" * 64


@dataclass(frozen=True)
class ErasureEntry:
    owner_id: str
    erased_at: str


class ErasureLedger:
    def __init__(self, path: Path, master_key: bytes) -> None:
        self.path = Path(path)
        self._key = hmac.new(master_key, b"earmark/v1/erasure-ledger", hashlib.sha256).digest()

    def _mac(self, prev: str, entry: ErasureEntry) -> str:
        body = json.dumps([prev, entry.owner_id, entry.erased_at], separators=(",", ":")).encode()
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def entries(self) -> list[ErasureEntry]:
        """Every recorded erasure, each MAC checked (StoreError if the ledger was tampered with)."""
        if not self.path.exists():
            return []
        found, prev = [], GENESIS
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                record = json.loads(line)
                entry = ErasureEntry(str(record["owner_id"]), str(record["erased_at"]))
                mac = str(record["mac"])
            except (ValueError, KeyError, TypeError):
                raise StoreError(f"erasure ledger {self.path} line {number} is not a ledger entry: "
                                 "restore the ledger from its own backup") from None
            if not hmac.compare_digest(mac, self._mac(prev, entry)):
                raise StoreError(f"erasure ledger {self.path} line {number} was altered (or the master key is "
                                 "not the one it was written with)")
            found.append(entry)
            prev = mac
        return found

    def record(self, owner_id: str, erased_at: str) -> None:
        """Append an erasure, durably, before the erasure itself starts (so a crash part-way
        leaves an erasure that the next start completes)."""
        entries = self.entries()
        if any(e.owner_id == owner_id for e in entries):
            return
        prev = GENESIS
        for entry in entries:
            prev = self._mac(prev, entry)
        entry = ErasureEntry(owner_id, erased_at)
        line = json.dumps({"owner_id": owner_id, "erased_at": erased_at, "mac": self._mac(prev, entry)})
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def rewrap(self, master_key: bytes) -> ErasureLedger:
        """The same entries under another master key (for key rotation), written atomically."""
        entries = self.entries()
        moved = ErasureLedger(self.path, master_key)
        prev, lines = GENESIS, []
        for entry in entries:
            prev = moved._mac(prev, entry)
            lines.append(json.dumps({"owner_id": entry.owner_id, "erased_at": entry.erased_at, "mac": prev}))
        write_file(self.path, "".join(f"{line}\n" for line in lines).encode())
        return moved
