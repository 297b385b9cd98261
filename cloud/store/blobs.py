"""Blob files under the data dir, written whole and durably (temp file, fsync, rename,
fsync dir) so that a crash leaves a blob entire or absent. Paths are relative to the data
dir: `blobs/<owner_id>/<clip_id>.bin` for clips, `quarantine/<id>.bin` for refused payloads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from earmark.cloud.store.database import StoreUnavailable
from earmark.runtime.durable import TEMP_PREFIX, fsync_dir, write_file

CLIPS = "blobs"
QUARANTINE = "quarantine"
SET_ASIDE = "set-aside"  # blobs the sweep could not account for, kept for a person to look at
PORTAL_EXPORTS = "portal-exports"  # <owner id>/: an export the portal prepared, waiting for its download
WRITERS = 32  # concurrent fsyncs, which the filesystem folds into few journal commits


def clip_blob(owner_id: str, clip_id: str) -> str:
    return f"{CLIPS}/{owner_id}/{clip_id}.bin"


def portal_export_dir(data_dir: Path, owner_id: str) -> Path:
    """Where the portal prepares the owner's export: erasure removes it, from any process."""
    return Path(data_dir) / PORTAL_EXPORTS / owner_id


def quarantine_blob(quarantine_id: str) -> str:
    return f"{QUARANTINE}/{quarantine_id}.bin"


class Blobs:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = str(self.data_dir)
        for folder in (CLIPS, QUARANTINE):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._writers = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="blob-writer")

    def path(self, relative: str) -> Path:
        return self.data_dir / relative

    def write(self, relative: str, data: bytes | bytearray) -> None:
        self.write_many([(relative, data)])

    def write_many(self, blobs: list[tuple[str, bytes | bytearray]]) -> None:
        """Write each blob whole and durably. WRITERS threads each write and fsync their share
        of the files in turn (the filesystem folds concurrent fsyncs into few journal commits;
        one task per thread rather than per file keeps the threads' hand-offs few), then each
        directory touched is fsynced once so the new names are durable too. StoreUnavailable
        (nothing may be acked) if the disk refuses."""
        paths = [(self.path(relative), data) for relative, data in blobs]
        folders = {path.parent for path, _ in paths}
        try:
            for folder in folders:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if len(paths) == 1:
                write_file(paths[0][0], paths[0][1], sync_dir=False)
            else:
                def write_share(share: list[tuple[Path, bytes | bytearray]]) -> None:
                    for path, data in share:
                        write_file(path, data, sync_dir=False)

                list(self._writers.map(write_share, [paths[i::WRITERS] for i in range(WRITERS)]))
            for folder in folders:
                fsync_dir(folder)
        except OSError as exc:
            raise StoreUnavailable(f"could not write a blob: {exc.strerror}") from exc

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

    def close(self) -> None:
        self._writers.shutdown()
