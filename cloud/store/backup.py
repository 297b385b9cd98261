"""`earmark-cloud backup` and `restore`: a consistent copy of the database and the blob files,
and putting one back.

A backup holds the rows (SQLite's online backup API, or pg_dump run as the database's admin,
since the service role sees nothing past row-level security), then the blob and quarantine
files, the audit head and a small description. It never holds the master key or the erasure
ledger: both live outside the data dir. So a backup alone opens nothing, and an erasure made
after the backup is applied again when the restored store is next opened
(owner/erasure.py: apply_erasure_ledger), before anything can read the erased owner's data.

Restore puts the rows back and adds the backup's blobs that are missing, keeping every newer
one; the start-up sweep then re-indexes clips that arrived after the backup (their sealed
envelopes are still on disk), so a restore loses no acknowledged clip.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from earmark.cloud.store.blobs import CLIPS, QUARANTINE
from earmark.cloud.store.database import StoreError
from earmark.cloud.store.store import Store
from earmark.runtime.durable import write_file
from earmark.wire.timestamps import utc_now

DESCRIPTION = "backup.json"


@dataclass(frozen=True)
class BackupResult:
    folder: Path
    backend: str
    blob_files: int


def backup(store: Store, out: Path, admin_url: str = "") -> BackupResult:
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"backup folder {out} is not empty: give a new folder")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    store.db.dump(out, admin_url)
    files = 0
    for folder in (CLIPS, QUARANTINE):
        source = store.data_dir / folder
        if source.exists():
            shutil.copytree(source, out / folder, ignore=shutil.ignore_patterns(".tmp-*"))
            files += sum(1 for p in (out / folder).rglob("*") if p.is_file())
    if (store.data_dir / "audit.head").exists():
        shutil.copy2(store.data_dir / "audit.head", out / "audit.head")
    write_file(out / DESCRIPTION, json.dumps({"created_at": utc_now(), "backend": store.db.backend,
                                              "blob_files": files}).encode())
    return BackupResult(out, store.db.backend, files)


def restore(data_dir: Path, source: Path, database_url: str = "", admin_url: str = "") -> int:
    """Put a backup's rows back and add its missing blob files. Returns the blob files added.
    Open the store for work afterwards (erasure ledger, then the sweep)."""
    try:
        description = json.loads((source / DESCRIPTION).read_text())
    except (OSError, ValueError):
        raise StoreError(f"{source} is not an Earmark backup (no readable {DESCRIPTION})") from None
    backend = "postgres" if database_url else "sqlite"
    if description.get("backend") != backend:
        raise StoreError(f"{source} is a {description.get('backend')} backup; this store is {backend}")
    if backend == "sqlite":
        _restore_sqlite(data_dir, source)
    else:
        from earmark.cloud.store.postgres import restore_dump

        restore_dump(source, admin_url)
    added = 0
    for folder in (CLIPS, QUARANTINE):
        for path in (source / folder).rglob("*") if (source / folder).exists() else []:
            target = data_dir / path.relative_to(source)
            if path.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                shutil.copy2(path, target)
                added += 1
    return added


def _restore_sqlite(data_dir: Path, source: Path) -> None:
    from earmark.cloud.store.sqlite import restore_file

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(data_dir / "ingest.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError("an ingester is running on this store: stop it before restoring") from None
        restore_file(data_dir, source)
