"""The export archive's layout, as pure functions: the names of its files, and the fixed
files (README.txt, index.html, clips.csv) rendered from the manifest's clip entries alone.
Export writes them with these functions and verify-export rebuilds them with the same ones
and compares byte for byte, so a fixed file cannot carry anything the manifest does not say.

    manifest.json  the owner, the export, and one entry per clip (its signed header and
                   signature, the WAV's name and SHA-256)
    clips/<capture time>_<clip id>.wav
    README.txt, index.html, clips.csv     rendered from the manifest
    devices.json   the owner's devices and their public keys
    your-data.json everything else kept about the owner, for machines (GDPR Art. 20):
                   the account, passkeys and sessions (no secrets), the devices' last status,
                   the deletion records that explain chain gaps, the whole access log
    statement.txt  the Art. 15 statement (owner/statement.py), also in index.html
    signature.json the store's signature over every other file's SHA-256 (owner/signing.py)

The zip itself is canonical: its entries in this order (the clips in the manifest's order,
then the fixed files), each stored uncompressed with the same header fields (`entry_info`),
no comment, nothing before the first entry or after the central directory. So verify-export
rebuilds it from what it read and compares the bytes: anything hidden in the file (a
comment, bytes before the zip, a local entry the central directory does not list, extra
fields) makes the rebuilt copy differ.
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from earmark.cloud.store.clips import MARK_NAMES
from earmark.wire.timestamps import parse_utc

SCHEMA_VERSION = 2  # 2: your-data.json and statement.txt
PORTAL_STATIC = Path(__file__).resolve().parent.parent / "portal" / "static"
MANIFEST, README, INDEX, CSV_NAME, DEVICES = "manifest.json", "README.txt", "index.html", "clips.csv", "devices.json"
YOUR_DATA, STATEMENT = "your-data.json", "statement.txt"
SIGNATURE = "signature.json"
FIXED_ORDER = (MANIFEST, CSV_NAME, DEVICES, YOUR_DATA, STATEMENT, README, INDEX, SIGNATURE)  # after the clips
FIXED_FILES = set(FIXED_ORDER)
YOUR_DATA_KEYS = {"owner_id", "account", "passkeys", "sessions", "presence", "deleted_clips", "access_log"}
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


def clip_file_name(captured_at: str, clip_id: str, sealed: bool = False) -> str:
    """A clip's name in the archive: `.wav`, or `.wav.age` for one its device sealed to the
    household (wire v3), which `age -d -i IDENTITY` turns back into the WAV."""
    stamp = captured_at.replace(":", "").replace("-", "")  # 20261122T163000.250Z: sorts, and safe everywhere
    return f"clips/{stamp}_{clip_id}.wav" + (".age" if sealed else "")


def is_sealed_entry(e: dict[str, Any]) -> bool:
    """Is this manifest entry's clip sealed to the household: on its device (its signed header
    names recipients), or re-sealed by the store's upgrade (store/resealed.py)?"""
    return '"recipients":' in str(e.get("envelope_header", "")) or "resealed" in e


def render_readme(owner_id: str, created: str, count: int) -> bytes:
    return f"""Your Earmark recordings
=======================

This archive holds every recording Earmark keeps for you ({count} clip(s)), exported
{created} for owner {owner_id}, and nothing of anyone else's.

  index.html     open it in a browser to see and play every recording
  clips/         the recordings, as standard WAV files (16 kHz, mono, 16-bit); a recording
                 your device sealed to your household key is that WAV encrypted with age
                 (`.wav.age`): `age -d -i household-key.txt FILE.wav.age > FILE.wav` opens it,
                 and so does index.html once you give it your key file (in the page, offline);
                 nobody without your household key can, Earmark's operator included
  clips.csv      one row per recording: when, which device, how it started, its SHA-256
  devices.json   your devices, their public keys, and when they were yours
  your-data.json everything else kept about you, for machines: your account, passkeys and
                 sessions, your devices' last status, the record of deleted recordings, and
                 the log of everything done with your data
  statement.txt  why your data is kept, who receives it, for how long, your rights
  manifest.json  the same, plus each recording's header and signature as your device made
                 them, so the archive can be checked: `earmark-cloud verify-export`, and
                 your own marks ("I did not mean to wake it"), also shown in index.html

Each recording was signed by the device that made it; the signature covers the header and
the exact bytes of its file in this archive (the WAV, or the sealed WAV).
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


# index.html shows times in the reader's own zone (the UTC stamp stays in the markup), and
# the statement; the script is the file's own, opened from disk.
LOCAL_TIMES = ("<script>for(const t of document.querySelectorAll('time[datetime]')){const d=new Date("
               "t.getAttribute('datetime'));if(!isNaN(d))t.textContent=d.toLocaleString(undefined,{year:'numeric',"
               "month:'short',day:'numeric',hour:'2-digit',minute:'2-digit',second:'2-digit',"
               "timeZoneName:'short'})}</script>")


def index_head(owner_id: str, created: str, count: int, statement: bytes = b"") -> bytes:
    about = (f"<details><summary>About your data: why it is kept, who receives it, for how long, your rights"
             f"</summary><pre>{html.escape(statement.decode('utf-8', 'replace'))}</pre></details>"
             if statement else "")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Your Earmark recordings</title><style>body{font-family:sans-serif;max-width:60em;"
            "margin:2em auto}td{padding:.3em .8em;border-bottom:1px solid #ddd}pre{white-space:pre-wrap}"
            "</style></head><body>"
            f"<h1>Your Earmark recordings</h1><p>{count} recording(s) of owner "
            f"<code>{html.escape(owner_id)}</code>, exported {html.escape(created)}.</p>{about}"
            "<table><tr><th>Recorded</th><th>Length</th><th>Device</th><th>Started by</th>"
            "<th>Listen</th></tr>\n").encode()


def index_row(e: dict[str, Any]) -> bytes:
    """One clip's row of index.html, from its manifest entry."""
    started = f"wake word “{e['wake_word']}”" if e["wake_word"] else "talk button"
    if e.get("mark"):  # the owner's own mark (the portal), in entries since marks exist
        started += f" (you marked it: {MARK_NAMES.get(e['mark'], e['mark'])})"
    stamp = html.escape(e["captured_at"])
    return (f"<tr><td><time datetime=\"{stamp}\">{stamp}</time></td><td>{e['duration_ms'] / 1000:.1f} s</td>"
            f"<td>{html.escape(e['device_id'])}</td>"
            f"<td>{html.escape(started)}</td><td>{_listen(e)}</td></tr>\n").encode()


def _listen(e: dict[str, Any]) -> str:
    name = html.escape(e["file"])
    if is_sealed_entry(e):  # only the household's identity opens it (here: OPEN_SEALED, or the age command)
        return (f"<span class=\"sealed\" data-file=\"{name}\"><a href=\"{name}\">{name.removeprefix('clips/')}"
                "</a> (sealed to your household key: <code>age -d -i household-key.txt</code> turns it into the "
                "WAV)</span>")
    return f"<audio controls preload=\"none\" src=\"{name}\"></audio>"


@functools.cache
def _player() -> str:
    """open_sealed.js, with the portal's vendored age implementation (typage, cloud/portal/
    static/age-encryption.js) as a data: URL, since a page opened from disk may load no module file."""
    bundle = base64.b64encode((PORTAL_STATIC / "age-encryption.js").read_bytes()).decode("ascii")
    script = (Path(__file__).with_name("open_sealed.js")).read_text()
    return script.replace("AGE_MODULE_URL", f"data:text/javascript;base64,{bundle}")


def _open_sealed(wraps: dict[str, Any] | None) -> str:
    """index.html's player for sealed clips, offline (open_sealed.js): it opens the clips the
    reader picks with the household key file the reader picks, or with the recovery code and
    the household's key `wraps` (your-data.json's, ciphertext that only that code opens), in
    the page; nothing leaves the reader's machine."""
    kept = {"recovery": (wraps or {}).get("recovery"), "previous": list((wraps or {}).get("previous") or [])}
    data = json.dumps(kept, sort_keys=True, separators=(",", ":")).replace("<", "\\u003c")  # never "</script>"
    return (
        "<section id=\"open-sealed\" hidden><h2>Listen to your sealed recordings here</h2><p>They are sealed to "
        "your household key: choose your key file, or type your recovery code, then choose this archive's files "
        "in its clips folder. They are opened in this page; nothing is sent anywhere.</p><p><label>Household key "
        "file <input type=\"file\" id=\"key-file\"></label></p><form id=\"by-code\" hidden><label>or your "
        "recovery code <input id=\"recovery-code\" autocomplete=\"off\" spellcheck=\"false\" size=\"40\">"
        "</label> <button>Use the code</button></form><p><label>Sealed recordings <input type=\"file\" "
        "id=\"sealed-files\" multiple accept=\".age\"></label></p><p id=\"opened\" role=\"status\"></p></section>"
        f"<script type=\"application/json\" id=\"household-wraps\">{data}</script>"
        f"<script type=\"module\">{_player()}</script>")


def index_tail(sealed: bool, wraps: dict[str, Any] | None = None) -> bytes:
    """The end of index.html; with the player for sealed clips only when it lists any (and
    `wraps`, the household's key wraps your-data.json lists, for the recovery code)."""
    return (b"</table>" + (_open_sealed(wraps).encode() if sealed else b"") + LOCAL_TIMES.encode()
            + b"</body></html>\n")


def render_index(entries: Iterable[dict[str, Any]], owner_id: str, created: str, count: int,
                 statement: bytes = b"", wraps: dict[str, Any] | None = None) -> Iterator[bytes]:
    """index.html, a row at a time, from the manifest's clip entries (and the statement, and
    the household's key wraps)."""
    yield index_head(owner_id, created, count, statement)
    sealed = False
    for e in entries:
        sealed = sealed or is_sealed_entry(e)
        yield index_row(e)
    yield index_tail(sealed, wraps)


def household_wraps(account: Any) -> dict[str, Any] | None:
    """The household's key wraps from your-data.json's account (None in an archive without)."""
    wraps = account.get("household_key_wraps") if isinstance(account, dict) else None
    return wraps if isinstance(wraps, dict) else None
