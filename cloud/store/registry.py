"""Who owns which device.

Owners are opaque UUIDs. A device is registered with its Ed25519 public key and bound to one
owner for the whole life of that key: handing the device to someone else is `revoke` plus a
new enrollment with a new key (and a new device id), never a move. So a clip's owner never
depends on a time the device supplies. (Stores from before this rule may hold devices with
several bindings, made by the old `device rebind`; `identity_owner` gives them no owner, so
the ingester refuses their clips, and export checks their stored clips by the binding at
capture time, as they were stored.)
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import asdict, dataclass, replace

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.database import Cursor, Database, Row, in_list
from earmark.cloud.store.ddl import insert
from earmark.cloud.store.keys import Keys
from earmark.wire.envelope import OWNER_ID_PATTERN, RECIPIENT_PATTERN, parse_public_key
from earmark.wire.errors import UsageError
from earmark.wire.timestamps import parse_utc, utc_now
from earmark.wire.topics import check_device_id

# Broker logins of Earmark's services (ingesters) start with this; no device may take one.
RESERVED_PREFIX = "earmark-"


class RegistryError(UsageError, ValueError):
    """A registry change that cannot be made; the message says why."""


@dataclass(frozen=True)
class Owner:
    owner_id: str
    display_name: str
    created_at: str
    erased_at: str | None


@dataclass(frozen=True)
class Device:
    device_id: str
    owner_id: str | None  # the current binding
    public_key: str
    created_at: str
    bound_at: str | None
    revoked_at: str | None
    last_seq: int | None = None  # the highest wire v2 chain position stored from it


def _check_owner_id(owner_id: str) -> str:
    if not OWNER_ID_PATTERN.fullmatch(owner_id):
        raise RegistryError(f"owner id {owner_id!r} is not a lowercase UUID")
    return owner_id


class Registry:
    def __init__(self, db: Database, keys: Keys, audit: AuditLog) -> None:
        self.db, self.keys, self.audit = db, keys, audit

    # -- owners ----------------------------------------------------------------------------

    def add_owner(self, display_name: str) -> Owner:
        name = display_name.strip()
        if not name or len(name) > 200 or re.search(r"[\x00-\x1f]", name):
            raise RegistryError("an owner's display name is 1-200 printable characters")
        owner = Owner(str(uuid.uuid4()), name, utc_now(), None)
        wrapped = self.keys.new_owner_key(owner.owner_id)
        with self.audit.write() as cur:
            cur.scope(owner.owner_id)
            cur.execute(insert("owners", ("owner_id", "display_name", "created_at", "erased_at", "wrapped_key")),
                        {**asdict(owner), "wrapped_key": wrapped})
            self.audit.append(cur, "owner_added", owner_id=owner.owner_id)
        return owner

    def owner(self, owner_id: str) -> Owner | None:
        rows = self.db.query("SELECT owner_id, display_name, created_at, erased_at FROM owners "
                             "WHERE owner_id = :owner_id", {"owner_id": owner_id}, owner=owner_id)
        return Owner(**rows[0]) if rows else None

    def set_recipient(self, owner_id: str, recipient: str) -> None:
        """The household's key (its age public key, age1…, whose identity the household alone
        holds): devices paired from now on seal every clip to it, the ingester stores only
        clips sealed to it, and exports are encrypted to it. A key set before is retired (a
        rotation): clips sealed to it stay readable with its identity, but no new clip may be
        sealed to it alone."""
        self.check_recipient(owner_id, recipient)
        with self.audit.write() as cur:
            cur.scope(owner_id)
            self.put_recipient(cur, owner_id, recipient)

    def check_recipient(self, owner_id: str, recipient: str) -> None:
        """RegistryError unless the owner is live and `recipient` an age X25519 recipient."""
        self._live_owner(owner_id)
        if not RECIPIENT_PATTERN.fullmatch(recipient):
            raise RegistryError(f"{recipient[:20]!r} is not an age X25519 recipient (age1…)")
        try:
            from pyrage import x25519

            x25519.Recipient.from_str(recipient)
        except Exception:  # pyrage raises its own RecipientError, or ValueError
            raise RegistryError(f"{recipient[:20]!r} is not an age X25519 recipient (age1…)") from None

    def put_recipient(self, cur: Cursor, owner_id: str, recipient: str) -> None:
        """set_recipient's writes, in a transaction of the caller's scoped to the owner (a key
        checked by check_recipient), so that the key and its wraps are kept together or not at all."""
        now = utc_now()
        cur.execute("UPDATE owners SET age_recipient = :recipient WHERE owner_id = :owner_id",
                    {"recipient": recipient, "owner_id": owner_id})
        cur.execute("UPDATE household_recipients SET retired_at = :now WHERE owner_id = :owner_id "
                    "AND recipient <> :recipient AND retired_at IS NULL",
                    {"now": now, "owner_id": owner_id, "recipient": recipient})
        cur.execute(insert("household_recipients", conflict="owner_id, recipient", update=("retired_at",)),
                    {"owner_id": owner_id, "recipient": recipient, "added_at": now, "retired_at": None})
        # Not the recipient itself: the audit log outlives an erasure, and an age key is the person's.
        self.audit.append(cur, "owner_recipient_set", owner_id=owner_id)

    def household_recipients(self, owner_id: str) -> list[str]:
        """The household's live keys (age1…): what a device seals to, and what a clip must be
        sealed to to be stored. Empty for a household that has set none yet."""
        rows = self.db.query("SELECT recipient FROM household_recipients WHERE owner_id = :owner_id "
                             "AND retired_at IS NULL ORDER BY recipient", {"owner_id": owner_id}, owner=owner_id)
        return [str(r["recipient"]) for r in rows]

    def set_retention(self, owner_id: str, days: int | None) -> None:
        """The owner's own auto-delete: their clips go after `days` (None: the service's retention)."""
        self._live_owner(owner_id)
        with self.audit.write() as cur:
            cur.scope(owner_id)
            cur.execute("UPDATE owners SET retention_days = :days WHERE owner_id = :owner_id",
                        {"days": days, "owner_id": owner_id})
            self.audit.append(cur, "owner_retention_set", owner_id=owner_id, detail={"days": days})

    def retention(self, owner_id: str) -> int | None:
        rows = self.db.query("SELECT retention_days FROM owners WHERE owner_id = :owner_id", {"owner_id": owner_id},
                             owner=owner_id)
        return int(rows[0]["retention_days"]) if rows and rows[0]["retention_days"] is not None else None

    def recipient(self, owner_id: str) -> str | None:
        rows = self.db.query("SELECT age_recipient FROM owners WHERE owner_id = :owner_id", {"owner_id": owner_id},
                             owner=owner_id)
        return rows[0]["age_recipient"] if rows and rows[0]["age_recipient"] else None

    def destroy_owner_key(self, owner_id: str) -> str:
        """Crypto-shredding: the owner's secret is shredded (from then on no copy of their
        wrapped data key opens, store/keystore.py), then the wrapped key, name and recipient go
        in one commit, and the row stays as a tombstone (erased_at). Returns the time of erasure."""
        self.keys.shred_owner(owner_id)
        now = utc_now()
        with self.audit.write() as cur:
            cur.scope(owner_id)
            cur.execute("UPDATE owners SET wrapped_key = NULL, erased_at = :now, display_name = '', "
                        "age_recipient = NULL WHERE owner_id = :owner_id", {"now": now, "owner_id": owner_id})
            for table in ("household_wraps", "household_joins", "household_recipients"):
                cur.execute(f"DELETE FROM {table} WHERE owner_id = :owner_id", {"owner_id": owner_id})
            self.audit.append(cur, "owner_key_destroyed", owner_id=owner_id)
        return now

    def bindings(self, device_id: str) -> list[tuple[str, str, str | None]]:
        """(owner id, bound at, unbound at) for a device, oldest first."""
        rows = self.db.gateway("bindings", device=device_id)
        return [(r["owner_id"], r["bound_at"], r["unbound_at"]) for r in rows]

    def owners(self) -> list[Owner]:
        """Every owner, for the operator (names and dates only)."""
        return [Owner(**r) for r in self.db.gateway("owner_directory")]

    def _live_owner(self, owner_id: str) -> Owner:
        owner = self.owner(_check_owner_id(owner_id))
        if owner is None:
            raise RegistryError(f"no owner {owner_id}")
        if owner.erased_at:
            raise RegistryError(f"owner {owner_id} was erased")
        return owner

    # -- devices ---------------------------------------------------------------------------

    def add_device(self, owner_id: str, public_key: str, device_id: str | None = None) -> Device:
        self._live_owner(owner_id)
        try:
            parse_public_key(public_key)
        except ValueError as exc:
            raise RegistryError(f"public key: {exc}") from None
        device_id = device_id or f"dev-{secrets.token_hex(4)}"
        try:
            check_device_id(device_id)
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        if device_id.startswith(RESERVED_PREFIX):  # a device id is also its broker login
            raise RegistryError(f"device ids starting with {RESERVED_PREFIX!r} are reserved for Earmark's own "
                                "services (the ingesters' broker logins): choose another")
        now = utc_now()
        with self.audit.write() as cur:
            # Inside the write: both checks hold at the commit (and the schema's unique public
            # key is the last word if two processes race).
            if cur.execute("SELECT 1 FROM devices WHERE device_id = :device_id", {"device_id": device_id}).fetchone():
                raise RegistryError(f"device {device_id} is already registered")
            holder = cur.execute("SELECT device_id, revoked_at FROM devices WHERE public_key = :public_key",
                                 {"public_key": public_key}).fetchone()
            if holder:
                state = " (revoked: a revoked key is never trusted again; make a new key on the device)" \
                    if holder["revoked_at"] else ""
                raise RegistryError(f"that public key is already registered to device {holder['device_id']}{state}")
            cur.scope(owner_id)
            cur.execute(insert("devices", ("device_id", "public_key", "created_at")),
                        {"device_id": device_id, "public_key": public_key, "created_at": now})
            cur.execute(insert("bindings"), {"device_id": device_id, "owner_id": owner_id, "bound_at": now,
                                             "unbound_at": None})
            self.audit.append(cur, "device_added", owner_id=owner_id, device_id=device_id,
                                    detail={"public_key": public_key})
        return Device(device_id, owner_id, public_key, now, now, None)

    def device(self, device_id: str, bindings: list[tuple[str, str, str | None]] | None = None) -> Device | None:
        """The device and its current owner (`bindings`: its history, if already at hand)."""
        rows = self.db.query("SELECT * FROM devices WHERE device_id = :device_id", {"device_id": device_id})
        if not rows:
            return None
        history = self.bindings(device_id) if bindings is None else bindings
        return self._with_bindings(rows, [{"device_id": device_id, "owner_id": owner_id, "bound_at": bound_at,
                                           "unbound_at": unbound_at} for owner_id, bound_at, unbound_at in history])[0]

    def devices(self, owner_id: str | None = None) -> list[Device]:
        """Every device (for the operator), or those now bound to `owner_id`."""
        if owner_id is None:
            return self._with_bindings(self.db.query("SELECT * FROM devices ORDER BY created_at"),
                                       self.db.gateway("bindings", device=None))
        bindings = self.db.query("SELECT * FROM bindings WHERE owner_id = :owner_id AND unbound_at IS NULL",
                                 {"owner_id": owner_id}, owner=owner_id)
        among, listed = in_list("device_id", [b["device_id"] for b in bindings])
        rows = self.db.query(f"SELECT * FROM devices WHERE TRUE {among} ORDER BY created_at", listed) if listed else []
        return self._with_bindings(rows, bindings)

    @staticmethod
    def _with_bindings(devices: list[Row], bindings: list[Row]) -> list[Device]:
        """Device rows joined to their open binding, from binding rows the caller read (through
        the gateway, or in the owner's scope: on PostgreSQL the table shows only that owner's)."""
        current = {b["device_id"]: b for b in bindings if b["unbound_at"] is None}
        joined = []
        for d in devices:
            binding = current.get(d["device_id"], {})
            joined.append(Device(d["device_id"], binding.get("owner_id"), d["public_key"], d["created_at"],
                                 binding.get("bound_at"), d["revoked_at"], d["last_seq"]))
        return joined

    def revoke_device(self, device_id: str) -> Device:
        device = self.device(device_id)
        if device is None:
            raise RegistryError(f"no device {device_id}")
        if device.revoked_at:
            return device
        now = utc_now()
        with self.audit.write() as cur:
            cur.execute("UPDATE devices SET revoked_at = :now WHERE device_id = :device_id",
                        {"now": now, "device_id": device_id})
            self.audit.append(cur, "device_revoked", owner_id=device.owner_id, device_id=device_id)
        return replace(device, revoked_at=now)

    @staticmethod
    def identity_owner(bindings: list[tuple[str, str, str | None]]) -> str | None:
        """The one owner a device's key belongs to, from its binding history; None if it has
        none, or several (moved between owners by an older Earmark: re-enroll it)."""
        return bindings[0][0] if len(bindings) == 1 else None

    def owner_at(self, device_id: str, captured_at: str,
                 bindings: list[tuple[str, str, str | None]] | None = None) -> str | None:
        """The owner the device was bound to at `captured_at` (see the module docstring);
        `bindings`: the device's history, if already at hand."""
        return self.owner_at_time(captured_at, self.bindings(device_id) if bindings is None else bindings)

    @staticmethod
    def owner_at_time(captured_at: str, history: list[tuple[str, str, str | None]]) -> str | None:
        """The owner of a binding history at `captured_at` (the first binding reaches back)."""
        stamp = parse_utc(captured_at)
        for index, (owner_id, bound_at, unbound_at) in enumerate(history):
            starts = parse_utc(bound_at)
            ends = parse_utc(unbound_at) if unbound_at else None
            if (index == 0 or stamp >= starts) and (ends is None or stamp < ends):
                return str(owner_id)
        return None
