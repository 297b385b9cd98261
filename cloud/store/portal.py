"""The owner's portal's rows (cloud/portal): one-time invite links, passkeys, sign-in sessions.

Invite links and session cookies are random 256-bit tokens the store keeps only as SHA-256
hashes. An invite is single use and short-lived; a session ends after `idle_s` without a
request or `max_s` after sign-in, whichever comes first. Every invite, registration,
sign-in and sign-out is an audit event under its owner, so the owner's access log shows it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from earmark.cloud.store.audit import AuditLog
from earmark.cloud.store.database import Database
from earmark.cloud.store.ddl import insert
from earmark.wire.errors import UsageError
from earmark.wire.timestamps import format_utc, utc_now


def token_sha256(token: str) -> str:
    """What is kept of a link or cookie token: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


class PasskeyTaken(UsageError):
    """A registration named a credential id that is already registered (to whomever)."""


@dataclass(frozen=True)
class Passkey:
    credential_id: str  # base64url
    owner_id: str
    public_key: bytes
    sign_count: int


@dataclass(frozen=True)
class Session:
    owner_id: str
    csrf: str


SET_SIGN_COUNT = "UPDATE portal_passkeys SET sign_count = :count WHERE credential_id = :credential_id"


class PortalAccess:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db, self.audit = db, audit

    def invite(self, owner_id: str, ttl_s: int) -> str:
        """A new one-time link token for `owner_id`, valid `ttl_s` seconds."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.audit.write() as cur:
            cur.scope(owner_id)
            cur.execute(insert("portal_invites"), {"token_sha256": token_sha256(token), "owner_id": owner_id,
                                                   "created_at": format_utc(now), "used_at": None,
                                                   "expires_at": format_utc(now + timedelta(seconds=ttl_s))})
            self.audit.append(cur, "portal_invite_made", owner_id=owner_id, detail={"expires_in_s": ttl_s})
        return token

    def invited_owner(self, token: str) -> str | None:
        """The owner an unused, unexpired invite is for; None otherwise (it is not consumed)."""
        rows = self.db.query("SELECT owner_id, expires_at, used_at FROM portal_invites WHERE token_sha256 = :token",
                             {"token": token_sha256(token)})
        if not rows or rows[0]["used_at"] is not None or rows[0]["expires_at"] <= utc_now():
            return None
        return str(rows[0]["owner_id"])

    def register(self, token: str, passkey: Passkey) -> bool:
        """Use the invite up and keep its owner's new passkey, in one transaction; False if the
        invite was used, expired or is not that owner's meanwhile. PasskeyTaken (and the invite
        still unused) if the credential id is registered already, to anyone."""
        with self.audit.write() as cur:
            cur.scope(passkey.owner_id)
            cur.execute("UPDATE portal_invites SET used_at = :now WHERE token_sha256 = :token AND owner_id = :owner_id "
                        "AND used_at IS NULL AND expires_at > :now",
                        {"now": utc_now(), "token": token_sha256(token), "owner_id": passkey.owner_id})
            if cur.rowcount != 1:
                return False
            cur.execute(insert("portal_passkeys", conflict="credential_id"), {
                "credential_id": passkey.credential_id, "owner_id": passkey.owner_id,
                "public_key": passkey.public_key, "sign_count": passkey.sign_count, "created_at": utc_now()})
            if cur.rowcount != 1:  # (rolls the invite's use back)
                raise PasskeyTaken("that passkey is registered already")
            self.audit.append(cur, "portal_passkey_registered", owner_id=passkey.owner_id)
        return True

    def passkey(self, credential_id: str) -> Passkey | None:
        rows = self.db.query("SELECT credential_id, owner_id, public_key, sign_count FROM portal_passkeys "
                             "WHERE credential_id = :credential_id", {"credential_id": credential_id})
        if not rows:
            return None
        r = rows[0]
        return Passkey(r["credential_id"], r["owner_id"], bytes(r["public_key"]), int(r["sign_count"]))

    def access_of(self, owner_id: str) -> dict[str, list[dict[str, object]]]:
        """What the portal keeps about the owner's ways in, for their export: each passkey's
        creation and use count, each live session's start and last request; no key, token or
        CSRF secret."""
        keys = self.db.query("SELECT created_at, sign_count FROM portal_passkeys WHERE owner_id = :owner_id "
                             "ORDER BY created_at", {"owner_id": owner_id})
        sessions = self.db.query("SELECT created_at, seen_at FROM portal_sessions WHERE owner_id = :owner_id "
                                 "ORDER BY created_at", {"owner_id": owner_id})
        return {"passkeys": [dict(r) for r in keys], "sessions": [dict(r) for r in sessions]}

    def passkeys_of(self, owner_id: str) -> list[str]:
        """The owner's passkeys' credential ids."""
        return [r["credential_id"] for r in self.db.query(
            "SELECT credential_id FROM portal_passkeys WHERE owner_id = :owner_id ORDER BY created_at",
            {"owner_id": owner_id})]

    def forget(self, owner_id: str) -> None:
        """No way in for the owner any more (an erasure): their invites, passkeys and sessions."""
        with self.audit.write() as cur:
            cur.scope(owner_id)
            removed = 0
            for table in ("portal_sessions", "portal_passkeys", "portal_invites"):
                cur.execute(f"DELETE FROM {table} WHERE owner_id = :owner_id", {"owner_id": owner_id})
                removed += cur.rowcount
            if removed:
                self.audit.append(cur, "portal_access_removed", owner_id=owner_id)

    def passkey_used(self, passkey: Passkey, sign_count: int) -> None:
        """The passkey's new sign count after a check other than a sign-in (the erasure's), so
        a cloned authenticator replaying an older count is still found out."""
        with self.db.transaction() as cur:
            cur.scope(passkey.owner_id)
            cur.execute(SET_SIGN_COUNT, {"count": sign_count, "credential_id": passkey.credential_id})

    def sign_in(self, passkey: Passkey, sign_count: int, client: str) -> tuple[str, Session]:
        """A new session for the passkey's owner: (cookie token, session)."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
        with self.audit.write() as cur:
            cur.scope(passkey.owner_id)
            cur.execute(SET_SIGN_COUNT, {"count": sign_count, "credential_id": passkey.credential_id})
            cur.execute(insert("portal_sessions"), {"token_sha256": token_sha256(token), "owner_id": passkey.owner_id,
                                                    "csrf": csrf, "created_at": now, "seen_at": now})
            self.audit.append(cur, "portal_signed_in", owner_id=passkey.owner_id, detail={"client": client})
        return token, Session(passkey.owner_id, csrf)

    def session(self, token: str, idle_s: float, max_s: float) -> Session | None:
        """The live session behind a cookie, its idle clock restarted; None if there is none."""
        now = time.time()
        rows = self.db.query("SELECT owner_id, csrf, created_at, seen_at FROM portal_sessions "
                             "WHERE token_sha256 = :token", {"token": token_sha256(token)})
        if not rows:
            return None
        r = rows[0]
        if now - r["seen_at"] > idle_s or now - r["created_at"] > max_s:
            self.end(token, r["owner_id"], "expired")
            return None
        with self.db.transaction() as cur:
            cur.execute("UPDATE portal_sessions SET seen_at = :now WHERE token_sha256 = :token",
                        {"now": now, "token": token_sha256(token)})
        return Session(str(r["owner_id"]), str(r["csrf"]))

    def end(self, token: str, owner_id: str, why: str) -> None:
        with self.audit.write() as cur:
            cur.scope(owner_id)
            cur.execute("DELETE FROM portal_sessions WHERE token_sha256 = :token", {"token": token_sha256(token)})
            self.audit.append(cur, "portal_signed_out", owner_id=owner_id, detail={"why": why})
