"""Quarantine: every rejected payload is kept, stored under no owner, with the reason it was
refused. The same bytes arriving again (a redelivery) are recorded once.

A payload is sealed under the quarantine key mixed with the secrets of the owners it names
(its device's and the one its header claims, where they exist: crypto.py,
`linked_quarantine_key`), so erasing either owner shreds it with their other data, a copy in
a backup included. Erasure deletes the owner's items blobs first, then rows, so a crash in
between leaves rows that the next `erase` finishes, not files nobody accounts for."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.blobs import BlobStore, quarantine_blob
from earmark.cloud.store.crypto import CryptoError, linked_quarantine_key, open_sealed, quarantine_aad, seal
from earmark.cloud.store.database import Database, in_list
from earmark.cloud.store.ddl import insert
from earmark.cloud.store.keys import Keys
from earmark.wire.timestamps import format_utc, utc_now

BY_DIGEST = "SELECT quarantine_id FROM quarantine WHERE envelope_sha256 = :digest"
BY_ID_DELETE = "DELETE FROM quarantine WHERE quarantine_id = :quarantine_id"


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
    device_id: str | None = None  # the topic's device, if the topic named one
    claimed_owner_id: str | None = None  # the owner the header claims, if it parsed
    seq: int | None = None  # its wire v2 chain position, if its signature verified


@dataclass(frozen=True)
class QuarantineQuota:
    """What one device may put in quarantine per rolling day; beyond it nothing is kept."""

    items_per_day: int = 100
    bytes_per_day: int = 20 * 1024 * 1024


class Quarantine:
    def __init__(self, db: Database, keys: Keys, blobs: BlobStore, audit: AuditLog) -> None:
        self.db, self.keys, self.blobs, self.audit = db, keys, blobs, audit

    def put(self, topic: str, reason: str, detail: str, payload: bytes, device_id: str | None = None,
            claimed_owner_id: str | None = None, quota: QuarantineQuota | None = None,
            seq: int | None = None) -> tuple[str | None, bool]:
        """Keep a refused payload (`seq`: its chain position, only if the device's signature
        on it verified). Returns (quarantine id, True if new); (None, False) if the device is
        over its quota, in which case nothing is written."""
        digest = hashlib.sha256(payload).hexdigest()
        existing = self.db.query(BY_DIGEST, {"digest": digest})
        if existing:
            return str(existing[0]["quarantine_id"]), False
        if quota is not None and self.over_quota(device_id, len(payload), quota):
            return None, False
        qid = str(uuid.uuid4())
        relative = quarantine_blob(qid)
        linked = self._linked_secrets(device_id, claimed_owner_id)
        key = linked_quarantine_key(self.keys.quarantine_key(), [secret for _, secret in linked])
        self.blobs.write(relative, seal(key, payload, quarantine_aad(qid)))
        with self.audit.write() as cur:
            # Another ingester may be quarantining the same redelivered bytes at this moment.
            row = QuarantineRow(qid, utc_now(), topic[:300], reason, detail[:1000], digest, len(payload), relative,
                                device_id, claimed_owner_id, seq)
            new = cur.execute(insert("quarantine", conflict="envelope_sha256"), asdict(row)).rowcount
            if new:
                self.audit.append(cur, "clip_quarantined", detail={
                    "quarantine_id": qid, "reason": reason, "topic": topic[:300]})
        if not new:
            self.blobs.remove(relative)
            first = self.db.query(BY_DIGEST, {"digest": digest})
            return str(first[0]["quarantine_id"]), False
        return qid, True

    def over_quota(self, device_id: str | None, size: int, quota: QuarantineQuota) -> bool:
        """Would one more payload of `size` bytes take the device past its quota for the last day?"""
        since = format_utc(datetime.now(UTC) - timedelta(days=1), places=6)
        row = self.db.query("SELECT count(*) AS n, coalesce(sum(envelope_bytes), 0) AS b FROM quarantine "
                            "WHERE device_id IS NOT DISTINCT FROM :device_id AND received_at >= :since",
                            {"device_id": device_id, "since": since})[0]
        return int(row["n"]) + 1 > quota.items_per_day or int(row["b"]) + size > quota.bytes_per_day

    def purge_owner(self, owner_id: str, device_ids: list[str]) -> int:
        """Erasure reaches the quarantine: every payload from the owner's devices, or whose
        header claims the owner, goes (blobs first, then rows). Returns how many."""
        among, listed = in_list("device_id", device_ids)
        rows = self.db.query(f"SELECT quarantine_id, blob_path FROM quarantine WHERE claimed_owner_id = :owner_id "
                             f"OR (TRUE {among})", {"owner_id": owner_id, **listed})
        # Blobs first: a crash leaves rows, which the next erase finds again.
        self.blobs.remove_many([row["blob_path"] for row in rows])
        with self.audit.write() as cur:
            cur.executemany(BY_ID_DELETE, [{"quarantine_id": r["quarantine_id"]} for r in rows])
            self.audit.append(cur, "owner_quarantine_purged", owner_id=owner_id, detail={"items": len(rows)})
        return len(rows)

    def _linked_secrets(self, device_id: str | None, claimed_owner_id: str | None) -> list[tuple[str, bytes]]:
        """(owner id, secret) of each existing owner a payload names, in owner id order."""
        owners = {claimed_owner_id} if claimed_owner_id else set()
        if device_id:
            owners |= {str(r["owner_id"]) for r in self.db.gateway("bindings", device=device_id)}
        found = []
        for owner_id in sorted(owners):
            try:
                secret = self.keys.secrets.get(owner_id)
            except ValueError:  # a claimed owner that is no owner id
                continue
            if secret is not None:
                found.append((owner_id, secret))
        return found

    def refused_seqs(self, device_id: str) -> set[int]:
        """The chain positions of a device's signed clips that were refused and are kept here."""
        rows = self.db.query("SELECT seq FROM quarantine WHERE device_id = :device_id AND seq IS NOT NULL",
                             {"device_id": device_id})
        return {int(r["seq"]) for r in rows}

    def all(self) -> list[QuarantineRow]:
        return [QuarantineRow(**dict(r)) for r in self.db.query("SELECT * FROM quarantine ORDER BY received_at")]

    def get(self, quarantine_id: str) -> QuarantineRow | None:
        rows = self.db.query("SELECT * FROM quarantine WHERE quarantine_id = :quarantine_id",
                             {"quarantine_id": quarantine_id})
        return QuarantineRow(**dict(rows[0])) if rows else None

    def payload(self, row: QuarantineRow) -> bytes:
        """The payload, if it still opens: CryptoError once an owner it names was erased."""
        sealed = self.blobs.read(row.blob_path)
        secrets = [secret for _, secret in self._linked_secrets(row.device_id, row.claimed_owner_id)]
        # Sealed with the secrets its owners had then: all of them, or (an owner added since) fewer.
        for size in range(len(secrets), -1, -1):
            for subset in itertools.combinations(secrets, size):
                key = linked_quarantine_key(self.keys.quarantine_key(), list(subset))
                try:
                    return open_sealed(key, sealed, quarantine_aad(row.quarantine_id))
                except CryptoError:
                    continue
        raise CryptoError(f"quarantined item {row.quarantine_id} does not open: an owner it names was erased")

    def purge(self, quarantine_ids: list[str]) -> int:
        rows = [r for r in (self.get(q) for q in quarantine_ids) if r is not None]
        with self.audit.write() as cur:
            for row in rows:
                cur.execute(BY_ID_DELETE, {"quarantine_id": row.quarantine_id})
                self.audit.append(cur, "quarantine_purged", detail={"quarantine_id": row.quarantine_id})
        self.blobs.remove_many([row.blob_path for row in rows])
        return len(rows)

    def blob_paths(self) -> set[str]:
        """Where the quarantine rows say their blobs are (for the sweep)."""
        return {r["blob_path"] for r in self.db.query("SELECT blob_path FROM quarantine")}
