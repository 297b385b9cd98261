"""Clips, stored under their owner: every call takes the owner id first, and there is no
call that lists clips across owners. A clip is kept as its whole signed envelope, sealed
with the owner's data key and bound to owner, device and clip id, so an export can check
the device's signature over the exact bytes it sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.blobs import BlobStore, clip_blob
from earmark.cloud.store.crypto import CryptoError, clip_aad, open_sealed, seal
from earmark.cloud.store.database import Cursor, Database, in_list
from earmark.cloud.store.ddl import SET_META, insert
from earmark.cloud.store.keys import Keys
from earmark.cloud.store.ledger import DeletionEntry, DeletionLedger
from earmark.cloud.store.resealed import MARK as RESEALED
from earmark.cloud.store.resealed import Resealed
from earmark.cloud.store.resealed import parse as parse_resealed
from earmark.runtime.durable import Data
from earmark.wire.envelope import Envelope, EnvelopeError, decode_envelope, envelope_digest
from earmark.wire.marks import MOST_LISTED
from earmark.wire.timestamps import utc_now

# Is the owner still there (not erased)? Asked inside the transaction that stores their clips,
# holding the row (Database.share_lock) so that an erasure's key destruction waits for this
# commit (and then deletes these clips too) or, if it came first, this check sees it.
LIVE_OWNER = "SELECT 1 FROM owners WHERE owner_id = :owner_id AND wrapped_key IS NOT NULL"


# The blob of a clip its device sealed to the household (wire v3) is this line and the envelope
# as sent: no server key is needed to store or read it, and none opens its audio.
HOUSEHOLD_SEALED = b"earmark/household-sealed-envelope\n"

# The marks an owner may put on a recording of theirs (the portal), and their words for them.
MARK_NAMES = {"not_meant": "Not meant for me"}


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
    seq: int | None = None  # wire v2's per-device counter; None for v1 clips


@dataclass(frozen=True)
class NewClip:
    """A verified clip on its way into the store, under the owner the registry gave it."""

    owner_id: str
    envelope: Envelope
    raw: bytes
    digest: str  # the envelope's digest (wire/envelope.py)


def _record(clip: NewClip, stored_at: str) -> ClipRow:
    h = clip.envelope.header
    return ClipRow(h.clip_id, clip.owner_id, h.device_id, h.captured_at, h.duration_ms, h.trigger, h.wake_word,
                   h.wake_score, clip.digest, len(clip.raw), clip_blob(clip.owner_id, h.clip_id), stored_at, h.seq)


# The owner's clips a page at a time in capture order, and the owner's oldest clips before a
# cutoff: both a range of the (owner_id, captured_at, clip_id, …every column) index, read from
# the index alone (tests/integration/test_query_plans.py holds both backends to that).
OWNER_PAGE = ("SELECT * FROM clips WHERE owner_id = :owner_id AND (captured_at, clip_id) > (:at, :clip_id) "
              "ORDER BY captured_at, clip_id LIMIT :limit")
# The clips a ClipFilter picks, oldest first, a batch at a time: a range of the owner's index.
OWNER_CHOSEN = "SELECT * FROM clips {where} ORDER BY captured_at, clip_id LIMIT :limit"
INSERT_CLIP = insert("clips", conflict="clip_id")
# The highest chain position stored from the device (wire v2): an export writes it into the
# archive, so verify-export sees a clip missing from the end of the chain, not only between.
ADVANCE_CHAIN = "UPDATE devices SET last_seq = :seq WHERE device_id = :device_id AND coalesce(last_seq, 0) < :seq"
OWNER_CLIP = "WHERE owner_id = :owner_id AND clip_id = :clip_id"


@dataclass(frozen=True)
class ClipFilter:
    """Which of an owner's clips: captured in [since, until) (UTC stamps, "" for open) and,
    if `device`, from that device."""

    since: str = ""
    until: str = ""
    device: str = ""

    def sql(self) -> tuple[str, dict[str, object]]:
        """The WHERE clause over an owner's clips (:owner_id, which the caller gives) and its
        other parameters."""
        where, params = ["owner_id = :owner_id"], dict[str, object]()
        for column, op, value in (("captured_at", ">=", self.since), ("captured_at", "<", self.until),
                                  ("device_id", "=", self.device)):
            if value:
                name = f"f_{len(where)}"
                where.append(f"{column} {op} :{name}")
                params[name] = value
        return "WHERE " + " AND ".join(where), params

    @property
    def narrows(self) -> bool:
        return bool(self.since or self.until or self.device)


def _advance_chains(cur: Cursor, records: list[ClipRow]) -> None:
    ends: dict[str, int] = {}
    for r in records:
        if r.seq is not None and r.seq > ends.get(r.device_id, 0):
            ends[r.device_id] = r.seq
    cur.executemany(ADVANCE_CHAIN, [{"seq": seq, "device_id": device_id} for device_id, seq in sorted(ends.items())])


# How far into the deletion ledger this database is known to be: (line, MAC) of the last
# entry applied. A database restored from a backup holds an older mark, so what was deleted
# since the backup is deleted again (owner/erasure.py: apply_deletion_ledger).
DELETIONS_APPLIED_KEY = "deletion_ledger_applied"


class Clips:
    def __init__(self, db: Database, keys: Keys, blobs: BlobStore, audit: AuditLog,
                 deletions: DeletionLedger) -> None:
        self.db, self.keys, self.blobs, self.audit, self.deletions = db, keys, blobs, audit, deletions

    def blob_path(self, owner_id: str, clip_id: str) -> str:
        return clip_blob(owner_id, clip_id)

    def fingerprints(self, clip_ids: list[str]) -> dict[str, str]:
        """The SHA-256 of the envelope stored under each of these clip ids that is taken,
        whoever's it is (for de-duplication only: it reveals neither owner nor content)."""
        if not clip_ids:
            return {}
        rows = self.db.gateway("fingerprints", clips=json.dumps(clip_ids))
        return {str(r["clip_id"]): str(r["envelope_sha256"]) for r in rows}

    def put(self, owner_id: str, envelope: Envelope, raw: bytes) -> None:
        self.put_many([NewClip(owner_id, envelope, raw, envelope.digest)])

    def put_many(self, clips: list[NewClip]) -> dict[str, str]:
        """Seal and store verified clips under their owners: every blob first, then all the
        rows and their audit events in one durable transaction (group commit), each owner's
        rows in that owner's scope. Returns the clips not stored, by id, with why:
        "owner_erased" if the owner was erased meanwhile (checked inside the transaction, so an
        erasure in another process cannot be raced), "duplicate" if another ingester stored
        the same clip id first (then its row stands, and the blob at that path is the clip's)."""
        now = utc_now()
        records = [_record(clip, now) for clip in clips]
        # A blob already at a clip's path (the stored clip's, a concurrent batch's, or one a
        # crash left) is never replaced: it is this clip's only if it holds this very envelope;
        # if not, this clip is not stored here (the ingester then finds it a clip_id_conflict).
        kept = self.blobs.write_many([(r.blob_path, self._at_rest(r, clip))
                                      for r, clip in zip(records, clips, strict=True)], keep_existing=True)
        not_stored = {r.clip_id: "duplicate" for r in records if r.blob_path in kept and not self._holds(r)}
        records = [r for r in records if r.clip_id not in not_stored]
        with self.audit.write() as cur:
            stored: dict[str, list[tuple[str | None, str | None, dict[str, object] | None]]] = {}
            for owner_id in sorted({r.owner_id for r in records}):
                cur.scope(owner_id)
                live = cur.execute(LIVE_OWNER + self.db.share_lock, {"owner_id": owner_id}).fetchone()
                events = stored[owner_id] = []
                inserted = []
                for r in (r for r in records if r.owner_id == owner_id):
                    if not live:
                        not_stored[r.clip_id] = "owner_erased"
                    elif not cur.execute(INSERT_CLIP, vars(r)).rowcount:
                        not_stored[r.clip_id] = "duplicate"
                    else:
                        inserted.append(r)
                        events.append((r.device_id, r.clip_id, {"envelope_sha256": r.envelope_sha256}))
                _advance_chains(cur, inserted)
            # The audit head's row last, once every row of the batch is locked (owners, then their
            # devices, each in sorted order): two ingesters' batches then take their locks in one
            # order, and cannot deadlock (a head taken between two owners' rows did, on PostgreSQL).
            for owner_id, events in stored.items():
                if events:
                    cur.scope(owner_id)
                    self.audit.append_many(cur, "clip_stored", owner_id, events)
        erased = [r for r in records if not_stored.get(r.clip_id) == "owner_erased"]
        self.blobs.remove_many([r.blob_path for r in erased])
        for owner_id in {r.owner_id for r in erased}:
            self.keys.forget_owner_key(owner_id)
        return not_stored

    def _at_rest(self, record: ClipRow, clip: NewClip) -> Data:
        """The blob for a clip: one its device sealed to the household (wire v3) as it came,
        signed and opened by nobody here, so storing it takes no key of the owner's and an
        ingest host needs none; any other clip sealed with the owner's data key, bound to owner,
        device and clip."""
        if clip.envelope.header.sealed:
            return HOUSEHOLD_SEALED, clip.raw  # in parts: written one after the other, never joined
        return seal(self.keys.owner_key(record.owner_id), clip.raw,
                    clip_aad(record.owner_id, record.device_id, record.clip_id))

    def _opened(self, owner_id: str, device_id: str, clip_id: str, blob: bytes) -> bytes:
        """The envelope a blob holds (CryptoError if a server-sealed blob is not this clip's)."""
        if blob.startswith(HOUSEHOLD_SEALED):  # its own header and signature say whose it is: export checks them
            return blob[len(HOUSEHOLD_SEALED):]
        return open_sealed(self.keys.owner_key(owner_id), blob, clip_aad(owner_id, device_id, clip_id))

    def _holds(self, record: ClipRow) -> bool:
        """Does the blob at the record's path hold exactly the record's envelope?"""
        try:
            raw = self._opened(record.owner_id, record.device_id, record.clip_id, self.blobs.read(record.blob_path))
        except (CryptoError, FileNotFoundError):
            return False
        return envelope_digest(raw) == record.envelope_sha256

    def of_owner(self, owner_id: str) -> list[ClipRow]:
        return list(self.iter_owner(owner_id))

    def iter_owner(self, owner_id: str, page: int = 500) -> Iterator[ClipRow]:
        """The owner's clips in capture order, a page at a time (memory stays bounded)."""
        after = ("", "")
        while True:
            rows = self.db.query(OWNER_PAGE, {"owner_id": owner_id, "at": after[0], "clip_id": after[1],
                                              "limit": page}, owner=owner_id)
            yield from (ClipRow(**dict(r)) for r in rows)
            if len(rows) < page:
                return
            after = (rows[-1]["captured_at"], rows[-1]["clip_id"])

    def read(self, owner_id: str, clip: ClipRow) -> bytes:
        """The clip's envelope bytes: as its device sent it (sealed to the household), or opened
        with this owner's key and the clip's binding. Raises CryptoError if a server-sealed blob
        is not this owner's clip (a household-sealed one is checked by its header and digest)."""
        return self._opened(owner_id, clip.device_id, clip.clip_id, self.blobs.read(clip.blob_path))

    def stored(self, owner_id: str, clip: ClipRow) -> Envelope | Resealed:
        """The clip as stored, decoded: its envelope (opened with the owner's key if the server
        sealed it), or a clip re-sealed to the household since (store/resealed.py), whose
        audio nothing here opens. CryptoError, EnvelopeError or FileNotFoundError if it is not."""
        blob = self.blobs.read(clip.blob_path)
        if blob.startswith(RESEALED):
            return parse_resealed(blob)
        return decode_envelope(self._opened(owner_id, clip.device_id, clip.clip_id, blob))

    def get(self, owner_id: str, clip_id: str) -> ClipRow | None:
        """The owner's clip with this id; None if there is none (or it is someone else's)."""
        rows = self.db.query(f"SELECT * FROM clips {OWNER_CLIP}", {"owner_id": owner_id, "clip_id": clip_id},
                             owner=owner_id)
        return ClipRow(**dict(rows[0])) if rows else None

    def page(self, owner_id: str, before: tuple[str, str] | None, limit: int,
             chosen: ClipFilter | None = None) -> list[ClipRow]:
        """Up to `limit` of the owner's clips (those `chosen`, if given), newest first, captured
        before `before` ((captured_at, clip_id) of the last one shown; None for the newest): a
        keyset page, read backwards along the owner's index however many clips they have."""
        where, params = (chosen or ClipFilter()).sql()
        after = "AND (captured_at, clip_id) < (:at, :clip_id) " if before else ""
        rows = self.db.query(f"SELECT * FROM clips {where} {after}ORDER BY captured_at DESC, clip_id DESC LIMIT :limit",
                             {**params, "owner_id": owner_id, "at": before[0] if before else None,
                              "clip_id": before[1] if before else None, "limit": limit}, owner=owner_id)
        return [ClipRow(**dict(r)) for r in rows]

    def chosen(self, owner_id: str, chosen: ClipFilter, limit: int) -> list[ClipRow]:
        """Up to `limit` of the owner's clips that `chosen` picks, oldest first (for deleting:
        the owner's choice, or retention's cutoff)."""
        where, params = chosen.sql()
        rows = self.db.query(OWNER_CHOSEN.format(where=where), {**params, "owner_id": owner_id, "limit": limit},
                             owner=owner_id)
        return [ClipRow(**dict(r)) for r in rows]

    def count_chosen(self, owner_id: str, chosen: ClipFilter) -> int:
        where, params = chosen.sql()
        return int(self.db.query(f"SELECT count(*) AS n FROM clips {where}", {**params, "owner_id": owner_id},
                                 owner=owner_id)[0]["n"])

    def mark(self, owner_id: str, clip_id: str, mark: str | None) -> str | None:
        """Set (`mark` "not_meant": the owner did not mean to wake the device) or clear (None)
        the owner's mark on their clip, audited. Returns the device that made the clip (to be
        told), or None if the clip is not theirs."""
        with self.audit.write() as cur:
            cur.scope(owner_id)
            key = {"owner_id": owner_id, "clip_id": clip_id}
            found = cur.execute(f"SELECT device_id FROM clips {OWNER_CLIP}", key).fetchone()
            if found is None:
                return None
            for table in ("clip_marks", "device_marks"):
                cur.execute(f"DELETE FROM {table} {OWNER_CLIP}", key)
            if mark is not None:
                now = utc_now()
                cur.execute(insert("clip_marks"), {**key, "mark": mark, "marked_at": now})
                cur.execute(insert("device_marks"), {**key, "device_id": found["device_id"], "marked_at": now})
            self.audit.append(cur, "clip_marked" if mark else "clip_mark_cleared", owner_id=owner_id,
                              clip_id=clip_id, detail={"mark": mark} if mark else None)
        return str(found["device_id"])

    def marks(self, owner_id: str, clip_ids: list[str] | None = None) -> dict[str, str]:
        """The owner's marks on these clips of theirs (None: on any): {clip_id: mark}."""
        if clip_ids is not None and not clip_ids:
            return {}
        among, listed = in_list("clip_id", clip_ids) if clip_ids is not None else ("", {})
        rows = self.db.query(f"SELECT clip_id, mark FROM clip_marks WHERE owner_id = :owner_id {among}",
                             {"owner_id": owner_id, **listed}, owner=owner_id)
        return {r["clip_id"]: r["mark"] for r in rows}

    def for_device(self, owner_id: str, device_id: str, since: str) -> tuple[list[str], list[str]]:
        """What the device is to know of the household's marks (wire/marks.py): the clip ids
        of its recordings marked not meant (kept after a clip's deletion), and of those
        deleted since `since` (UTC), newest first, MOST_LISTED of each at most."""
        marked = self.db.query("SELECT clip_id FROM device_marks WHERE owner_id = :owner_id AND device_id = :device_id "
                               "ORDER BY marked_at DESC, clip_id LIMIT :most",
                               {"owner_id": owner_id, "device_id": device_id, "most": MOST_LISTED}, owner=owner_id)
        deleted = self.db.query("SELECT clip_id FROM deleted_clips WHERE device_id = :device_id "
                                "AND deleted_at >= :since ORDER BY deleted_at DESC, clip_id LIMIT :most",
                                {"device_id": device_id, "since": since, "most": MOST_LISTED})
        return [r["clip_id"] for r in marked], [r["clip_id"] for r in deleted]

    def marked_devices(self, owner_id: str) -> set[str]:
        """The owner's devices that have marks to learn."""
        return {r["device_id"] for r in self.db.query("SELECT DISTINCT device_id FROM device_marks "
                                                      "WHERE owner_id = :owner_id", {"owner_id": owner_id},
                                                      owner=owner_id)}

    def count(self, owner_id: str) -> int:
        return int(self.db.query("SELECT count(*) AS n FROM clips WHERE owner_id = :owner_id", {"owner_id": owner_id},
                                 owner=owner_id)[0]["n"])

    def blob_paths(self, owner_id: str) -> set[str]:
        """Where the owner's clip rows say their blobs are (for the sweep)."""
        return {r["blob_path"] for r in self.db.query("SELECT blob_path FROM clips WHERE owner_id = :owner_id",
                                                      {"owner_id": owner_id}, owner=owner_id)}

    def delete(self, owner_id: str, clips: list[ClipRow], event: str, detail: dict[str, object] | None = None,
               ledger: bool = True) -> None:
        """Delete these clips of the owner's, with one audit event. The deletion ledger first
        (outside the database: a restore from an older backup deletes them again), then rows:
        a crash after the commit leaves only blobs without rows, which the sweep removes."""
        if ledger:
            self.deletions.record(owner_id, [clip.clip_id for clip in clips], utc_now())
        with self.audit.write() as cur:
            cur.scope(owner_id)
            for table in ("clip_marks", "clips"):  # a mark goes with its clip
                cur.executemany(f"DELETE FROM {table} {OWNER_CLIP}",
                                [{"owner_id": owner_id, "clip_id": clip.clip_id} for clip in clips])
            self._remember_deleted(cur, [(c.clip_id, c.envelope_sha256, c.device_id, c.seq) for c in clips])
            self.audit.append(cur, event, owner_id=owner_id, clip_id=clips[0].clip_id if len(clips) == 1 else None,
                              detail={"clips": len(clips), **(detail or {})})
        self.blobs.remove_many([clip.blob_path for clip in clips])

    def redelete(self, entries: list[DeletionEntry]) -> int:
        """Make the deletion ledger's entries true of this database again (after a restore
        from a backup taken before them, or a crash between the ledger and the rows), then
        mark the ledger applied up to its last entry. Returns the clips deleted again."""
        again = 0
        for entry in entries:
            rows = [row for row in (self.get(entry.owner_id, c) for c in entry.clip_ids) if row is not None]
            if rows:
                self.delete(entry.owner_id, rows, "clips_deleted_again", {"why": "deleted before a restore"},
                            ledger=False)
                again += len(rows)
        if entries:
            with self.db.transaction() as cur:
                mark = json.dumps([entries[-1].line, entries[-1].mac])
                cur.execute(SET_META, {"key": DELETIONS_APPLIED_KEY, "value": mark.encode()})
        return again

    def deletions_applied(self) -> tuple[int, str] | None:
        rows = self.db.query("SELECT value FROM meta WHERE key = :key", {"key": DELETIONS_APPLIED_KEY})
        if not rows:
            return None
        line, mac = json.loads(bytes(rows[0]["value"]))
        return int(line), str(mac)

    def delete_all(self, owner_id: str) -> int:
        """Every clip of an erased owner: blobs first (unreadable already), then rows."""
        self.blobs.remove_owner(owner_id)
        with self.audit.write() as cur:
            cur.scope(owner_id)
            owner = {"owner_id": owner_id}
            gone = cur.execute("SELECT clip_id, envelope_sha256, device_id, seq FROM clips WHERE owner_id = :owner_id",
                               owner).fetchall()
            self._remember_deleted(cur, [(r["clip_id"], r["envelope_sha256"], r["device_id"], r["seq"]) for r in gone])
            for table in ("clip_marks", "device_marks"):
                cur.execute(f"DELETE FROM {table} WHERE owner_id = :owner_id", owner)
            count = cur.execute("DELETE FROM clips WHERE owner_id = :owner_id", owner).rowcount
            self.audit.append(cur, "owner_clips_deleted", owner_id=owner_id, detail={"clips": count})
        return int(count)

    @staticmethod
    def _remember_deleted(cur: Cursor, clips: list[tuple[str, str, str, int | None]]) -> None:
        """A deleted clip's id, envelope hash, device and chain position (no owner, no content):
        the same envelope arriving again (a redelivery, a device resend) is a duplicate, not a
        new clip, and an export can tell this deletion from a clip removed behind its back."""
        now = utc_now()
        cur.executemany(insert("deleted_clips", conflict="clip_id"),
                        [{"clip_id": clip_id, "envelope_sha256": digest, "deleted_at": now, "device_id": device_id,
                          "seq": seq} for clip_id, digest, device_id, seq in clips])

    def stored_seqs(self, owner_id: str, device_id: str) -> set[int]:
        """The chain positions of the owner's stored clips from this device."""
        rows = self.db.query("SELECT seq FROM clips WHERE owner_id = :owner_id AND device_id = :device_id "
                             "AND seq IS NOT NULL", {"owner_id": owner_id, "device_id": device_id}, owner=owner_id)
        return {int(r["seq"]) for r in rows}

    def deleted_of(self, device_ids: list[str]) -> list[dict[str, object]]:
        """The deletion records of these devices' clips (ids, positions, when; no content)."""
        if not device_ids:
            return []
        among, listed = in_list("device_id", device_ids)
        return [dict(r) for r in self.db.query(
            f"SELECT clip_id, device_id, seq, deleted_at FROM deleted_clips WHERE TRUE {among} "
            "ORDER BY device_id, seq, clip_id", listed)]

    def deleted_seqs(self, device_id: str) -> set[int]:
        """The chain positions of a device's clips that were deleted on record."""
        rows = self.db.query("SELECT seq FROM deleted_clips WHERE device_id = :device_id AND seq IS NOT NULL",
                             {"device_id": device_id})
        return {int(r["seq"]) for r in rows}

    def reindex(self, clip: NewClip) -> bool:
        """A row for a clip whose sealed blob is already in place (found by the sweep after a
        database restore or a crash between blob and row). True if the row was added."""
        with self.audit.write() as cur:
            cur.scope(clip.owner_id)
            record = _record(clip, utc_now())
            added = cur.execute(INSERT_CLIP, vars(record)).rowcount
            if added:
                _advance_chains(cur, [record])
                self.audit.append(cur, "clip_reindexed", owner_id=clip.owner_id,
                                  device_id=clip.envelope.header.device_id, clip_id=clip.envelope.header.clip_id,
                                  detail={"envelope_sha256": clip.digest})
        return bool(added)

    def open_blob(self, owner_id: str, relative: str, device_ids: list[str],
                  sealed: bytes) -> tuple[str, bytes] | None:
        """(device id, envelope bytes) of `sealed`, a blob of the owner's at `relative` that no
        row points at, if it opens with the owner's key and one of these devices' bindings;
        else None."""
        clip_id = relative.rsplit("/", 1)[-1].removesuffix(".bin")
        if sealed.startswith(HOUSEHOLD_SEALED):  # the sweep then checks its header and signature
            raw = sealed[len(HOUSEHOLD_SEALED):]
            try:
                device_id = decode_envelope(raw).header.device_id
            except EnvelopeError:
                return None
            return (device_id, raw) if device_id in device_ids else None
        key = self.keys.owner_key(owner_id)
        for device_id in device_ids:
            try:
                return device_id, open_sealed(key, sealed, clip_aad(owner_id, device_id, clip_id))
            except CryptoError:
                continue
        return None
