"""Where sealed blobs live, behind one interface (`BlobStore`) with three backends:

- `Blobs` (blob_store = "files", the embedded default): files under the data dir, written
  whole and durably (temp file, fsync, rename, fsync dir) so that a crash leaves a blob
  entire or absent. With several ingesters, a filesystem they share.
- `TableBlobs` (blob_store = "database"): rows of the store's own database (clip_blobs,
  quarantine_blobs), so ingesters on any host share them through PostgreSQL, and they are
  replicated to its standby, failed over and backed up with the rows. Each clip blob is in
  its owner's row-level-security scope, at a path the table's check holds to that owner's
  prefix; a query without the owner sees none.

- `S3Blobs` (blob_store = "s3", store/s3blobs.py): objects in an S3-compatible bucket.

Paths are the same on all three: `blobs/<owner_id>/<clip_id>.bin` for clips,
`quarantine/<id>.bin` for refused payloads. On both a blob is written, in a commit of its
own, before the row that points at it, so a crash leaves at most a blob without a row,
which the sweep accounts for (store/store.py)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from earmark.cloud.store.database import Database, Row, StoreUnavailable
from earmark.cloud.store.ddl import insert
from earmark.runtime.durable import TEMP_PREFIX, Data, joined, write_file, write_files

if TYPE_CHECKING:
    from earmark.cloud.settings import S3Settings

CLIPS = "blobs"
QUARANTINE = "quarantine"
SET_ASIDE = "set-aside"  # blobs the sweep could not account for, kept for a person to look at
PORTAL_EXPORTS = "portal-exports"  # <owner id>/: an export the portal prepared, waiting for its download
T = TypeVar("T")


def clip_blob(owner_id: str, clip_id: str) -> str:
    return f"{CLIPS}/{owner_id}/{clip_id}.bin"


def portal_export_dir(data_dir: Path, owner_id: str) -> Path:
    """Where the portal prepares the owner's export: erasure removes it, from any process."""
    return Path(data_dir) / PORTAL_EXPORTS / owner_id


def quarantine_blob(quarantine_id: str) -> str:
    return f"{QUARANTINE}/{quarantine_id}.bin"


class BlobStore(Protocol):
    def write(self, relative: str, data: Data) -> None: ...

    def write_many(self, blobs: list[tuple[str, Data]], keep_existing: bool = False) -> set[str]:
        """Each blob whole and durable before this returns; StoreUnavailable if refused. With
        `keep_existing`, a blob already at a path is not touched, and those paths are returned
        (a new clip's bytes must never replace a stored clip's)."""

    def read(self, relative: str) -> bytes:
        """The blob's bytes; FileNotFoundError if it is not there."""

    def exists(self, relative: str) -> bool: ...

    def remove(self, relative: str) -> None: ...

    def remove_many(self, relatives: list[str]) -> None:
        """These blobs, in one go (a deletion of many clips); any not there is no error."""

    def set_aside(self, relative: str) -> str:
        """Move it to set-aside/<relative> for a person to look at; returns where it went."""

    def remove_owner(self, owner_id: str) -> None:
        """The owner's blobs, and those of theirs the sweep set aside."""

    def owner_folders(self) -> list[str]:
        """The owners who have clip blobs."""

    def loose_files(self) -> list[str]: ...

    def files_under(self, folder: str) -> Iterator[tuple[str, float]]:
        """(relative path, Unix time written) of each blob below `folder` ("blobs/<owner>" or
        "quarantine")."""

    @staticmethod
    def is_temp(relative: str) -> bool: ...

    def check(self) -> None:
        """StoreError, in one line, if the blob store refuses a write, a read or a delete as set
        up (an object store's bucket, credentials, rights); StoreUnavailable if it does not
        answer. Files and database rows are checked by opening the store."""

    def close(self) -> None: ...


def open_blobs(kind: str, data_dir: Path, db: Database, s3: S3Settings | None = None) -> BlobStore:
    """The blob store `blob_store` names: "files", "database" or "s3" (store/s3blobs.py)."""
    if kind == "s3":
        from earmark.cloud.store.s3blobs import S3Blobs

        if s3 is None or not s3.bucket:
            raise StoreUnavailable("blob_store = \"s3\" needs [s3] bucket in cloud.toml")
        return S3Blobs(s3)
    return TableBlobs(db) if kind == "database" else Blobs(data_dir)


class Blobs:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = str(self.data_dir)
        for folder in (CLIPS, QUARANTINE):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, relative: str) -> Path:
        return self.data_dir / relative

    def exists(self, relative: str) -> bool:
        return self.path(relative).exists()

    def write(self, relative: str, data: Data) -> None:
        self.write_many([(relative, data)])

    def write_many(self, blobs: list[tuple[str, Data]], keep_existing: bool = False) -> set[str]:
        """Write each blob whole and durably: a batch's files with one flush of the filesystem
        and one fsync per directory (runtime/durable.py: write_files), not an fsync each.
        StoreUnavailable (nothing may be acked) if the disk refuses."""
        paths = [(self.path(relative), data) for relative, data in blobs]
        try:
            for folder in {path.parent for path, _ in paths}:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if len(paths) == 1 and not keep_existing:
                write_file(*paths[0])
                return set()
            kept = write_files(paths, keep_existing=keep_existing)
        except OSError as exc:
            raise StoreUnavailable(f"could not write a blob: {exc.strerror}") from exc
        return {str(path.relative_to(self.data_dir)) for path in kept}

    def read(self, relative: str) -> bytes:
        """The blob's bytes (FileNotFoundError if it is not there). One open, fstat and read:
        an export reads every clip of its owner, and pathlib's layers cost as much as AES."""
        fd = os.open(os.path.join(self.root, relative), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size)
            while len(data) < size and (more := os.read(fd, size - len(data))):
                data += more
            return data
        finally:
            os.close(fd)

    def remove(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)

    def remove_many(self, relatives: list[str]) -> None:
        for relative in relatives:
            self.remove(relative)

    def set_aside(self, relative: str) -> str:
        """Move a blob no row accounts for to set-aside/, under the same relative path, so a
        person can look at it; nothing is deleted on a guess. Returns where it went."""
        target = f"{SET_ASIDE}/{relative}"
        destination = self.path(target)
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path(relative).replace(destination)
        return target

    def remove_owner(self, owner_id: str) -> None:
        """The owner's blobs, and those of theirs the sweep set aside."""
        shutil.rmtree(self.data_dir / CLIPS / owner_id, ignore_errors=True)
        shutil.rmtree(self.data_dir / SET_ASIDE / CLIPS / owner_id, ignore_errors=True)

    def owner_folders(self) -> list[str]:
        return [p.name for p in (self.data_dir / CLIPS).iterdir() if p.is_dir()]

    def loose_files(self) -> list[str]:
        """Files directly in blobs/: only temp files ever land there."""
        return [f"{CLIPS}/{p.name}" for p in (self.data_dir / CLIPS).iterdir() if p.is_file()]

    @staticmethod
    def is_temp(relative: str) -> bool:
        """A temp file of an interrupted write: never renamed into place, so never acked."""
        return relative.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)

    def files_under(self, folder: str) -> Iterator[tuple[str, float]]:
        """(relative path, mtime) of each file below `folder` (e.g. "blobs/<owner>")."""
        for path in (self.data_dir / folder).rglob("*"):
            try:
                if path.is_file():
                    yield str(path.relative_to(self.data_dir)), path.stat().st_mtime
            except FileNotFoundError:  # committed and renamed, or swept by another ingester
                continue

    def check(self) -> None:
        pass  # the data dir was opened with the store

    def close(self) -> None:
        pass


def _owner_of(relative: str) -> str | None:
    """The owner whose prefix the path is under (None for a quarantined payload's)."""
    parts = relative.removeprefix(f"{SET_ASIDE}/").split("/")
    return parts[1] if parts[0] == CLIPS and len(parts) == 3 else None


def _table_of(relative: str) -> str:
    return "clip_blobs" if _owner_of(relative) is not None else "quarantine_blobs"


def _by_owner(items: list[T], path_of: Callable[[T], str]) -> list[tuple[str | None, list[T]]]:
    """The items grouped by the owner of their path (None: quarantined payloads), in a fixed
    order, for one transaction that scopes each owner's group in turn."""
    groups: dict[str | None, list[T]] = {}
    for item in items:
        groups.setdefault(_owner_of(path_of(item)), []).append(item)
    return sorted(groups.items(), key=lambda group: group[0] or "")


class TableBlobs:
    """Sealed blobs as rows of the store's database (see the module's docstring). Each write
    is one transaction, committed durably (on PostgreSQL with a synchronous standby, on both
    machines) before the rows that point at the blobs are written."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, relative: str, data: Data) -> None:
        self.write_many([(relative, data)])

    def write_many(self, blobs: list[tuple[str, Data]], keep_existing: bool = False) -> set[str]:
        """All the blobs in one transaction, each owner's in that owner's scope. A blob already
        at the path is replaced, as a file would be, or with `keep_existing` left as it is."""
        now = time.time()
        kept: set[str] = set()
        with self.db.transaction() as cur:
            for owner_id, share in _by_owner(blobs, lambda blob: blob[0]):
                if owner_id is None:
                    cur.executemany(QUARANTINE_UPSERT, [{"path": path, "sealed": joined(data), "written_at": now}
                                                        for path, data in share])
                    continue
                cur.scope(owner_id)
                rows = [{"path": path, "owner_id": owner_id, "sealed": joined(data), "written_at": now}
                        for path, data in share]
                if not keep_existing:
                    cur.executemany(CLIP_UPSERT, rows)
                    continue
                kept |= {str(row["path"]) for row in rows if not cur.execute(CLIP_INSERT_NEW, row).rowcount}
        return kept

    def _query(self, sql: str, relative: str, **params: object) -> list[Row]:
        """`sql` on the table `relative` belongs in ({table}), in its owner's scope."""
        return self.db.query(sql.format(table=_table_of(relative)), {"path": relative, **params},
                             owner=_owner_of(relative))

    def read(self, relative: str) -> bytes:
        rows = self._query("SELECT sealed FROM {table} WHERE path = :path", relative)
        if not rows:
            raise FileNotFoundError(relative)
        return bytes(rows[0]["sealed"])

    def exists(self, relative: str) -> bool:
        return bool(self._query("SELECT 1 AS found FROM {table} WHERE path = :path", relative))

    def remove(self, relative: str) -> None:
        self.remove_many([relative])

    def remove_many(self, relatives: list[str]) -> None:
        """One transaction, each owner's blobs in that owner's scope (none for no blobs)."""
        if not relatives:
            return
        with self.db.transaction() as cur:
            for owner_id, paths in _by_owner(relatives, lambda path: path):
                if owner_id is not None:
                    cur.scope(owner_id)
                cur.executemany(f"DELETE FROM {_table_of(paths[0])} WHERE path = :path",
                                [{"path": path} for path in paths])

    def set_aside(self, relative: str) -> str:
        target = f"{SET_ASIDE}/{relative}"
        with self.db.transaction() as cur:
            if (owner_id := _owner_of(relative)) is not None:
                cur.scope(owner_id)
            cur.execute(f"UPDATE {_table_of(relative)} SET path = :target WHERE path = :path",
                        {"path": relative, "target": target})
        return target

    def remove_owner(self, owner_id: str) -> None:
        with self.db.transaction() as cur:
            cur.scope(owner_id)
            cur.execute("DELETE FROM clip_blobs WHERE owner_id = :owner_id", {"owner_id": owner_id})

    def owner_folders(self) -> list[str]:
        return [str(r["owner_id"]) for r in self.db.gateway("blob_owners")]

    def loose_files(self) -> list[str]:
        return []  # a row is written whole or not at all: there are no temp files

    def files_under(self, folder: str) -> Iterator[tuple[str, float]]:
        prefix = folder.rstrip("/") + "/"
        in_place = prefix + "-.bin"  # a path in the folder: its table and owner are the folder's
        for row in self._query("SELECT path, written_at FROM {table} WHERE substr(path, 1, :length) = :prefix "
                               "ORDER BY path", in_place, length=len(prefix), prefix=prefix):
            yield str(row["path"]), float(row["written_at"])

    @staticmethod
    def is_temp(relative: str) -> bool:
        return False

    def check(self) -> None:
        pass  # the database answered when the store was opened

    def close(self) -> None:
        pass  # the database is the store's, closed with it


CLIP_UPSERT = insert("clip_blobs", conflict="path", update=("sealed", "written_at"))
CLIP_INSERT_NEW = insert("clip_blobs", conflict="path")
QUARANTINE_UPSERT = insert("quarantine_blobs", conflict="path", update=("sealed", "written_at"))
