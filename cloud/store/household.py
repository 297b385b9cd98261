"""The household's key, as the server keeps it: its public recipients (the registry's
household_recipients) and its identity wrapped where the server cannot open it
(household_wraps): for a member's passkey (age's fido2prf stanza, unwrapped by that passkey's
PRF in the member's browser) and once to the recovery code (age scrypt). Both wraps are made
in the owner's browser; the server checks only that each is an age file of a sane size."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.database import Database
from earmark.cloud.store.ddl import insert
from earmark.cloud.store.registry import Registry, RegistryError
from earmark.wire.envelope import AGE_MAGIC, RECIPIENT_PATTERN
from earmark.wire.timestamps import utc_now

WRAP_KINDS = ("passkey", "recovery", "member")
MAX_WRAP_BYTES = 4096  # an age file of one identity line: a few hundred bytes


@dataclass(frozen=True)
class Wrap:
    wrap_id: str
    kind: str
    wrapped: bytes
    created_at: str
    join_id: str | None = None


@dataclass(frozen=True)
class Join:
    join_id: str
    member_recipient: str
    member_wrap: bytes
    created_at: str
    confirmed_at: str | None


class HouseholdKeys:
    def __init__(self, db: Database, audit: AuditLog, registry: Registry) -> None:
        self.db, self.audit, self.registry = db, audit, registry

    def wraps(self, owner_id: str) -> list[Wrap]:
        rows = self.db.query("SELECT wrap_id, kind, wrapped, created_at, join_id FROM household_wraps "
                             "WHERE owner_id = :owner_id ORDER BY created_at, wrap_id", {"owner_id": owner_id},
                             owner=owner_id)
        return [Wrap(str(r["wrap_id"]), str(r["kind"]), bytes(r["wrapped"]), str(r["created_at"]), r["join_id"])
                for r in rows]

    def joins(self, owner_id: str) -> list[Join]:
        rows = self.db.query("SELECT join_id, member_recipient, member_wrap, created_at, confirmed_at "
                             "FROM household_joins WHERE owner_id = :owner_id ORDER BY created_at, join_id",
                             {"owner_id": owner_id}, owner=owner_id)
        return [Join(str(r["join_id"]), str(r["member_recipient"]), bytes(r["member_wrap"]), str(r["created_at"]),
                     r["confirmed_at"]) for r in rows]

    def ask_to_join(self, owner_id: str, member_recipient: str, member_wrap: bytes) -> str:
        """A newcomer's request: its member key's public half, and that key wrapped for its
        own passkey. Returns the join's id."""
        if not self.registry.household_recipients(owner_id):
            raise RegistryError("this household has no key yet: make it first")
        if not RECIPIENT_PATTERN.fullmatch(member_recipient):
            raise RegistryError("a member key is an age X25519 recipient (age1…)")
        _check_wraps([("passkey", member_wrap)])
        join_id = str(uuid.uuid4())
        with self.audit.write() as cur:
            cur.scope(owner_id)
            cur.execute(insert("household_joins"), {"join_id": join_id, "owner_id": owner_id,
                                                    "member_recipient": member_recipient, "member_wrap": member_wrap,
                                                    "created_at": utc_now(), "confirmed_at": None})
            self.audit.append(cur, "household_join_asked", owner_id=owner_id, detail={"join_id": join_id})
        return join_id

    def confirm_join(self, owner_id: str, join_id: str, wrapped: bytes) -> None:
        """A member's browser answered a join: the household identity wrapped to the newcomer's
        member key (the member compared the fingerprints; the server cannot tell)."""
        if not any(j.join_id == join_id and j.confirmed_at is None for j in self.joins(owner_id)):
            raise RegistryError("no such request to join is waiting")
        _check_wraps([("member", wrapped)])
        now = utc_now()
        with self.audit.write() as cur:
            cur.scope(owner_id)
            cur.execute(insert("household_wraps"), {"wrap_id": str(uuid.uuid4()), "owner_id": owner_id,
                                                    "kind": "member", "wrapped": wrapped, "created_at": now,
                                                    "join_id": join_id})
            cur.execute("UPDATE household_joins SET confirmed_at = :now WHERE join_id = :join_id "
                        "AND owner_id = :owner_id", {"now": now, "join_id": join_id, "owner_id": owner_id})
            self.audit.append(cur, "household_join_confirmed", owner_id=owner_id, detail={"join_id": join_id})

    def create(self, owner_id: str, recipient: str, wraps: list[tuple[str, bytes]]) -> None:
        """The household's first key, made in the owner's browser: its recipient, and its
        identity wrapped for the member's passkey and to the recovery code. RegistryError if
        the household has a key already or a wrap is not what it must be."""
        if self.registry.household_recipients(owner_id):
            raise RegistryError("this household has a key already")
        kinds = sorted(kind for kind, _ in wraps)
        if kinds != ["passkey", "recovery"]:
            raise RegistryError("a new household key comes wrapped once for a passkey and once to the recovery code")
        _check_wraps(wraps)  # before anything is kept
        self.registry.set_recipient(owner_id, recipient)
        self.add_wraps(owner_id, wraps)

    def add_wraps(self, owner_id: str, wraps: list[tuple[str, bytes]]) -> None:
        _check_wraps(wraps)
        now = utc_now()
        with self.audit.write() as cur:
            cur.scope(owner_id)
            cur.executemany(insert("household_wraps"), [
                {"wrap_id": str(uuid.uuid4()), "owner_id": owner_id, "kind": kind, "wrapped": wrapped,
                 "created_at": now, "join_id": None} for kind, wrapped in wraps])
            self.audit.append(cur, "household_key_wrapped", owner_id=owner_id,
                              detail={"kinds": sorted(kind for kind, _ in wraps)})


def _check_wraps(wraps: list[tuple[str, bytes]]) -> None:
    for kind, wrapped in wraps:
        if kind not in WRAP_KINDS or not wrapped.startswith(AGE_MAGIC) or len(wrapped) > MAX_WRAP_BYTES:
            raise RegistryError(f"a {kind[:20]!r} wrap must be an age file of at most {MAX_WRAP_BYTES} bytes")
