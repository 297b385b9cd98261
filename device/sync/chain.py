"""The device's clip chain (wire v2): each clip carries `seq`, one more than the last, and
`prev_sha256`, the SHA-256 of the last envelope, so an export can prove nothing between two
clips went missing.

The chain advances only once a clip is durably in the spool (a clip the spool refused never
existed). It lives in <data-dir>/chain.json, written atomically after each spooled clip;
a crash between the spool write and this one is repaired at start from the spool itself,
which holds the newest clips until the cloud has them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from earmark.wire.durable import write_file
from earmark.wire.envelope import NO_PREVIOUS, EnvelopeError, decode_envelope, envelope_digest


@dataclass(frozen=True)
class Link:
    seq: int  # the next clip's
    prev_sha256: str


class Chain:
    def __init__(self, path: Path | None, spooled: Iterable[bytes] = ()) -> None:
        """`path` None keeps the chain in memory only (simulated devices in tests and benches)."""
        self.path = path
        self.last_seq, self.last_sha256 = 0, NO_PREVIOUS
        if path is not None and path.exists():
            try:
                saved = json.loads(path.read_text())
                self.last_seq, self.last_sha256 = int(saved["seq"]), str(saved["sha256"])
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: the spool below is the evidence left
        for envelope in spooled:
            try:
                header = decode_envelope(envelope).header
            except EnvelopeError:
                continue
            if header.seq is not None and header.seq > self.last_seq:
                self.last_seq, self.last_sha256 = header.seq, envelope_digest(envelope)

    def next(self) -> Link:
        return Link(self.last_seq + 1, self.last_sha256)

    def advance(self, seq: int, envelope: bytes) -> None:
        """The clip `seq` is in the spool: the next one follows it."""
        self.last_seq, self.last_sha256 = seq, envelope_digest(envelope)
        if self.path is not None:
            write_file(self.path, json.dumps({"seq": self.last_seq, "sha256": self.last_sha256}).encode())
