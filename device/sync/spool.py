"""The durable spool: every clip is on disk, whole, before anything else happens to it.

Write: temp file in the spool dir, fsync, rename to its final name, fsync the dir. A crash
at any moment leaves either the whole clip or none (the device sweeps torn temp files when
it starts; a reader such as `status` opening the same spool must not, or it would delete the
clip the running device is writing).
Names sort oldest first. Clips the cloud rejected move to rejected/. The spool is bounded
by `max_bytes`; when a new clip does not fit
(or the disk is full) the new clip is refused with `SpoolFull` and nothing already spooled
is touched: clips waiting to be sent are the user's data, and only a receipt deletes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from earmark.runtime.durable import TEMP_PREFIX, fsync_dir, write_file
from earmark.wire.errors import EarmarkError

SUFFIX = ".clip"


class SpoolFull(EarmarkError, RuntimeError):
    """The clip was not spooled: the spool is at its size bound or the disk is full."""


@dataclass(frozen=True)
class SpooledClip:
    path: Path

    @property
    def clip_id(self) -> str:
        return self.path.stem.split("_", 1)[1]

    def read(self) -> bytes:
        return self.path.read_bytes()


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def sweep(self) -> int:
        """Delete temp files torn by a crash; how many. Only the spool's writer, before it
        writes, may call this: any other caller would race the writer's rename."""
        swept = 0
        for leftover in self.directory.glob(TEMP_PREFIX + "*"):
            leftover.unlink(missing_ok=True)
            swept += 1
        return swept

    def clips(self) -> list[SpooledClip]:
        """Spooled clips, oldest first; never a clip still being written (pathlib's glob
        matches dot files, so the temp files of `put` must be left out by name)."""
        return [SpooledClip(p) for p in sorted(self.directory.glob("*" + SUFFIX))
                if not p.name.startswith(TEMP_PREFIX)]

    def used_bytes(self) -> int:
        """Waiting and rejected clips both count against the bound. The publisher deletes
        clips concurrently, so a file may vanish between listing and sizing it."""
        total = 0
        for path in self.directory.rglob("*" + SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    @property
    def rejected_dir(self) -> Path:
        return self.directory / "rejected"

    def reject(self, clip: SpooledClip, reason: str) -> None:
        """Move a clip the cloud refused out of the queue, with the reason beside it, for a
        person to look at; it is never sent again and never silently deleted."""
        self.rejected_dir.mkdir(exist_ok=True, mode=0o700)
        (self.rejected_dir / (clip.path.stem + ".reason")).write_text(reason + "\n")
        try:
            os.rename(clip.path, self.rejected_dir / clip.path.name)
        except FileNotFoundError:
            return
        fsync_dir(self.directory)

    def put(self, clip_id: str, envelope: bytes) -> SpooledClip:
        if self.used_bytes() + len(envelope) > self.max_bytes:
            raise SpoolFull(f"spool {self.directory} is full ({self.max_bytes} bytes): clip not kept")
        final = self.directory / f"{time.time_ns():020d}_{clip_id}{SUFFIX}"
        try:
            write_file(final, envelope)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFull(f"disk holding {self.directory} is full: clip not kept") from None
            raise
        return SpooledClip(final)

    def remove(self, clip: SpooledClip) -> None:
        clip.path.unlink(missing_ok=True)
        fsync_dir(self.directory)
