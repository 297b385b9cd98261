"""The store's keys: the master key (a file, never in the database) wraps the quarantine key
and each owner's data key, which the database holds wrapped. See crypto.py for the scheme."""

from __future__ import annotations

from earmark.cloud.store.crypto import (
    QUARANTINE_KEY_AAD,
    CryptoError,
    new_key,
    open_sealed,
    owner_key_aad,
    seal,
)
from earmark.cloud.store.database import Cursor, Database, StoreError
from earmark.cloud.store.ddl import insert
from earmark.wire.errors import UsageError


class OwnerError(UsageError, LookupError):
    """An owner-scoped call named an owner that does not exist or was erased."""


class Keys:
    def __init__(self, db: Database, master_key: bytes) -> None:
        self.db = db
        self.master_key = master_key
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
        """A fresh data key for a new owner, wrapped for its row."""
        return bytes(seal(self.master_key, new_key(), owner_key_aad(owner_id)))

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
        key = open_sealed(self.master_key, rows[0]["wrapped_key"], owner_key_aad(owner_id))
        self._owner_keys[owner_id] = key
        return key

    def forget_owner_key(self, owner_id: str) -> None:
        self._owner_keys.pop(owner_id, None)

    def rewrap_all(self, cur: Cursor, owner_ids: list[str], new_master: bytes) -> int:
        """Inside the caller's transaction: wrap the quarantine key and every live owner's data
        key under `new_master` instead (the data keys themselves do not change, so no blob is
        touched). Each owner's row is changed in that owner's scope. Returns the owners."""
        row = cur.execute("SELECT value FROM meta WHERE key = 'quarantine_key'").fetchone()
        if row is None:
            raise StoreError("store has no quarantine key")
        quarantine = open_sealed(self.master_key, row["value"], QUARANTINE_KEY_AAD)
        cur.execute("UPDATE meta SET value = :value WHERE key = 'quarantine_key'",
                    {"value": bytes(seal(new_master, quarantine, QUARANTINE_KEY_AAD))})
        count = 0
        for owner_id in owner_ids:
            cur.scope(owner_id)
            wrapped = cur.execute("SELECT wrapped_key FROM owners WHERE owner_id = :owner_id",
                                  {"owner_id": owner_id}).fetchone()
            if wrapped is None or wrapped["wrapped_key"] is None:
                continue  # erased: nothing to carry over
            key = open_sealed(self.master_key, wrapped["wrapped_key"], owner_key_aad(owner_id))
            cur.execute("UPDATE owners SET wrapped_key = :wrapped WHERE owner_id = :owner_id",
                        {"wrapped": bytes(seal(new_master, key, owner_key_aad(owner_id))), "owner_id": owner_id})
            count += 1
        return count

    def opens_store(self, master: bytes) -> bool:
        """Whether `master` opens this store's quarantine key (which master key it is under)."""
        row = self.db.query("SELECT value FROM meta WHERE key = 'quarantine_key'")
        try:
            open_sealed(master, row[0]["value"], QUARANTINE_KEY_AAD)
        except (CryptoError, IndexError):
            return False
        return True
