"""Owner secrets: the half of each owner's key-encryption key that is not the master key, one
file per owner in a folder beside the master key (`owner-keys/`, 0700, each file 0600),
outside the data dir, the database and every backup `earmark-cloud backup` makes.

An owner's data key is wrapped in the database under HKDF(master key, owner secret)
(crypto.py: `owner_wrapping_key`), so neither half alone opens it: a copy of the database
(a backup, a dump, a disk image) plus the master key opens nothing of an owner whose secret
was shredded, and erasure shreds it first. Quarantined payloads that name an owner are
sealed under a key that needs that owner's secret as well, so they go with it.

Shredding overwrites the file with random bytes, syncs, unlinks and syncs the folder. On a
copy-on-write or wear-levelled disk the old blocks may survive the overwrite; the unlink is
what is promised, the overwrite is a courtesy.

The folder must be kept like the master key (a host without it opens no owner's data), and
any copy of it holds the secrets of owners erased after the copy was taken: keep copies no
longer than the erasure window you promise (README, "Keys and backups").
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from earmark.cloud.store.crypto import KEY_BYTES, MasterKeyError, new_key
from earmark.runtime.durable import fsync_dir, write_file

FOLDER = "owner-keys"
_OWNER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class OwnerSecrets:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, owner_id: str) -> Path:
        if not _OWNER_ID.match(owner_id):
            raise ValueError(f"{owner_id[:40]!r} is not an owner id")
        return self.folder / f"{owner_id}.key"

    def make(self, owner_id: str) -> bytes:
        """A new secret for the owner, on disk (synced) before it is used; an existing one is kept."""
        found = self.get(owner_id)
        if found is not None:
            return found
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.folder / f".{owner_id}.{os.getpid()}.{os.urandom(4).hex()}"
        write_file(temp, base64.b64encode(new_key()) + b"\n", sync_dir=False)
        try:
            os.link(temp, self._path(owner_id))  # never replaces: two processes making it agree on one
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        fsync_dir(self.folder)
        secret = self.get(owner_id)
        assert secret is not None
        return secret

    def get(self, owner_id: str) -> bytes | None:
        """The owner's secret; None if it has none (erased, or made before owner secrets existed)."""
        try:
            text = self._path(owner_id).read_bytes().strip()
        except FileNotFoundError:
            return None
        try:
            secret = base64.b64decode(text, validate=True)
        except binascii.Error:
            secret = b""
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(f"owner key file {self._path(owner_id)} is damaged: restore it from the key "
                                 "folder's own copy")
        return secret

    def shred(self, owner_id: str) -> bool:
        """Overwrite, sync and unlink the owner's secret. True if there was one."""
        path = self._path(owner_id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return False
        try:
            os.write(fd, os.urandom(max(os.fstat(fd).st_size, 64)))
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        fsync_dir(self.folder)
        return True

    def owners(self) -> set[str]:
        """Every owner that has a secret here."""
        if not self.folder.is_dir():
            return set()
        return {p.name.removesuffix(".key") for p in self.folder.glob("*.key") if _OWNER_ID.match(p.stem)}
