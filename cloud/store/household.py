"""The household's key, as the server keeps it: its public recipients (the registry's
household_recipients) and its identity wrapped where the server cannot open it. Everything
here is made and opened in the members' browsers; the server checks only that each wrap is an
age file of a sane size and carries it between them.

- Each member has a member key of their own (household_joins): its public half, and its
  identity wrapped for the member's passkey (age's fido2prf stanza: only that passkey's PRF,
  evaluated by its authenticator, unwraps it).
- The household identity is wrapped to each member's key (household_wraps, kind 'member')
  and once to the recovery code (kind 'recovery', age scrypt).
- A newcomer asks to join with a member key; a member compares its fingerprint and gives it
  the household identity from their own browser (the confirm pattern).
- Removing a member rotates the key: a member's browser makes a new identity, wraps it to the
  remaining members and a new recovery code, and wraps the old identity to the new one (kind
  'previous'), so older clips stay readable by the household and new clips are sealed to a key
  the removed member never had.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.database import Cursor, Database
from earmark.cloud.store.ddl import insert
from earmark.cloud.store.registry import Registry, RegistryError
from earmark.wire.envelope import AGE_MAGIC, RECIPIENT_PATTERN
from earmark.wire.timestamps import utc_now

WRAP_KINDS = ("recovery", "member", "previous")
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


@dataclass(frozen=True)
class NewMember:
    """A member key made in a browser: its public half, its identity wrapped for the member's
    passkey, and the household identity wrapped to it."""

    recipient: str
    member_wrap: bytes
    household_wrap: bytes


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

    def create(self, owner_id: str, recipient: str, recovery: bytes, member: NewMember) -> None:
        """The household's first key, made in a member's browser. RegistryError if the
        household has a key already or a part is not what it must be."""
        if self.registry.household_recipients(owner_id):
            raise RegistryError("this household has a key already")
        self.registry.check_recipient(owner_id, recipient)
        _check_member(member)
        _check_wraps([("recovery", recovery)])
        with self.audit.write() as cur:  # the key and its wraps together, or nothing
            cur.scope(owner_id)
            self.registry.put_recipient(cur, owner_id, recipient)
            self._add_member(cur, owner_id, member)
            self._add_wrap(cur, owner_id, "recovery", recovery)
            self.audit.append(cur, "household_key_made", owner_id=owner_id)

    def ask_to_join(self, owner_id: str, member_recipient: str, member_wrap: bytes) -> str:
        """A newcomer's request: its member key's public half, and that key wrapped for its
        own passkey. Returns the join's id."""
        if not self.registry.household_recipients(owner_id):
            raise RegistryError("this household has no key yet: make it first")
        _check_recipient(member_recipient)
        _check_wraps([("member", member_wrap)])
        with self.audit.write() as cur:
            cur.scope(owner_id)
            join_id = self._add_join(cur, owner_id, member_recipient, member_wrap, confirmed=False)
            self.audit.append(cur, "household_join_asked", owner_id=owner_id, detail={"join_id": join_id})
        return join_id

    def confirm_join(self, owner_id: str, join_id: str, wrapped: bytes) -> None:
        """A member's browser answered a join: the household identity wrapped to the newcomer's
        member key (the member compared the fingerprints; the server cannot tell)."""
        if not any(j.join_id == join_id and j.confirmed_at is None for j in self.joins(owner_id)):
            raise RegistryError("no such request to join is waiting")
        _check_wraps([("member", wrapped)])
        with self.audit.write() as cur:
            cur.scope(owner_id)
            self._add_wrap(cur, owner_id, "member", wrapped, join_id)
            cur.execute("UPDATE household_joins SET confirmed_at = :now WHERE join_id = :join_id "
                        "AND owner_id = :owner_id", {"now": utc_now(), "join_id": join_id, "owner_id": owner_id})
            self.audit.append(cur, "household_join_confirmed", owner_id=owner_id, detail={"join_id": join_id})

    def rotate(self, owner_id: str, recipient: str, recovery: bytes, previous: bytes,
               kept: dict[str, bytes]) -> list[str]:
        """A new household key from a member's browser: `kept` maps each member who stays (by
        join id) to the new identity wrapped to their member key; every other member is removed
        (their join and wraps go). `previous` is the old identity wrapped to the new one. The old
        recipient is retired (no new clip may be sealed to it; devices must be paired again).
        Returns the join ids removed."""
        members = {j.join_id for j in self.joins(owner_id) if j.confirmed_at is not None}
        if not kept or not set(kept) <= members:
            raise RegistryError("a new key is given to at least one member of this household, and only to members")
        _check_wraps([("recovery", recovery), ("previous", previous), *(("member", w) for w in kept.values())])
        removed = sorted(members - set(kept))
        self.registry.check_recipient(owner_id, recipient)
        with self.audit.write() as cur:  # the new key and its wraps together, or nothing
            cur.scope(owner_id)
            self.registry.put_recipient(cur, owner_id, recipient)
            cur.execute("DELETE FROM household_wraps WHERE owner_id = :owner_id AND kind IN ('member', 'recovery')",
                        {"owner_id": owner_id})
            cur.executemany("DELETE FROM household_joins WHERE owner_id = :owner_id AND join_id = :join_id",
                            [{"owner_id": owner_id, "join_id": j} for j in removed])
            for join_id, wrapped in kept.items():
                self._add_wrap(cur, owner_id, "member", wrapped, join_id)
            self._add_wrap(cur, owner_id, "recovery", recovery)
            self._add_wrap(cur, owner_id, "previous", previous)
            self.audit.append(cur, "household_key_rotated", owner_id=owner_id, detail={"members_removed": len(removed)})
        return removed

    def _add_member(self, cur: Cursor, owner_id: str, member: NewMember) -> None:
        join_id = self._add_join(cur, owner_id, member.recipient, member.member_wrap, confirmed=True)
        self._add_wrap(cur, owner_id, "member", member.household_wrap, join_id)

    @staticmethod
    def _add_join(cur: Cursor, owner_id: str, recipient: str, member_wrap: bytes, confirmed: bool) -> str:
        join_id, now = str(uuid.uuid4()), utc_now()
        cur.execute(insert("household_joins"), {"join_id": join_id, "owner_id": owner_id, "member_recipient": recipient,
                                                "member_wrap": member_wrap, "created_at": now,
                                                "confirmed_at": now if confirmed else None})
        return join_id

    @staticmethod
    def _add_wrap(cur: Cursor, owner_id: str, kind: str, wrapped: bytes, join_id: str | None = None) -> None:
        cur.execute(insert("household_wraps"), {"wrap_id": str(uuid.uuid4()), "owner_id": owner_id, "kind": kind,
                                                "wrapped": wrapped, "created_at": utc_now(), "join_id": join_id})


def _check_recipient(recipient: str) -> None:
    if not RECIPIENT_PATTERN.fullmatch(recipient):
        raise RegistryError("a member key is an age X25519 recipient (age1…)")


def _check_member(member: NewMember) -> None:
    _check_recipient(member.recipient)
    _check_wraps([("member", member.member_wrap), ("member", member.household_wrap)])


def _check_wraps(wraps: list[tuple[str, bytes]]) -> None:
    for kind, wrapped in wraps:
        if kind not in WRAP_KINDS or not wrapped.startswith(AGE_MAGIC) or len(wrapped) > MAX_WRAP_BYTES:
            raise RegistryError(f"a {kind[:20]!r} wrap must be an age file of at most {MAX_WRAP_BYTES} bytes")
