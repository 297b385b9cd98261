"""The store's schema, described once (SQLAlchemy Core: tables, columns, keys, constraints,
indexes), for both backends. store/ddl.py renders it as each dialect's DDL, PostgreSQL's
row-level-security policies and grants included; store/gateways.py builds the cross-owner
questions on it; store/migrations.py takes existing stores to it. Nothing else in Earmark
writes DDL.

Each table says in `info` who may see its rows:
  owner  = "scope"  the rows are one owner's (owner_id): on PostgreSQL, row-level security
                    shows and takes only rows of the owner the transaction is scoped to
           "log"    the audit log: an owner reads their own events (and, being erased, those
                    of no owner);
                    anyone may append an event that names no owner or the scoped one; an
                    update may only redact into the scoped owner (erasure); nobody deletes
  service = what the service role may do on PostgreSQL (default: read and write)
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
READ_WRITE = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _text(name: str, nullable: bool = False, **kw: object) -> Column[str]:
    return Column(name, Text, nullable=nullable, **kw)  # type: ignore[arg-type]


owners = Table(
    "owners", metadata,
    _text("owner_id", primary_key=True),
    _text("display_name"),
    _text("created_at"),
    _text("erased_at", nullable=True),
    Column("wrapped_key", LargeBinary),  # the owner's data key, wrapped by the master key; NULL once erased
    _text("age_recipient", nullable=True),  # the owner's own age public key: exports are encrypted to it
    Column("retention_days", Integer, nullable=True),  # the owner's own auto-delete; NULL: the service's
    info={"owner": "scope"},
)

devices = Table(
    "devices", metadata,
    _text("device_id", primary_key=True),
    _text("public_key"),
    _text("created_at"),
    _text("revoked_at", nullable=True),
    Column("last_seq", BigInteger),  # the highest wire v2 chain position stored from the device
    UniqueConstraint("public_key", name="devices_public_key_key"),  # one key, one device, ever
)

# Who a device belongs to: one binding for the life of its key (store/registry.py).
bindings = Table(
    "bindings", metadata,
    Column("device_id", Text, ForeignKey("devices.device_id"), nullable=False),
    Column("owner_id", Text, ForeignKey("owners.owner_id"), nullable=False),
    _text("bound_at"),
    _text("unbound_at", nullable=True),
    PrimaryKeyConstraint("device_id", "bound_at", name="bindings_pkey"),
    info={"owner": "scope"},
)

clips = Table(
    "clips", metadata,
    _text("clip_id", primary_key=True),
    Column("owner_id", Text, ForeignKey("owners.owner_id"), nullable=False),
    Column("device_id", Text, ForeignKey("devices.device_id"), nullable=False),
    _text("captured_at"),
    Column("duration_ms", Integer, nullable=False),
    _text("trigger"),
    _text("wake_word", nullable=True),
    Column("wake_score", Double),
    _text("envelope_sha256"),
    Column("envelope_bytes", Integer, nullable=False),
    _text("blob_path"),  # relative to the blob root: <owner_id>/<xx>/<clip_id>.bin
    _text("stored_at"),
    Column("seq", BigInteger),  # wire v2's per-device counter; NULL for v1 clips
    info={"owner": "scope"},
)
CLIP_COLUMNS = tuple(c.name for c in clips.columns)
# The owner's clips in (captured_at, clip_id) order from the index alone: an export or purge
# reads the owner's few contiguous index pages, whatever else the store holds. PostgreSQL
# carries the other columns as INCLUDE; SQLite, which has no INCLUDE, as trailing keys.
CLIPS_BY_OWNER_KEYS = ("owner_id", "captured_at", "clip_id")
CLIPS_BY_OWNER_INCLUDE = tuple(c for c in CLIP_COLUMNS if c not in CLIPS_BY_OWNER_KEYS)
Index("clips_by_owner_time", *(clips.c[c] for c in CLIPS_BY_OWNER_KEYS),
      postgresql_include=list(CLIPS_BY_OWNER_INCLUDE),
      info={"sqlite_keys": CLIPS_BY_OWNER_KEYS + CLIPS_BY_OWNER_INCLUDE})

quarantine = Table(
    "quarantine", metadata,
    _text("quarantine_id", primary_key=True),
    _text("received_at"),
    _text("topic"),
    _text("reason"),
    _text("detail"),
    _text("envelope_sha256"),
    Column("envelope_bytes", Integer, nullable=False),
    _text("blob_path"),
    _text("device_id", nullable=True),  # the topic's device, if it named one
    _text("claimed_owner_id", nullable=True),  # the owner the header claims, if it parsed
    Column("seq", BigInteger),  # a refused clip's chain position, if its signature verified
    UniqueConstraint("envelope_sha256", name="quarantine_envelope_sha256_key"),
)
Index("quarantine_by_device", quarantine.c.device_id, quarantine.c.received_at)
Index("quarantine_by_claimed_owner", quarantine.c.claimed_owner_id)

audit = Table(
    "audit", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    _text("at"),
    _text("event"),
    _text("owner_id", nullable=True),
    _text("device_id", nullable=True),
    _text("clip_id", nullable=True),
    _text("detail"),
    _text("prev_hash"),
    _text("hash"),
    info={"owner": "log", "service": ("SELECT", "INSERT", "UPDATE")},
)

# The audit chain's newest (seq, hash) in one row: appending locks it, so several writers
# take turns and the chain stays a chain.
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    _text("hash"),
    CheckConstraint("id = 1", name="audit_head_id_check"),
    info={"service": ("SELECT", "UPDATE")},
)

meta = Table(
    "meta", metadata,
    _text("key", primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

# Broker logins: devices (username = device id) and ingesters; only the Mosquitto hash of
# each password is kept.
broker_accounts = Table(
    "broker_accounts", metadata,
    _text("username", primary_key=True),
    _text("role"),
    _text("password_hash"),
    _text("created_at"),
    _text("revoked_at", nullable=True),
    CheckConstraint("role IN ('device', 'ingester')", name="broker_accounts_role_check"),
)

# What was deleted (by its owner, by retention, by erasure): ids, hashes and chain positions,
# no owner and no content, so a replay is a duplicate and an export can tell a deletion on
# record from a clip removed behind its back.
deleted_clips = Table(
    "deleted_clips", metadata,
    _text("clip_id", primary_key=True),
    _text("envelope_sha256"),
    _text("deleted_at"),
    _text("device_id", nullable=True),
    Column("seq", BigInteger),
)
Index("deleted_clips_by_device", deleted_clips.c.device_id, deleted_clips.c.seq)

# The owners' portal: links and sessions kept as SHA-256 hashes only. These rows name an owner
# but hold nothing of theirs; they are looked up before the owner is known.
portal_invites = Table(
    "portal_invites", metadata,
    _text("token_sha256", primary_key=True),
    _text("owner_id"),
    _text("created_at"),
    _text("expires_at"),
    _text("used_at", nullable=True),
)
portal_passkeys = Table(
    "portal_passkeys", metadata,
    _text("credential_id", primary_key=True),  # base64url
    _text("owner_id"),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    _text("created_at"),
)
Index("portal_passkeys_by_owner", portal_passkeys.c.owner_id)
portal_sessions = Table(
    "portal_sessions", metadata,
    _text("token_sha256", primary_key=True),
    _text("owner_id"),
    _text("csrf"),
    Column("created_at", Double, nullable=False),  # Unix seconds: the idle and absolute timeouts
    Column("seen_at", Double, nullable=False),
)

# A recording its owner marked "I did not mean to wake it": gone with the clip.
clip_marks = Table(
    "clip_marks", metadata,
    Column("clip_id", Text, ForeignKey("clips.clip_id"), primary_key=True),
    _text("owner_id"),
    _text("mark"),
    _text("marked_at"),
    CheckConstraint("mark IN ('not_meant')", name="clip_marks_mark_check"),
    info={"owner": "scope"},
)
Index("clip_marks_by_owner", clip_marks.c.owner_id)

# What each device is to learn from its household's "not meant for me" marks (sent to it as
# wire/marks.py's message): the clip ids, kept after the clip is deleted (the device keeps
# what it learnt), deleted when the mark is taken off and when the owner is erased.
device_marks = Table(
    "device_marks", metadata,
    _text("clip_id", primary_key=True),
    _text("owner_id"),
    _text("device_id"),
    _text("marked_at"),
    info={"owner": "scope"},
)
Index("device_marks_by_device", device_marks.c.device_id, device_marks.c.marked_at)
Index("device_marks_by_owner", device_marks.c.owner_id)

# Each device's online state from its retained status topic, under the device's owner.
device_presence = Table(
    "device_presence", metadata,
    _text("device_id", primary_key=True),
    _text("owner_id"),
    Column("online", Boolean(create_constraint=False), nullable=False),
    _text("changed_at"),  # when the ingester saw this state arrive
    _text("status"),  # the device's own status JSON ('{}' when offline)
    info={"owner": "scope"},
)
Index("device_presence_by_owner", device_presence.c.owner_id)

# The household's age recipients (age1…, public): the device seals each clip's audio to them,
# and the ingester stores only clips sealed to recipients the owner holds. More than one over
# time (rotation); a retired one still names the identity that opens older clips.
household_recipients = Table(
    "household_recipients", metadata,
    Column("owner_id", Text, ForeignKey("owners.owner_id"), nullable=False),
    _text("recipient"),
    _text("added_at"),
    _text("retired_at", nullable=True),  # no longer sealed to by newly paired devices
    PrimaryKeyConstraint("owner_id", "recipient", name="household_recipients_pkey"),
    info={"owner": "scope"},
)

# The household's identity, wrapped where the server cannot open it (store/household.py): to
# each member's own key (kind 'member', join_id naming the member), once to the recovery code
# (age scrypt), and, after a rotation, each older identity to the newer one ('previous'). Age
# files, made and opened in the members' browsers alone.
household_wraps = Table(
    "household_wraps", metadata,
    _text("wrap_id", primary_key=True),
    Column("owner_id", Text, ForeignKey("owners.owner_id"), nullable=False),
    _text("kind"),
    Column("wrapped", LargeBinary, nullable=False),
    _text("created_at"),
    _text("join_id", nullable=True),  # kind 'member': the join it answers (household_joins)
    CheckConstraint("kind IN ('recovery', 'member', 'previous')", name="household_wraps_kind_check"),
    info={"owner": "scope"},
)
Index("household_wraps_by_owner", household_wraps.c.owner_id)

# Each member's own key: its public half, and its identity wrapped for the member's passkey
# (age's fido2prf stanza). A newcomer asks to join with one (confirmed_at NULL) until a member
# compares its fingerprint and, in their own browser, wraps the household identity to it.
household_joins = Table(
    "household_joins", metadata,
    _text("join_id", primary_key=True),
    Column("owner_id", Text, ForeignKey("owners.owner_id"), nullable=False),
    _text("member_recipient"),
    Column("member_wrap", LargeBinary, nullable=False),
    _text("created_at"),
    _text("confirmed_at", nullable=True),
    info={"owner": "scope"},
)
Index("household_joins_by_owner", household_joins.c.owner_id)

# Sealed clips, when the blob store is the database (blob_store = "database", store/blobs.py):
# replicated, failed over and backed up with the rows, each under its owner's row-level
# security, and only at a path under that owner's prefix (blobs/<owner_id>/, or set-aside/
# blobs/<owner_id>/ for one the sweep could not account for).
clip_blobs = Table(
    "clip_blobs", metadata,
    _text("path", primary_key=True),
    _text("owner_id"),  # no foreign key: a restore keeps blobs newer than its owners' rows, for the sweep
    Column("sealed", LargeBinary, nullable=False),
    Column("written_at", Double, nullable=False),  # Unix seconds: the sweep's grace period
    CheckConstraint("substr(path, 1, length(owner_id) + 7) = 'blobs/' || owner_id || '/' OR "
                    "substr(path, 1, length(owner_id) + 17) = 'set-aside/blobs/' || owner_id || '/'",
                    name="clip_blobs_path_check"),
    info={"owner": "scope"},
)
Index("clip_blobs_by_owner", clip_blobs.c.owner_id)
# Refused payloads' sealed bytes (quarantine/<id>.bin), tied to no owner, in the same database.
quarantine_blobs = Table(
    "quarantine_blobs", metadata,
    _text("path", primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("written_at", Double, nullable=False),
    CheckConstraint("substr(path, 1, 11) = 'quarantine/' OR substr(path, 1, 21) = 'set-aside/quarantine/'",
                    name="quarantine_blobs_path_check"),
)

BLOB_TABLES = (clip_blobs.name, quarantine_blobs.name)  # blob_store = "database"
OWNER_TABLES = tuple(t.name for t in metadata.sorted_tables if t.info.get("owner"))


def service_rights(table: Table) -> tuple[str, ...]:
    """What the service role may do to the table on PostgreSQL."""
    rights: tuple[str, ...] = table.info.get("service", READ_WRITE)
    return rights
