"""The store's keys: the master key (a file, never in the database) wraps the quarantine key,
and with each owner's secret (store/keystore.py, a file per owner, also outside the database)
that owner's data key, which the database holds wrapped. See crypto.py for the scheme."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from earmark.cloud.store.crypto import (
    QUARANTINE_KEY_AAD,
    CryptoError,
    new_key,
    open_sealed,
    owner_key_aad,
    owner_wrapping_key,
    seal,
)
from earmark.cloud.store.database import Cursor, Database, StoreError
from earmark.cloud.store.ddl import SET_META, insert
from earmark.cloud.store.keystore import OwnerSecrets
from earmark.wire.errors import UsageError


class OwnerError(UsageError, LookupError):
    """An owner-scoped call named an owner that does not exist or was erased."""


# owners.wrapped_key of a live owner whose clips are all sealed to their household (re-sealed
# by owner/reseal.py): the server keeps no data key for them at all. (NULL is an erased owner.)
NO_SERVER_KEY = b"household"


def _server_key(row: Any) -> bytes | None:
    """The wrapped data key an owners row (or None for no row) holds; None if it holds none
    (the owner was erased, or their clips are sealed to their household only)."""
    wrapped = None if row is None else row["wrapped_key"]
    return None if wrapped is None or bytes(wrapped) == NO_SERVER_KEY else bytes(wrapped)


class Keys:
    def __init__(self, db: Database, master_key: bytes, secrets: OwnerSecrets) -> None:
        self.db = db
        self.master_key = master_key
        self.secrets = secrets
        self._owner_keys: dict[str, bytes] = {}

    def create_quarantine_key(self, cur: Cursor) -> bool:
        """Inside the caller's transaction, once per store. True if made now."""
        if cur.execute("SELECT 1 FROM meta WHERE key = 'quarantine_key'").fetchone():
            return False
        wrapped = bytes(seal(self.master_key, new_key(), QUARANTINE_KEY_AAD))
        cur.execute(insert("meta"), {"key": "quarantine_key", "value": wrapped})
        return True

    def check_master_key(self) -> None:
        try:
            self.quarantine_key()
        except CryptoError:
            raise StoreError("the master key does not open this store's keys: wrong master key file?") from None

    def quarantine_key(self) -> bytes:
        row = self.db.query("SELECT value FROM meta WHERE key = 'quarantine_key'")
        if not row:
            raise StoreError("store has no quarantine key")
        return open_sealed(self.master_key, row[0]["value"], QUARANTINE_KEY_AAD)

    def new_owner_key(self, owner_id: str) -> bytes:
        """A fresh data key for a new owner, wrapped for its row (its secret written first)."""
        return self._wrap(self.master_key, owner_id, new_key())

    def _wrap(self, master: bytes, owner_id: str, key: bytes) -> bytes:
        secret = self.secrets.make(owner_id)
        return bytes(seal(owner_wrapping_key(master, secret, owner_id), key, owner_key_aad(owner_id)))

    def _unwrap(self, master: bytes, owner_id: str, wrapped: bytes) -> bytes:
        """The data key, with the owner's secret; a key from before owner secrets existed (not
        yet moved out, or in a restored older backup) opens with the master key alone."""
        secret = self.secrets.get(owner_id)
        if secret is not None:
            try:
                return open_sealed(owner_wrapping_key(master, secret, owner_id), wrapped, owner_key_aad(owner_id))
            except CryptoError:
                pass
        try:
            return open_sealed(master, wrapped, owner_key_aad(owner_id))
        except CryptoError:
            raise CryptoError(f"owner {owner_id}'s key does not open: its secret in {self.secrets.folder} is "
                              "missing or not this store's") from None

    def owner_key(self, owner_id: str) -> bytes:
        """The owner's data key. Erased or unknown owners have none (OwnerError)."""
        if owner_id in self._owner_keys:
            return self._owner_keys[owner_id]
        rows = self.db.query("SELECT wrapped_key FROM owners WHERE owner_id = :owner_id", {"owner_id": owner_id},
                             owner=owner_id)
        if not rows:
            raise OwnerError(f"no owner {owner_id}")
        if rows[0]["wrapped_key"] is None:
            raise OwnerError(f"owner {owner_id} was erased")
        if bytes(rows[0]["wrapped_key"]) == NO_SERVER_KEY:
            raise CryptoError(f"owner {owner_id}'s clips are sealed to their household: the server keeps no key "
                              "of theirs")
        key = self._unwrap(self.master_key, owner_id, rows[0]["wrapped_key"])
        self._owner_keys[owner_id] = key
        return key

    def forget_owner_key(self, owner_id: str) -> None:
        self._owner_keys.pop(owner_id, None)

    def has_server_key(self, owner_id: str) -> bool:
        """Does the store still wrap a data key for this live owner (one that opens the clips
        it sealed before the household had a key of its own)?"""
        rows = self.db.query("SELECT wrapped_key FROM owners WHERE owner_id = :owner_id", {"owner_id": owner_id},
                             owner=owner_id)
        return _server_key(rows[0] if rows else None) is not None

    def drop_server_key(self, cur: Cursor, owner_id: str) -> None:
        """Inside the caller's transaction, scoped to the owner: the owner's wrapped data key
        goes (NO_SERVER_KEY stands in its place, so the owner stays live). Shred the owner's
        secret once this commits (`shred_owner`): that is what an older backup's copy needs."""
        cur.execute("UPDATE owners SET wrapped_key = :none WHERE owner_id = :owner_id AND wrapped_key IS NOT NULL",
                    {"none": NO_SERVER_KEY, "owner_id": owner_id})
        self.forget_owner_key(owner_id)

    def shred_owner(self, owner_id: str) -> None:
        """Erasure's first step: the owner's secret goes, and with it every copy of their data key."""
        self.secrets.shred(owner_id)
        self.forget_owner_key(owner_id)

    def rewrap_all(self, cur: Cursor, owner_ids: list[str], new_master: bytes) -> int:
        """Inside the caller's transaction: wrap the quarantine key and every live owner's data
        key under `new_master` instead (the data keys themselves do not change, so no blob is
        touched; an owner whose key was under the master key alone gets a secret now). Each
        owner's row is changed in that owner's scope. Returns the owners."""
        row = cur.execute("SELECT value FROM meta WHERE key = 'quarantine_key'").fetchone()
        if row is None:
            raise StoreError("store has no quarantine key")
        quarantine = open_sealed(self.master_key, row["value"], QUARANTINE_KEY_AAD)
        cur.execute("UPDATE meta SET value = :value WHERE key = 'quarantine_key'",
                    {"value": bytes(seal(new_master, quarantine, QUARANTINE_KEY_AAD))})
        return sum(self._rewrap(cur, owner_id, new_master) for owner_id in owner_ids)

    def _rewrap(self, cur: Cursor, owner_id: str, new_master: bytes) -> bool:
        cur.scope(owner_id)
        wrapped = cur.execute("SELECT wrapped_key FROM owners WHERE owner_id = :owner_id",
                              {"owner_id": owner_id}).fetchone()
        if (held := _server_key(wrapped)) is None:
            return False  # erased, or sealed to the household only: nothing to carry over
        key = self._unwrap(self.master_key, owner_id, held)
        cur.execute("UPDATE owners SET wrapped_key = :wrapped WHERE owner_id = :owner_id",
                    {"wrapped": self._wrap(new_master, owner_id, key), "owner_id": owner_id})
        return True

    def move_out(self, owner_ids: list[str], transaction: Callable[[], AbstractContextManager[Cursor]]) -> int:
        """Once per store made before owner secrets: every live owner's key re-wrapped with a
        secret of its own (the same master key), so a copy of the database no longer opens
        with the master key alone. Returns the owners moved (0 once done)."""
        if self.db.query("SELECT 1 FROM meta WHERE key = 'owner_keys_outside'"):
            return 0
        with transaction() as cur:
            moved = 0
            for owner_id in owner_ids:
                cur.scope(owner_id)
                wrapped = cur.execute("SELECT wrapped_key FROM owners WHERE owner_id = :owner_id",
                                      {"owner_id": owner_id}).fetchone()
                if (held := _server_key(wrapped)) is None or self._moved(owner_id, held):
                    continue
                moved += self._rewrap(cur, owner_id, self.master_key)
            cur.execute(SET_META,
                        {"key": "owner_keys_outside", "value": b"1"})
        return moved

    def _moved(self, owner_id: str, wrapped: bytes) -> bool:
        secret = self.secrets.get(owner_id)
        if secret is None:
            return False
        try:
            open_sealed(owner_wrapping_key(self.master_key, secret, owner_id), wrapped, owner_key_aad(owner_id))
        except CryptoError:
            return False
        return True

    def export_keys(self) -> list[dict[str, str | None]]:
        """The public halves of every export signing key this store used (owner/signing.py)."""
        rows = self.db.query("SELECT value FROM meta WHERE key = 'export_keys'")
        return list(json.loads(bytes(rows[0]["value"]))) if rows else []

    def set_export_keys(self, keys: list[dict[str, str | None]], cur: Cursor) -> None:
        cur.execute(SET_META,
                    {"key": "export_keys", "value": json.dumps(keys).encode()})

    def opens_store(self, master: bytes) -> bool:
        """Whether `master` opens this store's quarantine key (which master key it is under)."""
        row = self.db.query("SELECT value FROM meta WHERE key = 'quarantine_key'")
        try:
            open_sealed(master, row[0]["value"], QUARANTINE_KEY_AAD)
        except (CryptoError, IndexError):
            return False
        return True
