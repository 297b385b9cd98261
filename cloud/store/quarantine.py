"""Quarantine: every rejected payload is kept, sealed under the quarantine key and tied to
no owner, with the reason it was refused. The same bytes arriving again (a redelivery)
are recorded once."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.blobs import Blobs, quarantine_blob
from earmark.cloud.store.crypto import open_sealed, quarantine_aad, seal
from earmark.cloud.store.database import Database
from earmark.cloud.store.keys import Keys
from earmark.wire.timestamps import utc_now


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
    def __init__(self, db: Database, keys: Keys, blobs: Blobs, audit: AuditLog) -> None:
        self.db, self.keys, self.blobs, self.audit = db, keys, blobs, audit

    def put(self, topic: str, reason: str, detail: str, payload: bytes) -> tuple[str, bool]:
        """Returns (quarantine id, True if new)."""
        digest = hashlib.sha256(payload).hexdigest()
        existing = self.db.query("SELECT quarantine_id FROM quarantine WHERE envelope_sha256 = ?", (digest,))
        if existing:
            return str(existing[0]["quarantine_id"]), False
        qid = str(uuid.uuid4())
        relative = quarantine_blob(qid)
        self.blobs.write(relative, seal(self.keys.quarantine_key(), payload, quarantine_aad(qid)))
        with self.audit.write() as cur:
            # Another ingester may be quarantining the same redelivered bytes at this moment.
            new = cur.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                              "ON CONFLICT (envelope_sha256) DO NOTHING",
                              (qid, utc_now(), topic[:300], reason, detail[:1000], digest, len(payload),
                               relative)).rowcount
            if new:
                self.audit.append(cur, "clip_quarantined", detail={
                    "quarantine_id": qid, "reason": reason, "topic": topic[:300]})
        if not new:
            self.blobs.remove(relative)
            first = self.db.query("SELECT quarantine_id FROM quarantine WHERE envelope_sha256 = ?", (digest,))
            return str(first[0]["quarantine_id"]), False
        return qid, True

    def all(self) -> list[QuarantineRow]:
        return [QuarantineRow(**dict(r)) for r in self.db.query("SELECT * FROM quarantine ORDER BY received_at")]

    def get(self, quarantine_id: str) -> QuarantineRow | None:
        rows = self.db.query("SELECT * FROM quarantine WHERE quarantine_id = ?", (quarantine_id,))
        return QuarantineRow(**dict(rows[0])) if rows else None

    def payload(self, row: QuarantineRow) -> bytes:
        sealed = self.blobs.read(row.blob_path)
        return open_sealed(self.keys.quarantine_key(), sealed, quarantine_aad(row.quarantine_id))

    def purge(self, quarantine_ids: list[str]) -> int:
        rows = [r for r in (self.get(q) for q in quarantine_ids) if r is not None]
        with self.audit.write() as cur:
            for row in rows:
                cur.execute("DELETE FROM quarantine WHERE quarantine_id = ?", (row.quarantine_id,))
                self.audit.append(cur, "quarantine_purged", detail={"quarantine_id": row.quarantine_id})
        for row in rows:
            self.blobs.remove(row.blob_path)
        return len(rows)

    def blob_paths(self) -> set[str]:
        """Where the quarantine rows say their blobs are (for the sweep)."""
        return {r["blob_path"] for r in self.db.query("SELECT blob_path FROM quarantine")}
