"""The device's clip chain (wire v2): each clip carries `seq`, one more than the last, and
`prev_sha256`, the digest of the last envelope (wire/envelope.py), so an export can prove
nothing between two clips went missing.

The chain advances only once a clip is durably in the spool (a clip the spool refused never
existed). It lives in <data-dir>/chain.json, written atomically after each spooled clip;
a crash between the spool write and this one is repaired at start from the spool itself,
which holds the newest clips until the cloud has them. An unreadable chain file is said in
one warning and the chain goes on from what the spool shows: the device keeps recording,
and verify-export will show the break (two clips at one position), which is the truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from earmark.runtime.durable import write_file
from earmark.wire.envelope import NO_PREVIOUS, SHA256_PATTERN, EnvelopeError, decode_envelope, envelope_digest

log = logging.getLogger(__name__)


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
                seq, digest = saved["seq"], saved["sha256"]
                if type(seq) is not int or seq < 0 or not SHA256_PATTERN.fullmatch(str(digest)):
                    raise ValueError("not a chain position")
                self.last_seq, self.last_sha256 = seq, str(digest)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.warning("the clip chain in %s is unreadable (%s); going on from the spool: exports will "
                            "show a break in this device's chain here", path, type(exc).__name__)
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
