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
from earmark.wire.envelope import AGE_MAGIC
from earmark.wire.timestamps import utc_now

WRAP_KINDS = ("passkey", "recovery")
MAX_WRAP_BYTES = 4096  # an age file of one identity line: a few hundred bytes


@dataclass(frozen=True)
class Wrap:
    wrap_id: str
    kind: str
    wrapped: bytes
    created_at: str


class HouseholdKeys:
    def __init__(self, db: Database, audit: AuditLog, registry: Registry) -> None:
        self.db, self.audit, self.registry = db, audit, registry

    def wraps(self, owner_id: str) -> list[Wrap]:
        rows = self.db.query("SELECT wrap_id, kind, wrapped, created_at FROM household_wraps "
                             "WHERE owner_id = :owner_id ORDER BY created_at, wrap_id", {"owner_id": owner_id},
                             owner=owner_id)
        return [Wrap(str(r["wrap_id"]), str(r["kind"]), bytes(r["wrapped"]), str(r["created_at"])) for r in rows]

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
                 "created_at": now} for kind, wrapped in wraps])
            self.audit.append(cur, "household_key_wrapped", owner_id=owner_id,
                              detail={"kinds": sorted(kind for kind, _ in wraps)})


def _check_wraps(wraps: list[tuple[str, bytes]]) -> None:
    for kind, wrapped in wraps:
        if kind not in WRAP_KINDS or not wrapped.startswith(AGE_MAGIC) or len(wrapped) > MAX_WRAP_BYTES:
            raise RegistryError(f"a {kind[:20]!r} wrap must be an age file of at most {MAX_WRAP_BYTES} bytes")
