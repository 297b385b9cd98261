"""Quarantine: every rejected payload is kept, sealed under the quarantine key and tied to
no owner, with the reason it was refused. The same bytes arriving again (a redelivery)
are recorded once."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloud.crypto import open_sealed, quarantine_aad, seal
from cloud.db import utc_now

if TYPE_CHECKING:
    from cloud.store import Store


@dataclass(frozen=True)
class QuarantineRow:
    quarantine_id: str
    received_at: str
    topic: str
    reason: str
    detail: str
    envelope_sha256: str
    envelope_bytes: int
    blob_path: str


class Quarantine:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def put(self, topic: str, reason: str, detail: str, payload: bytes) -> tuple[str, bool]:
        """Returns (quarantine id, True if new)."""
        digest = hashlib.sha256(payload).hexdigest()
        existing = self.db.query("SELECT quarantine_id FROM quarantine WHERE envelope_sha256 = ?", (digest,))
        if existing:
            return str(existing[0]["quarantine_id"]), False
        qid = str(uuid.uuid4())
        relative = f"quarantine/{qid}.bin"
        self.store.write_blob(self.store.data_dir / relative,
                              seal(self.store.quarantine_key(), payload, quarantine_aad(qid)))
        with self.store.write() as cur:
            # Another ingester may be quarantining the same redelivered bytes at this moment.
            new = cur.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                              "ON CONFLICT (envelope_sha256) DO NOTHING",
                              (qid, utc_now(), topic[:300], reason, detail[:1000], digest, len(payload),
                               relative)).rowcount
            if new:
                self.store.audit.append(cur, "clip_quarantined", detail={
                    "quarantine_id": qid, "reason": reason, "topic": topic[:300]})
        if not new:
            (self.store.data_dir / relative).unlink(missing_ok=True)
            first = self.db.query("SELECT quarantine_id FROM quarantine WHERE envelope_sha256 = ?", (digest,))
            return str(first[0]["quarantine_id"]), False
        return qid, True

    def all(self) -> list[QuarantineRow]:
        return [QuarantineRow(**dict(r)) for r in self.db.query("SELECT * FROM quarantine ORDER BY received_at")]

    def get(self, quarantine_id: str) -> QuarantineRow | None:
        rows = self.db.query("SELECT * FROM quarantine WHERE quarantine_id = ?", (quarantine_id,))
        return QuarantineRow(**dict(rows[0])) if rows else None

    def payload(self, row: QuarantineRow) -> bytes:
        sealed = (self.store.data_dir / row.blob_path).read_bytes()
        return open_sealed(self.store.quarantine_key(), sealed, quarantine_aad(row.quarantine_id))

    def purge(self, quarantine_ids: list[str]) -> int:
        rows = [r for r in (self.get(q) for q in quarantine_ids) if r is not None]
        with self.store.write() as cur:
            for row in rows:
                cur.execute("DELETE FROM quarantine WHERE quarantine_id = ?", (row.quarantine_id,))
                self.store.audit.append(cur, "quarantine_purged", detail={"quarantine_id": row.quarantine_id})
        for row in rows:
            (self.store.data_dir / row.blob_path).unlink(missing_ok=True)
        return len(rows)
