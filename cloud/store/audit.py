"""The audit log: append-only, each event hash-chained to the one before.

An event's hash is SHA-256 over the previous hash and the event's canonical JSON, so an
edited event breaks its own hash and a removed one breaks the chain after it. Removing
events from the end leaves a valid shorter chain; to catch that, the newest (seq, hash)
is also written to a head file beside the database, which `verify` compares with.

Erasure redacts the owner's events (`record_erasure`): what they did and when (sign-ins and
the addresses they came from, devices, clips, times) goes, and each event's place in the
chain stays: its seq, owner id and the two hashes, with event "redacted" and nothing else.
`verify` checks a redacted event by its links alone (the hash it carries is the one the
next event chains to), and only for an owner whose erasure the log records; anything else
redacted is reported. The erasure's own record, appended after, is what remains of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from earmark.cloud.store.database import Cursor, Database, Row
from earmark.cloud.store.ddl import insert
from earmark.wire.timestamps import utc_now

GENESIS = "0" * 64
REDACTED = "redacted"
_REDACT = "at = '', event = 'redacted', device_id = NULL, clip_id = NULL, detail = ''"
INSERT_EVENT = insert("audit")


def _like(text: str) -> str:
    """`text` matched literally by LIKE … ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
log = logging.getLogger(__name__)


def event_hash(prev_hash: str, seq: int, at: str, event: str, owner_id: str | None,
               device_id: str | None, clip_id: str | None, detail: str) -> str:
    body = json.dumps([seq, at, event, owner_id, device_id, clip_id, detail], separators=(",", ":"))
    return hashlib.sha256(prev_hash.encode() + body.encode()).hexdigest()


@dataclass(frozen=True)
class AuditProblem:
    seq: int
    message: str


_HEAD_LOCK = threading.Lock()  # the head file's read-compare-replace, one thread of a process at a time


class AuditLog:
    def __init__(self, db: Database, head_file: Path) -> None:
        self.db = db
        self.head_file = head_file
        # The newest event of this thread's transaction, for the head file once it commits
        # (per thread: an ingester judges one batch while another commits).
        self._pending = threading.local()

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        """A durable transaction for a change and the events that record it (StoreError if it
        fails); once it has committed, the head file follows."""
        with self.db.transaction() as cur:
            yield cur
        self.write_head()

    def record(self, event: str, *, owner_id: str | None = None, device_id: str | None = None,
               clip_id: str | None = None, detail: dict[str, object] | None = None) -> int:
        """One event in a transaction of its own (an event about something done elsewhere)."""
        with self.write() as cur:
            return self.append(cur, event, owner_id=owner_id, device_id=device_id, clip_id=clip_id, detail=detail)

    def append(self, cur: Cursor, event: str, *, owner_id: str | None = None,
               device_id: str | None = None, clip_id: str | None = None,
               detail: dict[str, object] | None = None) -> int:
        """Inside the caller's transaction, so the event commits with what it records."""
        return self.append_many(cur, event, owner_id, [(device_id, clip_id, detail)])

    def append_many(self, cur: Cursor, event: str, owner_id: str | None,
                    items: list[tuple[str | None, str | None, dict[str, object] | None]]) -> int:
        """Several events of one kind for one owner (device id, clip id, detail each), chained
        in order; returns the last sequence number. An owner's events are written in that
        owner's scope (which stays set for the caller). Taking the numbers locks the head row
        until commit, so concurrent writers (PostgreSQL ingesters) queue and the chain stays one."""
        if owner_id is not None:
            cur.scope(owner_id)
        head = cur.execute("UPDATE audit_head SET seq = seq + :count WHERE id = 1 RETURNING seq, hash",
                           {"count": len(items)}).fetchone()
        assert head is not None, "audit_head has its one row from the schema"
        seq, prev = int(head["seq"]) - len(items), str(head["hash"])
        rows = []
        at = utc_now()  # one moment: they are recorded by one commit
        for device_id, clip_id, detail in items:
            seq += 1
            text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))
            digest = event_hash(prev, seq, at, event, owner_id, device_id, clip_id, text)
            rows.append({"seq": seq, "at": at, "event": event, "owner_id": owner_id, "device_id": device_id,
                         "clip_id": clip_id, "detail": text, "prev_hash": prev, "hash": digest})
            prev = digest
        cur.executemany(INSERT_EVENT, rows)
        cur.execute("UPDATE audit_head SET hash = :hash WHERE id = 1", {"hash": prev})
        self._pending.head = (seq, prev)
        return seq

    def write_head(self) -> None:
        """After a commit: remember the newest event outside the database. Best effort: the
        commit stands whatever happens here. Any number of threads (the portal's handlers) and
        processes (several ingesters on PostgreSQL) share the file: each write goes through a
        temp file of its own (process, thread and a random part in its name), a process's
        threads take turns, and none moves the head back within a process; across processes
        an older head may win a race, and is still a valid lower bound for `verify`."""
        pending: tuple[int, str] | None = getattr(self._pending, "head", None)
        if pending is None:
            return
        self._pending.head = None
        tmp = self.head_file.with_name(f"{self.head_file.name}.{os.getpid()}.{threading.get_ident()}."
                                       f"{os.urandom(4).hex()}.tmp")
        try:
            with _HEAD_LOCK:
                current = self.head_file.read_text().split() if self.head_file.exists() else []
                if current and int(current[0]) >= pending[0]:
                    return
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 whatever the umask
                with os.fdopen(fd, "w") as out:
                    out.write(f"{pending[0]} {pending[1]}\n")
                os.replace(tmp, self.head_file)
        except (OSError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            log.warning("could not update the audit head file %s: %s", self.head_file, exc)

    def record_erasure(self, owner_id: str, device_ids: list[str], detail: dict[str, object]) -> int:
        """The erasure's last step, in one transaction: every event of the owner, and every
        event of no owner that names one of their devices or the owner, redacted (see the
        module docstring), then the erasure's own record (once). Returns how many were redacted."""
        with self.write() as cur:
            cur.scope(owner_id, erasing=True)
            count = cur.execute(f"UPDATE audit SET {_REDACT} WHERE owner_id = :owner_id "
                                "AND event NOT IN ('owner_erased', 'redacted')", {"owner_id": owner_id}).rowcount
            # An event of no owner names the person by a device id (a login, a topic) or a path.
            names = ([f'%"{_like(d)}"%' for d in device_ids] + [f'%/{_like(d)}"%' for d in device_ids]
                     + [f"%{_like(owner_id)}%"])
            for device_id, name in [(d, None) for d in device_ids] + [(None, n) for n in names]:
                count += cur.execute(f"UPDATE audit SET owner_id = :owner_id, {_REDACT} WHERE owner_id IS NULL "
                                     "AND (device_id = :device_id OR detail LIKE :name ESCAPE '!')",
                                     {"owner_id": owner_id, "device_id": device_id, "name": name}).rowcount
            if not cur.execute("SELECT 1 FROM audit WHERE event = 'owner_erased' AND owner_id = :owner_id",
                               {"owner_id": owner_id}).fetchone():
                self.append(cur, "owner_erased", owner_id=owner_id, detail=detail)
        return count

    def verify(self) -> list[AuditProblem]:
        problems: list[AuditProblem] = []
        prev, expected_seq = GENESIS, 1
        redacted: list[tuple[int, str | None]] = []
        erased: set[str] = set()
        for row in self.chain():
            if row["seq"] != expected_seq:
                problems.append(AuditProblem(expected_seq, f"events {expected_seq}..{row['seq'] - 1} are missing"))
            if row["prev_hash"] != prev:
                problems.append(AuditProblem(row["seq"], "does not chain to the event before it"))
            if row["event"] == REDACTED:
                redacted.append((row["seq"], row["owner_id"]))  # its links are checked, its body is gone
            elif event_hash(row["prev_hash"], row["seq"], row["at"], row["event"], row["owner_id"],
                            row["device_id"], row["clip_id"], row["detail"]) != row["hash"]:
                problems.append(AuditProblem(row["seq"], "was edited (its hash does not match)"))
            if row["event"] == "owner_erased" and row["owner_id"]:
                erased.add(row["owner_id"])
            prev, expected_seq = row["hash"], row["seq"] + 1
        problems += [AuditProblem(seq, "was redacted, but the log records no erasure of its owner")
                     for seq, owner in redacted if owner not in erased]
        if self.head_file.exists():
            head_seq, head_hash = self.head_file.read_text().split()
            if int(head_seq) >= expected_seq:
                problems.append(AuditProblem(expected_seq, f"events {expected_seq}..{head_seq} are missing "
                                                           "from the end"))
            elif not any(p.seq == int(head_seq) for p in problems):
                head = self.db.gateway("audit", after=int(head_seq) - 1, limit=1)
                if head and head[0]["seq"] == int(head_seq) and head[0]["hash"] != head_hash:
                    problems.append(AuditProblem(int(head_seq), "differs from the recorded head"))
        return problems

    def chain(self, page: int = 1000) -> Iterator[Row]:
        """Every event in order, a page at a time (the operator's cross-owner view)."""
        after = 0
        while True:
            rows = self.db.gateway("audit", after=after, limit=page)
            yield from rows
            if len(rows) < page:
                return
            after = int(rows[-1]["seq"])

    def has_event(self, event: str, owner_id: str) -> bool:
        """Whether an owner's log already holds such an event (read in the owner's scope)."""
        return bool(self.db.query("SELECT 1 FROM audit WHERE event = :event AND owner_id = :owner_id LIMIT 1",
                                  {"event": event, "owner_id": owner_id}, owner=owner_id))

    def owner_events(self, owner_id: str, event: str) -> list[dict[str, object]]:
        """The details of the owner's events of one kind, newest first (in the owner's scope)."""
        rows = self.db.query("SELECT detail FROM audit WHERE owner_id = :owner_id AND event = :event "
                             "ORDER BY seq DESC", {"owner_id": owner_id, "event": event}, owner=owner_id)
        return [json.loads(r["detail"]) for r in rows]

    def head_seq(self) -> int:
        """The newest event's sequence number (inside a snapshot: as the snapshot sees it)."""
        return int(self.db.query("SELECT seq FROM audit_head")[0]["seq"])

    def stored_seq(self, owner_id: str, clip_id: str) -> int | None:
        """Where in the log the owner's clip was stored (or re-indexed), if it was."""
        rows = self.db.query("SELECT max(seq) AS seq FROM audit WHERE owner_id = :owner_id AND clip_id = :clip_id "
                             "AND event IN ('clip_stored', 'clip_reindexed')",
                             {"owner_id": owner_id, "clip_id": clip_id}, owner=owner_id)
        return int(rows[0]["seq"]) if rows and rows[0]["seq"] is not None else None

    def of_owner(self, owner_id: str, limit: int = 200) -> list[Row]:
        """The owner's own events, newest first (read in the owner's scope): their access log."""
        return self.db.query("SELECT seq, at, event, device_id, clip_id, detail, hash FROM audit "
                             "WHERE owner_id = :owner_id ORDER BY seq DESC LIMIT :limit",
                             {"owner_id": owner_id, "limit": limit}, owner=owner_id)

    def owner_mark(self, owner_id: str, ignoring: tuple[str, ...] = ()) -> int:
        """The sequence number of the owner's newest event (but the `ignoring` kinds): it moves
        whenever anything of theirs changes, so what was built from their data at one mark
        still holds at the same mark."""
        among = ", ".join(f":e{i}" for i in range(len(ignoring))) or "''"
        rows = self.db.query(f"SELECT max(seq) AS seq FROM audit WHERE owner_id = :owner_id AND event NOT IN ({among})",
                             {"owner_id": owner_id, **{f"e{i}": e for i, e in enumerate(ignoring)}}, owner=owner_id)
        return int(rows[0]["seq"] or 0)

    def events(self, limit: int = 100) -> list[Row]:
        """The newest events, newest first."""
        newest = self.head_seq()
        return list(reversed(self.db.gateway("audit", after=max(0, newest - limit), limit=limit)))
