"""What every `earmark-cloud` command shares: its settings (the config file with the flags it
was given), the store opened for work, and the two ways of printing (a table or --json)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earmark.cloud.settings import CloudSettings, default_data_dir, load_settings
from earmark.cloud.store.store import Store
from earmark.runtime.config import blame_flags, flag_values

if TYPE_CHECKING:
    from earmark.cloud.broker.control import SyncReport

log = logging.getLogger("earmark.cloud")


def cli_settings(args: argparse.Namespace) -> CloudSettings:
    """The settings, with the flags this command was given (generated from the settings'
    own fields: runtime/config.py)."""
    config = args.config
    if config is None:
        default = (args.data_dir or default_data_dir()) / "cloud.toml"
        config = default if default.is_file() else None
    with blame_flags(args):
        return load_settings(config, args.data_dir, flag_values(args))


def cli_store(args: argparse.Namespace) -> Store:
    return open_for_work(cli_settings(args))


def open_for_work(s: CloudSettings) -> Store:
    """The store, with every erasure and deletion in the ledgers made true of it first (after
    a restore from an older backup, or a crash part-way through an erasure or a deletion)."""
    from earmark.cloud.owner.erasure import apply_deletion_ledger, apply_erasure_ledger

    store = Store.open(s)
    if applied := apply_erasure_ledger(store):
        log.warning("re-applied %d erasure(s) from the erasure ledger (audit: owner_erased)", len(applied))
    if again := apply_deletion_ledger(store):
        log.warning("deleted %d clip(s) again that the deletion ledger holds as deleted (audit: clips_deleted_again)",
                    again)
    if moved := store.move_owner_keys_out():
        log.warning("moved %d owner key(s) out of the database into %s; backups taken before now still open "
                    "with the master key alone until `earmark-cloud keys rotate`", moved, store.keys.secrets.folder)
    return store


def emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A list: a table for people, one JSON array for scripts (`[]` when there is nothing)."""
    if args.json:
        print(json.dumps(rows))
        return
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "") if row.get(c) is not None else "-").ljust(widths[c]) for c in columns))


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    path.chmod(0o600)


def sync_logins(s: CloudSettings, store: Store) -> SyncReport:
    """The running broker brought in step with the registry, confirmed (broker/control.py);
    BrokerNotConfirmed, naming `broker sync`, if it could not be."""
    from earmark.cloud.broker.control import sync_broker

    return sync_broker(store, s.broker.reload_command)
