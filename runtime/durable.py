"""Durable file writes, the one way both sides put a file on disk that must survive a crash
whole or not at all: a temp file beside the target (created with its final mode, so a
secret is never readable by others even for a moment), fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes | bytearray, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Write `data` to `path` atomically and durably. On failure the temp file is removed and
    the OSError raised (callers map ENOSPC and the like to their own errors)."""
    # A temp name of its own: several writers of one path (two ingesters storing the same clip
    # on a redelivery) must not write into one temp file and rename each other's half.
    temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{path.name}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
