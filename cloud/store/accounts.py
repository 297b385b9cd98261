"""Broker logins (devices, whose username is their device id, and ingesters) and where the
broker's generated files live. Only the Mosquitto hash of a password is kept; the password
itself goes once into a pairing bundle or a 0600 file."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.database import Database
from earmark.cloud.store.ddl import SET_META, insert
from earmark.wire.timestamps import utc_now

BROKER_DIR_KEY = "broker_dir"
BROKER_URL_KEY = "broker_url"
BROKER_PENDING_KEY = "broker_pending_since"  # set while the running broker may lag the registry
SHARE_GROUP_KEY = "broker_share_group"
INGESTER_KEY_PREFIX = "ingester:"
MARKS_PENDING_PREFIX = "marks_pending:"  # a device the household's marks have not reached yet


@dataclass(frozen=True)
class Login:
    username: str
    role: str  # "device" or "ingester"
    password_hash: str


class BrokerAccounts:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db, self.audit = db, audit

    def put(self, username: str, role: str, password_hash: str) -> None:
        """A login, replacing any earlier one of that name."""
        with self.audit.write() as cur:
            cur.execute(insert("broker_accounts", conflict="username",
                               update=("role", "password_hash", "created_at", "revoked_at")),
                        {"username": username, "role": role, "password_hash": password_hash, "created_at": utc_now(),
                         "revoked_at": None})
            self.audit.append(cur, "broker_login_created", device_id=username if role == "device" else None,
                              detail={"username": username, "role": role})

    def revoke(self, username: str) -> None:
        """Idempotent: a login already revoked (or never made) changes nothing and logs nothing."""
        live = "WHERE username = :username AND revoked_at IS NULL"
        if not self.db.query(f"SELECT 1 FROM broker_accounts {live}", {"username": username}):
            return
        with self.audit.write() as cur:
            cur.execute(f"UPDATE broker_accounts SET revoked_at = :now {live}",
                        {"now": utc_now(), "username": username})
            self.audit.append(cur, "broker_login_revoked", detail={"username": username})

    def active(self) -> list[Login]:
        rows = self.db.query("SELECT username, role, password_hash FROM broker_accounts "
                             "WHERE revoked_at IS NULL ORDER BY role DESC, username")
        return [Login(**dict(r)) for r in rows]

    def revoked_devices(self) -> list[str]:
        """Devices whose login was revoked (their retained status is cleared at each sync)."""
        rows = self.db.query("SELECT username FROM broker_accounts WHERE role = 'device' "
                             "AND revoked_at IS NOT NULL ORDER BY username")
        return [str(r["username"]) for r in rows]

    def remember_broker(self, folder: Path, url: str) -> None:
        """Where `broker config` wrote the broker's files, and the address devices use."""
        with self.audit.write() as cur:
            for key, text in ((BROKER_DIR_KEY, str(folder)), (BROKER_URL_KEY, url)):
                cur.execute(SET_META, {"key": key, "value": text.encode()})

    def mark_broker_pending(self) -> None:
        """A login change may not have reached the running broker yet (kept until confirmed)."""
        if self._meta(BROKER_PENDING_KEY) is None:
            self._set_meta(BROKER_PENDING_KEY, utc_now())

    def mark_broker_synced(self) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM meta WHERE key = :key", {"key": BROKER_PENDING_KEY})

    def broker_pending_since(self) -> str | None:
        return self._meta(BROKER_PENDING_KEY)

    def note_marks(self, sent: list[str], unsent: list[str]) -> None:
        """Which devices the broker took their marks for, and which it could not (yet)."""
        with self.db.transaction() as cur:
            cur.executemany("DELETE FROM meta WHERE key = :key", [{"key": MARKS_PENDING_PREFIX + d} for d in sent])
            cur.executemany(SET_META, [{"key": MARKS_PENDING_PREFIX + d, "value": utc_now().encode()} for d in unsent])

    def marks_pending(self) -> list[str]:
        rows = self.db.query("SELECT key FROM meta WHERE key LIKE :prefix ORDER BY key",
                             {"prefix": f"{MARKS_PENDING_PREFIX}%"})
        return [str(r["key"]).removeprefix(MARKS_PENDING_PREFIX) for r in rows]

    def _set_meta(self, key: str, text: str) -> None:
        with self.db.transaction() as cur:
            cur.execute(SET_META, {"key": key, "value": text.encode()})

    def share_group(self) -> str:
        """The ingesters' shared-subscription group: a name made at random once per store, known
        to its ingesters alone. Mosquitto grants any login any subscription and checks read
        access only when it delivers; a device that joined a known group would be handed a
        share of everyone's clips, and drop them. A group it cannot name it cannot join."""
        with self.db.transaction() as cur:  # (several ingesters may start at once: the first one's stays)
            cur.execute(insert("meta", conflict="key"),
                        {"key": SHARE_GROUP_KEY, "value": f"earmark-ingest-{secrets.token_hex(12)}".encode()})
        return self._meta(SHARE_GROUP_KEY) or ""

    def note_ingester(self, client_id: str, state: str, group: str) -> None:
        """An ingester's place in the shared-subscription group: running, stopped (its session
        and share of clips wait for it) or retired (it left the group for good)."""
        record = {"state": state, "group": group, "at": utc_now()}
        self._set_meta(f"{INGESTER_KEY_PREFIX}{client_id}", json.dumps(record))

    def ingesters(self) -> list[dict[str, str]]:
        rows = self.db.query("SELECT key, value FROM meta WHERE key LIKE :prefix ORDER BY key",
                             {"prefix": f"{INGESTER_KEY_PREFIX}%"})
        return [{"client_id": str(r["key"]).removeprefix(INGESTER_KEY_PREFIX), **json.loads(bytes(r["value"]))}
                for r in rows]

    def broker_dir(self) -> Path | None:
        value = self._meta(BROKER_DIR_KEY)
        return Path(value) if value else None

    def broker_url(self) -> str | None:
        return self._meta(BROKER_URL_KEY)

    def _meta(self, key: str) -> str | None:
        rows = self.db.query("SELECT value FROM meta WHERE key = :key", {"key": key})
        return bytes(rows[0]["value"]).decode() if rows else None
