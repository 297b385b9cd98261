"""Clips, stored under their owner: every call takes the owner id first, and there is no
call that lists clips across owners. A clip is kept as its whole signed envelope, sealed
with the owner's data key and bound to owner, device and clip id, so an export can check
the device's signature over the exact bytes it sent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.crypto import clip_aad, open_sealed, seal
from cloud.db import utc_now
from earmark_wire.envelope import Envelope

if TYPE_CHECKING:
    from cloud.store import Store


# Is the owner still there (not erased)? Asked inside the transaction that stores their clips.
# SQLite's BEGIN IMMEDIATE already serialises it with an erasure; PostgreSQL (READ COMMITTED)
# needs the row lock, so that an erasure's key destruction waits for this commit (and then
# deletes these clips too) or, if it came first, this check sees it.
LIVE_OWNER = {
    "sqlite": "SELECT 1 FROM owners WHERE owner_id = ? AND wrapped_key IS NOT NULL",
    "postgres": "SELECT 1 FROM owners WHERE owner_id = ? AND wrapped_key IS NOT NULL FOR SHARE",
}


@dataclass(frozen=True)
class ClipRow:
    clip_id: str
    owner_id: str
    device_id: str
    captured_at: str
    duration_ms: int
    trigger: str
    wake_word: str | None
    wake_score: float | None
    envelope_sha256: str
    envelope_bytes: int
    blob_path: str
    stored_at: str


@dataclass(frozen=True)
class NewClip:
    """A verified clip on its way into the store, under the owner the registry gave it."""

    owner_id: str
    envelope: Envelope
    raw: bytes
    digest: str  # SHA-256 of raw


class Clips:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def blob_path(self, owner_id: str, clip_id: str) -> str:
        return f"blobs/{owner_id}/{clip_id}.bin"

    def fingerprints(self, clip_ids: list[str]) -> dict[str, str]:
        """The SHA-256 of the envelope stored under each of these clip ids that is taken,
        whoever's it is (for de-duplication only: it reveals neither owner nor content)."""
        if not clip_ids:
            return {}
        rows = self.db.gateway("fingerprints", json.dumps(clip_ids))
        return {str(r["clip_id"]): str(r["envelope_sha256"]) for r in rows}

    def put(self, owner_id: str, envelope: Envelope, raw: bytes) -> None:
        self.put_many([NewClip(owner_id, envelope, raw, hashlib.sha256(raw).hexdigest())])

    def put_many(self, clips: list[NewClip]) -> dict[str, str]:
        """Seal and store verified clips under their owners: every blob first, then all the
        rows and their audit events in one durable transaction (group commit), each owner's
        rows in that owner's scope. Returns the clips not stored, by id, with why:
        "owner_erased" if the owner was erased meanwhile (checked inside the transaction, so an
        erasure in another process cannot be raced), "duplicate" if another ingester stored
        the same clip id first (then its row stands, and the blob at that path is the clip's)."""
        blobs, rows = [], []
        for clip in clips:
            h = clip.envelope.header
            relative = self.blob_path(clip.owner_id, h.clip_id)
            key = self.store.owner_key(clip.owner_id)
            blobs.append((self.store.data_dir / relative,
                          seal(key, clip.raw, clip_aad(clip.owner_id, h.device_id, h.clip_id))))
            rows.append((h.clip_id, clip.owner_id, h.device_id, h.captured_at, h.duration_ms, h.trigger,
                         h.wake_word, h.wake_score, clip.digest, len(clip.raw), relative, utc_now()))
        self.store.write_blobs(blobs)
        not_stored: dict[str, str] = {}
        with self.store.write() as cur:
            for owner_id in sorted({row[1] for row in rows}):
                cur.scope(owner_id)
                live = cur.execute(LIVE_OWNER[self.db.backend], (owner_id,)).fetchone()
                events: list[tuple[str | None, str | None, dict[str, object] | None]] = []
                for row in (r for r in rows if r[1] == owner_id):
                    if not live:
                        not_stored[row[0]] = "owner_erased"
                        continue
                    inserted = cur.execute("INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                                           "ON CONFLICT (clip_id) DO NOTHING", row).rowcount
                    if not inserted:
                        not_stored[row[0]] = "duplicate"
                        continue
                    events.append((row[2], row[0], {"envelope_sha256": row[8]}))
                if events:
                    self.store.audit.append_many(cur, "clip_stored", owner_id, events)
        for (path, _), row in zip(blobs, rows, strict=True):
            if not_stored.get(row[0]) == "owner_erased":
                path.unlink(missing_ok=True)
                self.store.forget_owner_key(row[1])
        return not_stored

    def of_owner(self, owner_id: str) -> list[ClipRow]:
        return list(self.iter_owner(owner_id))

    def iter_owner(self, owner_id: str, page: int = 500) -> Iterator[ClipRow]:
        """The owner's clips in capture order, a page at a time (memory stays bounded)."""
        after = ("", "")
        while True:
            rows = self.db.query("SELECT * FROM clips WHERE owner_id = ? AND (captured_at, clip_id) > (?, ?) "
                                 "ORDER BY captured_at, clip_id LIMIT ?", (owner_id, *after, page), owner=owner_id)
            yield from (ClipRow(**dict(r)) for r in rows)
            if len(rows) < page:
                return
            after = (rows[-1]["captured_at"], rows[-1]["clip_id"])

    def read(self, owner_id: str, clip: ClipRow) -> bytes:
        """The clip's envelope bytes, opened with this owner's key and the clip's binding.
        Raises CryptoError if the blob is not this owner's clip."""
        path = Path(self.store.data_dir / clip.blob_path)
        sealed = path.read_bytes()
        return open_sealed(self.store.owner_key(owner_id), sealed,
                           clip_aad(owner_id, clip.device_id, clip.clip_id))

    def count(self, owner_id: str) -> int:
        return int(self.db.query("SELECT count(*) AS n FROM clips WHERE owner_id = ?", (owner_id,),
                                 owner=owner_id)[0]["n"])
