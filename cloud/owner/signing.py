"""The store's export signing key: every archive carries signature.json, an Ed25519 signature
by this key over the SHA-256 of every other file in it (so over the manifest, which names
the owner, the export, every clip and the snapshot's audit head, and over devices.json,
which gives each device's chain end), so an archive cannot be edited, shortened or added to
without the signature failing, also when it is age-encrypted (age gives no authenticity).

The private key is made at `init` (or the first export of an older store) in a file beside
the master key (0600), never in the database or a backup; its public half, and every public
half the store has used, are kept in the database (`Keys.export_keys`), so any host, and the
owner (`earmark-cloud export-key`, the portal's export page), can check an archive offline.
`earmark-cloud keys rotate-export` makes a new key; archives signed by an earlier one still
verify, named as such.

What a signature proves: this store made this archive, and nothing in it changed since. What
it does not: that the store itself was honest when it made it (completeness against the
store is checked by verify-export with --data-dir), nor who may read it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from earmark.cloud.store.store import Store
from earmark.runtime.durable import write_file
from earmark.wire.timestamps import utc_now

KEY_FILE = "export-signing.key"
PREFIX = "ed25519:"
SEAL_SCHEMA = 1


def key_text(verify_key: VerifyKey) -> str:
    return PREFIX + base64.b64encode(bytes(verify_key)).decode("ascii")


def parse_key(text: str) -> VerifyKey | None:
    if not text.startswith(PREFIX):
        return None
    try:
        raw = base64.b64decode(text.removeprefix(PREFIX), validate=True)
        return VerifyKey(raw) if len(raw) == 32 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class KnownKey:
    key: str  # ed25519:<base64>
    since: str
    retired: str | None  # when a newer key took over; archives it signed still verify


def key_path(store: Store) -> Path:
    return store.master_key_path.parent / KEY_FILE


def known_keys(store: Store) -> list[KnownKey]:
    return [KnownKey(str(k["key"]), str(k["since"]), k.get("retired")) for k in store.keys.export_keys()]


def _remember(store: Store, keys: list[KnownKey]) -> None:
    with store.write() as cur:
        store.keys.set_export_keys([k.__dict__ for k in keys], cur)


def signing_key(store: Store) -> SigningKey:
    """The store's current signing key, made (and its public half recorded) if it has none."""
    path = key_path(store)
    if path.exists():
        key = SigningKey(base64.b64decode(path.read_text().strip()))
        if not any(k.key == key_text(key.verify_key) for k in known_keys(store)):
            _remember(store, [*known_keys(store), KnownKey(key_text(key.verify_key), utc_now(), None)])
        return key
    return rotate(store)


def rotate(store: Store) -> SigningKey:
    """A new signing key; the one before is kept as retired (its archives still verify)."""
    key = SigningKey.generate()
    now = utc_now()
    keys = [KnownKey(k.key, k.since, k.retired or now) for k in known_keys(store)]
    _remember(store, [*keys, KnownKey(key_text(key.verify_key), now, None)])
    write_file(key_path(store), base64.b64encode(bytes(key)) + b"\n")  # 0600, atomic
    store.audit.record("export_key_made", detail={"key": key_text(key.verify_key)})
    return key


def seal(key: SigningKey, owner_id: str, export_id: str, created: str, files: dict[str, str]) -> bytes:
    """signature.json: what is signed (the owner, the export, each file's SHA-256) and the signature."""
    body = signed_body(owner_id, export_id, created, files, key_text(key.verify_key))
    signature = key.sign(body).signature
    return json.dumps({"signed": json.loads(body), "signature": base64.b64encode(signature).decode("ascii")},
                      indent=1, sort_keys=True).encode() + b"\n"


def signed_body(owner_id: str, export_id: str, created: str, files: dict[str, str], key: str) -> bytes:
    return json.dumps({"schema": SEAL_SCHEMA, "owner_id": owner_id, "export_id": export_id, "created_at": created,
                       "key": key, "files": dict(sorted(files.items()))}, sort_keys=True,
                      separators=(",", ":")).encode()


@dataclass(frozen=True)
class Seal:
    owner_id: str
    export_id: str
    created_at: str
    key: str
    files: dict[str, str]


def open_seal(data: bytes, trusted: list[str]) -> tuple[Seal | None, str]:
    """The signed claims of a signature.json, if its signature verifies with one of the
    `trusted` keys; else (None, why not)."""
    try:
        document = json.loads(data)
        signed = document["signed"]
        body = signed_body(str(signed["owner_id"]), str(signed["export_id"]), str(signed["created_at"]),
                           {str(k): str(v) for k, v in signed["files"].items()}, str(signed["key"]))
        signature = base64.b64decode(document["signature"], validate=True)
        if set(document) != {"signed", "signature"} or signed.get("schema") != SEAL_SCHEMA:
            raise ValueError("fields export does not write")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"signature.json is malformed ({type(exc).__name__})"
    if signed["key"] not in trusted:
        return None, "the archive is signed by a key this store never used"
    verify_key = parse_key(str(signed["key"]))
    try:
        if verify_key is None:
            raise BadSignatureError("not a key")
        verify_key.verify(body, signature)
    except BadSignatureError:
        return None, "the archive's signature does not verify: it was changed after it was made"
    return Seal(str(signed["owner_id"]), str(signed["export_id"]), str(signed["created_at"]), str(signed["key"]),
                {str(k): str(v) for k, v in signed["files"].items()}), ""


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
