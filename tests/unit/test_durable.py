"""Durable writes: whole or nothing, even with several writers of one path at once (two
ingesters storing the same clip on a redelivery)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from earmark.runtime.durable import TEMP_PREFIX, write_file, write_files


def test_concurrent_writers_of_one_path_each_leave_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "blobs" / "clip.bin"
    target.parent.mkdir()
    payloads = [bytes([n]) * (4 << 20) for n in (0xAA, 0x55)]  # large enough to interleave
    errors: list[BaseException] = []

    def writer(data: bytes) -> None:
        try:
            for _ in range(15):
                write_file(target, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() in payloads, "the file mixes two writers' bytes"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_a_batch_of_files_lands_whole_with_its_mode_or_not_at_all(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    files = [(a / "1.bin", b"one" * 1000), (b / "2.bin", bytearray(b"two" * 1000)), (a / "3.bin", b"")]
    write_files(files)
    assert [(p.read_bytes(), p.stat().st_mode & 0o777) for p, _ in files] == [(bytes(d), 0o600) for _, d in files]
    # One target the disk refuses (its folder is gone): none of the batch is renamed into
    # place, and no temp file is left behind.
    refused = [(a / "4.bin", b"four"), (tmp_path / "gone" / "5.bin", b"five"), (b / "6.bin", b"six")]
    with pytest.raises(FileNotFoundError):
        write_files(refused)
    assert not (a / "4.bin").exists() and not (b / "6.bin").exists()
    assert [p.name for p in tmp_path.rglob(f"{TEMP_PREFIX}*")] == []
