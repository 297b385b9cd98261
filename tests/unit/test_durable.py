"""Durable writes: whole or nothing, even with several writers of one path at once (two
ingesters storing the same clip on a redelivery)."""

from __future__ import annotations

import threading
from pathlib import Path

from earmark.runtime.durable import TEMP_PREFIX, write_file


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
