"""Everything the cloud keeps that is linked to an owner, in one declared list: each table,
each kind of file and each broker state, with what an export gives the owner of it and what
erasure does to it. Tests hold the store to this list on both backends
(tests/integration/test_owner_inventory.py): a table, a file kind or a topic added without an
entry fails them, and so does an erasure that leaves an owner's row the list does not name.

`remains` says what an erasure leaves, and why; "" means nothing of the owner's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Holding:
    exported: str  # what the owner's export gives of it ("" if nothing: `why_not` says why)
    erased: str  # what erasure does (cloud/owner/erasure.py, its numbered steps)
    remains: str = ""  # what erasure leaves of the owner's, and why
    why_not: str = ""


NOT_OWNERS = "holds nothing linked to an owner"

TABLES: dict[str, Holding | str] = {
    "owners": Holding("README.txt and manifest.json: the owner's id, name and since when",
                      "1. the wrapped data key destroyed, the name blanked, erased_at set",
                      remains="the row as a tombstone (id and erased_at): an erased id is never reused or "
                              "restored, and the ingester refuses clips naming it"),
    "bindings": Holding("devices.json: each device's binding to the owner (bound_at, unbound_at)",
                        "kept", remains="device id, owner id and times: a device's owner is decided from its "
                                        "whole binding history, which an erasure must not rewrite"),
    "devices": Holding("devices.json: id, public key, created_at, revoked_at, chain end",
                       "3. revoked (the broker login too)",
                       remains="the revoked row (no owner column): its key may never be enrolled again"),
    "clips": Holding("one WAV per clip, and its row in manifest.json, clips.csv and index.html",
                     "2. deleted, blobs first"),
    "clip_blobs": Holding("the clips' audio, in the WAVs (blob_store = \"database\")",
                          "2. the owner's rows deleted, before the clips' rows"),
    "household_recipients": Holding("your-data.json: the household's keys (public), when added and retired",
                                    "1. deleted with the owner's key"),
    "household_wraps": Holding("", "1. deleted with the owner's key",
                               why_not="the household's identity wrapped for its passkeys and recovery code: "
                                       "ciphertext nobody but the household opens, and no use outside the portal"),
    "household_joins": Holding("", "1. deleted with the owner's key",
                               why_not="members' public keys and their own keys wrapped for their passkeys: "
                                       "ciphertext, of no use outside the portal"),
    "clip_marks": Holding("manifest.json's `mark` and index.html", "2. deleted with the clips"),
    "device_marks": Holding("manifest.json's `mark`, for the recordings still kept", "2. deleted with the clips",
                            why_not="a marked recording's id stays here after the recording is deleted, so "
                                    "its device keeps what it learnt; the id alone, no content"),
    "deleted_clips": Holding("the chain check: a deletion on record is not a gap",
                             "kept", remains="clip ids, envelope hashes, device ids and chain positions of "
                                             "deleted clips (no owner, no content): a replay stays a duplicate"),
    "quarantine": Holding("", "4. purged: every item from their devices or claiming them, blobs first",
                          why_not="refused payloads are not recordings the store accepted"),
    "audit": Holding("the manifest's audit_seq; the portal's access log shows them",
                     "8. redacted: their events and those of no owner naming their devices",
                     remains="one owner_erased record (counts only), and each redacted event's place "
                             "in the chain (seq, owner id, hashes)"),
    "quarantine_blobs": Holding("", "4. deleted with their quarantine rows; sealed with the secrets of the owners "
                                    "they name", why_not="as the quarantine table"),
    "portal_invites": Holding("", "5. deleted", why_not="link hashes only"),
    "portal_passkeys": Holding("", "5. deleted", why_not="public keys of the owner's passkeys"),
    "portal_sessions": Holding("", "5. deleted", why_not="session hashes only"),
    "device_presence": Holding("", "6. deleted", why_not="the devices' last status, shown live on the portal"),
    "broker_accounts": Holding("", "3. the devices' logins revoked", why_not="password hashes",
                               remains="each revoked login's row (device id, times): a login is never reused"),
    "audit_head": NOT_OWNERS,
    "meta": NOT_OWNERS + " (the store's settings, keys' public halves, ingesters' states)",
}

# The first path component of every file the store makes, in its data dir and in the key
# folder beside the master key.
DATA_FILES: dict[str, Holding | str] = {
    "earmark.db": "the SQLite tables above",
    "earmark.db-wal": "the SQLite tables above",
    "earmark.db-shm": "the SQLite tables above",
    "audit.head": NOT_OWNERS + " (the audit chain's newest seq and hash)",
    "blobs": Holding("the clips' audio, in the WAVs (sealed clips as their devices sent them: the household's "
                     "ciphertext)", "2. blobs/<owner id>/ deleted"),
    "quarantine": Holding("", "4. deleted; sealed with the secrets of the owners they name, so a copy does "
                              "not open after the erasure", why_not="as the quarantine table"),
    "set-aside": Holding("", "2. set-aside/blobs/<owner id>/ deleted",
                         why_not="blobs the sweep could not account for, for a person to look at"),
    "portal-exports": Holding("an export the portal prepared, waiting for its download",
                              "7. portal-exports/<owner id>/ deleted"),
    "broker.toml": NOT_OWNERS + " (the ingester's broker settings)",
    "cloud.toml": NOT_OWNERS + " (settings)",
}
KEY_FILES: dict[str, Holding | str] = {
    "master.key": NOT_OWNERS + " (wraps every owner's key with their secret)",
    "owner-keys": Holding("", "1. owner-keys/<owner id>.key shredded first: every copy of their data key, "
                              "in any backup, stops opening", why_not="the secret that wraps their data key"),
    "erasures.ledger": Holding("", "0. the erasure is written here first",
                               remains="owner id and time: a restore from an older backup is erased again",
                               why_not="outside the database on purpose"),
    "deletions.ledger": Holding("", "kept: its entries of an erased owner's are passed over",
                                remains="owner id, the deleted clips' ids and time: a restore from an older backup "
                                        "deletes them again", why_not="outside the database on purpose"),
    "export-signing.key": NOT_OWNERS + " (signs exports)",
}

# Broker state per topic kind (earmark.wire.topics): only a retained message outlives its delivery.
TOPICS: dict[str, Holding | str] = {
    "clip_topic": "not retained: delivered to the ingesters and gone once acked",
    "receipt_topic": "not retained: delivered to the device's session",
    "status_topic": Holding("", "3. the retained status cleared at the broker sync that follows the revocation",
                            why_not="the device's own last status (what it heard, when it was online)"),
    "marks_topic": Holding("", "3. the retained marks cleared at the broker sync that follows the revocation",
                           why_not="ids of recordings marked not meant, for the device that made them"),
}
