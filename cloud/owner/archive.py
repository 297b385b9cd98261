"""The export archive's layout, as pure functions: the names of its files, and the fixed
files (README.txt, index.html, clips.csv) rendered from the manifest's clip entries alone.
Export writes them with these functions and verify-export rebuilds them with the same ones
and compares byte for byte, so a fixed file cannot carry anything the manifest does not say.

    manifest.json  the owner, the export, and one entry per clip (its signed header and
                   signature, the WAV's name and SHA-256)
    clips/<capture time>_<clip id>.wav
    README.txt, index.html, clips.csv     rendered from the manifest
    devices.json   the owner's devices and their public keys
    signature.json the store's signature over every other file's SHA-256 (owner/signing.py)

The zip itself is canonical: its entries in this order (the clips in the manifest's order,
then the fixed files), each stored uncompressed with the same header fields (`entry_info`),
no comment, nothing before the first entry or after the central directory. So verify-export
rebuilds it from what it read and compares the bytes: anything hidden in the file (a
comment, bytes before the zip, a local entry the central directory does not list, extra
fields) makes the rebuilt copy differ.
"""

from __future__ import annotations

import csv
import html
import io
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from earmark.cloud.store.clips import MARK_NAMES
from earmark.wire.timestamps import parse_utc

SCHEMA_VERSION = 1
MANIFEST, README, INDEX, CSV_NAME, DEVICES = "manifest.json", "README.txt", "index.html", "clips.csv", "devices.json"
SIGNATURE = "signature.json"
FIXED_ORDER = (MANIFEST, CSV_NAME, DEVICES, README, INDEX, SIGNATURE)  # after the clips, in this order
FIXED_FILES = set(FIXED_ORDER)
CSV_COLUMNS = ["clip_id", "device_id", "captured_at", "duration_s", "trigger", "wake_word", "file", "wav_sha256"]


def entry_info(name: str, stamp: str) -> zipfile.ZipInfo:
    """Every entry's header, the same way: stored, its time from `stamp` (a clip's capture
    time, the export's for the fixed files), Unix, rw-r--r--."""
    t = parse_utc(stamp)
    info = zipfile.ZipInfo(name, (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second))
    info.create_system = 3
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    return info


def clip_file_name(captured_at: str, clip_id: str) -> str:
    stamp = captured_at.replace(":", "").replace("-", "")  # 20261122T163000.250Z: sorts, and safe everywhere
    return f"clips/{stamp}_{clip_id}.wav"


def render_readme(owner_id: str, created: str, count: int) -> bytes:
    return f"""Your Earmark recordings
=======================

This archive holds every recording Earmark keeps for you ({count} clip(s)), exported
{created} for owner {owner_id}, and nothing of anyone else's.

  index.html     open it in a browser to see and play every recording
  clips/         the recordings, as standard WAV files (16 kHz, mono, 16-bit)
  clips.csv      one row per recording: when, which device, how it started, its SHA-256
  devices.json   your devices, their public keys, and when they were yours
  manifest.json  the same, plus each recording's header and signature as your device made
                 them, so the archive can be checked: `earmark-cloud verify-export`, and
                 your own marks ("I did not mean to wake it"), also shown in index.html

Each recording was signed by the device that made it; the signature covers the header and
the exact WAV bytes in this archive.
""".encode()


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode("utf-8")


CSV_HEAD = _csv_line(CSV_COLUMNS)


def csv_row(e: dict[str, Any]) -> bytes:
    """One clip's line of clips.csv, from its manifest entry."""
    return _csv_line([e["clip_id"], e["device_id"], e["captured_at"], e["duration_ms"] / 1000, e["trigger"],
                      e["wake_word"] or "", e["file"], e["wav_sha256"]])


def render_csv(entries: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """clips.csv, a row at a time, from the manifest's clip entries."""
    yield CSV_HEAD
    yield from (csv_row(e) for e in entries)


def index_head(owner_id: str, created: str, count: int) -> bytes:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Your Earmark recordings</title><style>body{font-family:sans-serif;max-width:60em;"
            "margin:2em auto}td{padding:.3em .8em;border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>Your Earmark recordings</h1><p>{count} recording(s) of owner "
            f"<code>{html.escape(owner_id)}</code>, exported {html.escape(created)}.</p>"
            "<table><tr><th>Recorded (UTC)</th><th>Length</th><th>Device</th><th>Started by</th>"
            "<th>Listen</th></tr>\n").encode()


def index_row(e: dict[str, Any]) -> bytes:
    """One clip's row of index.html, from its manifest entry."""
    started = f"wake word “{e['wake_word']}”" if e["wake_word"] else "talk button"
    if e.get("mark"):  # the owner's own mark (the portal), in entries since marks exist
        started += f" (you marked it: {MARK_NAMES.get(e['mark'], e['mark'])})"
    return (f"<tr><td>{html.escape(e['captured_at'])}</td><td>{e['duration_ms'] / 1000:.1f} s</td>"
            f"<td>{html.escape(e['device_id'])}</td>"
            f"<td>{html.escape(started)}</td><td><audio controls preload=\"none\" "
            f"src=\"{html.escape(e['file'])}\"></audio></td></tr>\n").encode()


INDEX_TAIL = b"</table></body></html>\n"


def render_index(entries: Iterable[dict[str, Any]], owner_id: str, created: str, count: int) -> Iterator[bytes]:
    """index.html, a row at a time, from the manifest's clip entries."""
    yield index_head(owner_id, created, count)
    yield from (index_row(e) for e in entries)
    yield INDEX_TAIL
