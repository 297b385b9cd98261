"""The operator's commands: quarantine, schema migration, backup and restore, master key
rotation, store and audit checks, the ingester, and status."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from earmark.cloud.cli.common import cli_settings, cli_store, emit, open_for_work
from earmark.cloud.settings import CloudSettings
from earmark.cloud.store.database import StoreUnavailable
from earmark.cloud.store.registry import RegistryError
from earmark.cloud.store.store import Store
from earmark.runtime.command import confirmed
from earmark.wire.errors import ConfigError

log = logging.getLogger("earmark.cloud")


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    rows = [asdict(q) for q in cli_store(args).quarantine.all()]
    emit(args, rows, ["quarantine_id", "received_at", "reason", "topic", "envelope_bytes"])
    return 0


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    from earmark.wire.envelope import EnvelopeError, decode_envelope

    store = cli_store(args)
    row = store.quarantine.get(args.quarantine_id)
    if row is None:
        raise RegistryError(f"no quarantined payload {args.quarantine_id}")
    shown: dict[str, Any] = asdict(row)
    try:
        shown["header"] = asdict(decode_envelope(store.quarantine.payload(row)).header)
    except EnvelopeError as exc:
        shown["header"] = None
        shown["parse_error"] = str(exc)
    print(json.dumps(shown, indent=None if args.json else 2))
    return 0


def cmd_quarantine_purge(args: argparse.Namespace) -> int:
    store = cli_store(args)
    ids = [q.quarantine_id for q in store.quarantine.all()] if args.all else args.quarantine_ids
    if not ids:
        raise RegistryError("name quarantine ids to purge, or --all")
    count = store.quarantine.purge(ids)
    print(json.dumps({"purged": count}) if args.json else f"purged {count} payload(s)")
    return 0


def admin_url(args: argparse.Namespace) -> str:
    """--admin-url, which holds no password: a process's arguments (and pg_dump's, which it
    is handed to) are readable by every user of the machine."""
    url = args.admin_url or ""
    parts = urlsplit(url)
    if parts.password is not None or "password=" in parts.query:
        raise ConfigError("--admin-url must not hold a password: put it in PGPASSFILE (~/.pgpass, 0600) "
                          "or $PGPASSWORD")
    return url


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from earmark.cloud.store.postgres import migrate

    before, after = migrate(admin_url(args), args.service_role)
    if args.json:
        print(json.dumps({"from_version": before, "to_version": after, "service_role": args.service_role}))
    else:
        print(f"schema at version {after} (was {before}); role {args.service_role} granted service access")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from earmark.cloud.store.backup import backup

    url = admin_url(args)
    result = backup(cli_store(args), args.out, url)
    print(json.dumps({"folder": str(result.folder), "backend": result.backend, "blob_files": result.blob_files})
          if args.json else f"backup of the {result.backend} store in {result.folder} ({result.blob_files} blob "
          "file(s)); it holds neither the master key nor the erasure ledger: keep those backed up apart")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from earmark.cloud.store.backup import restore

    url = admin_url(args)
    s = cli_settings(args)
    if not confirmed(args.yes, "restore replaces the store's rows",
                     f"Replace the rows of the store in {s.data_dir} with the backup in {args.source}?", "restore"):
        return 1
    added = restore(Path(s.data_dir), args.source, s.database_url, url)
    store = open_for_work(s)  # erasures made since the backup are applied again, first
    swept = store.sweep()  # clips that arrived after the backup get their rows back
    result = {"blob_files_added": added, "reindexed": swept.reindexed, "set_aside": swept.set_aside}
    print(json.dumps(result) if args.json else
          f"restored from {args.source}: {added} blob file(s) added, {swept.reindexed} newer clip(s) re-indexed, "
          f"{swept.set_aside} file(s) set aside")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    store = cli_store(args)
    count = store.rotate_master_key()
    print(json.dumps({"owner_keys": count, "master_key_file": str(store.master_key_path)}) if args.json else
          f"master key rotated: {count} owner key(s) re-wrapped; {store.master_key_path} holds the new key. "
          "Back it up now; backups taken before this open only with the old key, so destroying every copy of "
          "the old key retires them.")
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    found = cli_store(args).check(repair=args.repair)
    if args.json:
        print(json.dumps(asdict(found)))
    else:
        print(f"{found.rows_without_blobs} row(s) without their blob, {found.blobs_without_rows} file(s) without a row")
        if found.swept is not None:
            s = found.swept
            print(f"repaired: {s.reindexed} clip(s) re-indexed, {s.deleted} deleted clip blob(s) finished, "
                  f"{s.temp_removed} temp file(s) removed, {s.set_aside} set aside, "
                  f"{found.rows_without_blobs} row(s) dropped")
    problems = found.rows_without_blobs + found.blobs_without_rows
    return 0 if problems == 0 or args.repair else 1


def cmd_audit_verify(args: argparse.Namespace) -> int:
    store = cli_store(args)
    problems = store.audit.verify()
    events = store.counts()["audit"]
    if args.json:
        print(json.dumps({"events": events, "problems": [asdict(p) for p in problems]}))
    else:
        for p in problems:
            print(f"event {p.seq}: {p.message}")
        print(f"{events} event(s); " + ("chain intact" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from earmark.cloud.ingest.ingestor import Ingestor
    from earmark.cloud.ingest.metrics import Metrics, serve
    from earmark.cloud.ingest.source import open_source
    from earmark.cloud.store.quarantine import QuarantineQuota

    s = cli_settings(args)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    store = _open_when_reachable(s, stop)
    if store is None:
        return 0
    swept = store.prepare_ingest()
    if swept:
        log.warning("start-up sweep: %d clip(s) re-indexed, %d deleted clip blob(s) finished, %d temp file(s) "
                    "removed, %d blob(s) set aside in %s/set-aside for a person to look at", swept.reindexed,
                    swept.deleted, swept.temp_removed, swept.set_aside, store.data_dir)
    metrics = Metrics()
    ingestor = Ingestor(store, s.max_envelope_bytes,
                        QuarantineQuota(s.quarantine_items_per_day, s.quarantine_bytes_per_day))
    source = open_source(s, ingestor, metrics)
    log.info("ingesting from %s", source.describe())
    server = serve(metrics, source.health, s.metrics.host, s.metrics.port) if s.metrics.port else None
    try:
        source.run(stop, retire=bool(getattr(args, "retire", False)))
    finally:
        if server is not None:
            server.shutdown()
        store.close()
    return 0


def _open_when_reachable(s: CloudSettings, stop: threading.Event) -> Store | None:
    """The store, once its database answers: an ingester that starts before PostgreSQL (at
    boot, during a failover) waits for it instead of exiting. None if stopped meanwhile.
    Any other store problem (wrong role, no schema) is a set-up error and raises."""
    from earmark.cloud.ingest.source import retrying

    def opened() -> Store:
        store = open_for_work(s)
        try:
            store.blobs.check()  # an object store that cannot be written is waited for too
        except StoreUnavailable:
            store.close()
            raise
        return store

    return retrying(opened, StoreUnavailable, stop, 1.0,
                    lambda exc, delay: log.error("%s; retrying in %.0f s", exc, delay))


def cmd_status(args: argparse.Namespace) -> int:
    """Counts, the last clip stored, the broker (reachable, logins in step, messages held)
    and the ingesters of the shared group. Exit 1 if the broker is configured but down or behind."""
    from earmark.cloud.broker.control import broker_queue_depth

    s = cli_settings(args)
    store = open_for_work(s)
    counts = store.counts()
    last = next((e["at"] for e in store.audit.events(500) if e["event"] == "clip_stored"), None)
    url = store.accounts.broker_url()
    pending = store.accounts.broker_pending_since()
    depth = broker_queue_depth(store) if url else None
    ingesters = store.accounts.ingesters()
    wakes = [dict(r) for r in store.db.gateway("wake_marks")]  # owners' "I did not mean to wake it" marks
    status: dict[str, Any] = {
        "store": {"backend": store.db.backend, "reachable": True, **counts, "last_clip_stored_at": last},
        "broker": {"url": url, "reachable": depth is not None, "logins_in_step": pending is None,
                   "behind_since": pending, "messages_held": depth},
        "ingesters": ingesters,
        "wakes": wakes,
    }
    healthy = url is None or (depth is not None and pending is None)
    if args.json:
        print(json.dumps(status))
        return 0 if healthy else 1
    print(f"store    {store.db.backend}: " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts))
          + f"; last clip stored {last or 'never (in the last 500 audit events)'}")
    if url is None:
        print("broker   none configured (`earmark-cloud broker config`)")
    else:
        print(f"broker   {url}: " + (f"up, holding {depth} message(s)" if depth is not None else "NOT reachable")
              + ("; logins in step" if pending is None else f"; BEHIND the registry since {pending}: "
                                                          "`earmark-cloud broker sync`"))
    for ingester in ingesters:
        print(f"ingester {ingester['client_id']}: {ingester['state']} since {ingester['at']} "
              f"(group {ingester['group']})")
    for wake in wakes:
        print(f"wakes    {wake['wake_word']}: {wake['clips']} stored, {wake['marked']} marked by their owners "
              f"as not meant ({100 * wake['marked'] / wake['clips']:.1f}%)")
    return 0 if healthy else 1


def cmd_keys_rotate_export(args: argparse.Namespace) -> int:
    """A new export signing key; archives signed by the old one still verify."""
    from earmark.cloud.owner.signing import key_text, rotate

    key = key_text(rotate(cli_store(args)).verify_key)
    print(json.dumps({"export_key": key}) if args.json else f"new export signing key: {key}")
    return 0
