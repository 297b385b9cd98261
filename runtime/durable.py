"""Durable file writes, the one way both sides put a file on disk that must survive a crash
whole or not at all: a temp file beside the target (created with its final mode, so a
secret is never readable by others even for a moment), fsync, rename, fsync the directory.
`write_files` does the same for a batch with one flush of the filesystem for all of it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

TEMP_PREFIX = ".tmp-"
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)  # Linux: one flush of the filesystem for many files


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_of(path: Path) -> Path:
    # A temp name of its own: several writers of one path (two ingesters storing the same clip
    # on a redelivery) must not write into one temp file and rename each other's half.
    return path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{path.name}")


# A file's bytes, whole or in parts written one after the other (a header before an envelope
# is never joined to it in memory: on a busy ingester that copy of 160 KB cost a quarter of
# the clip's CPU).
Data = bytes | bytearray | tuple[bytes | bytearray, ...]


def parts(data: Data) -> tuple[bytes | bytearray, ...]:
    return data if isinstance(data, tuple) else (data,)


def joined(data: Data) -> bytes:
    return b"".join(parts(data))


def data_size(data: Data) -> int:
    return sum(map(len, parts(data)))


def _write_whole(fd: int, data: Data) -> None:
    for part in parts(data):
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view):]


def write_files(files: Sequence[tuple[Path, Data]], mode: int = 0o600,
                keep_existing: bool = False) -> list[Path]:
    """Write many files atomically and durably at the price of a few flushes, not one per
    file: each into its temp file, then one syncfs() of their filesystem (every temp file's
    data durable), then each renamed into place and each directory fsynced once (the names
    durable). A crash leaves each file whole or absent. Where syncfs is missing, each temp
    file is fsynced instead. On failure the temp files are removed and the OSError raised.
    With `keep_existing`, a file already at a path is left as it is (linked into place, never
    renamed over) and the paths so kept are returned."""
    temps = [(_temp_of(path), path) for path, _ in files]
    try:
        for (temp, _), (_, data) in zip(temps, files, strict=True):
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            try:
                _write_whole(fd, data)
                if _syncfs is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
        if _syncfs is not None and temps:
            fd = os.open(temps[0][0].parent, os.O_RDONLY)
            try:
                if _syncfs(fd) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, os.strerror(error))
            finally:
                os.close(fd)
        kept = []
        for temp, path in temps:
            if not keep_existing:
                os.replace(temp, path)
                continue
            try:
                os.link(temp, path)
            except FileExistsError:
                kept.append(path)
            temp.unlink()
    except BaseException:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
        raise
    for folder in {path.parent for _, path in temps}:
        fsync_dir(folder)
    return kept


def write_file(path: Path, data: Data, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Write `data` to `path` atomically and durably. On failure the temp file is removed and
    the OSError raised (callers map ENOSPC and the like to their own errors)."""
    temp = _temp_of(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            _write_whole(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
