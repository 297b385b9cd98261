"""A small RIFF/WAVE reader for any PCM layout a user may hand us: integer PCM of 8-32 bits,
32-bit float, and WAVE_FORMAT_EXTENSIBLE (which Python 3.11's `wave` cannot read, and which
sox and multi-channel arrays such as the ReSpeaker 4-Mic write)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from earmark.wire.errors import UsageError

PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE


class WavError(UsageError, ValueError):
    pass


@dataclass(frozen=True)
class WavInfo:
    rate: int
    channels: int
    width: int  # bytes per sample
    is_float: bool
    data_offset: int
    data_bytes: int

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    @property
    def duration_s(self) -> float:
        return self.data_bytes / self.frame_bytes / self.rate


def read_info(f: BinaryIO) -> WavInfo:
    riff = f.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise WavError("no data chunk")
        kind, size = head[:4], struct.unpack("<I", head[4:])[0]
        if kind == b"fmt ":
            body = f.read(size)
            if len(body) < 16:
                raise WavError("fmt chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == EXTENSIBLE:
                if len(body) < 26:
                    raise WavError("extensible fmt chunk too short")
                tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits)
            if size % 2:
                f.read(1)
        elif kind == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            if tag not in (PCM, IEEE_FLOAT) or (tag == IEEE_FLOAT and bits != 32):
                raise WavError(f"unsupported encoding (format {tag}, {bits} bits): only PCM and float32")
            if not (channels >= 1 and rate > 0 and bits in (8, 16, 24, 32)):
                raise WavError(f"unsupported layout: {channels} channel(s), {rate} Hz, {bits} bits")
            offset = f.tell()
            f.seek(0, 2)
            available = f.tell() - offset
            f.seek(offset)
            frame = bits // 8 * channels
            usable = min(size, available)
            return WavInfo(rate, channels, bits // 8, tag == IEEE_FLOAT, offset, usable - usable % frame)
        else:
            f.seek(size + size % 2, 1)


def open_wav(path: Path) -> tuple[BinaryIO, WavInfo]:
    f = open(path, "rb")  # noqa: SIM115 - the caller owns and closes it
    try:
        return f, read_info(f)
    except BaseException:
        f.close()
        raise
