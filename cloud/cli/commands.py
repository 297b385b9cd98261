"""The `earmark-cloud` commands: each takes the parsed arguments, does one thing through the
library, prints ids or --json for scripts, and returns the exit code. cli.py wires them up."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earmark.cloud.settings import CloudSettings, default_data_dir, load_settings
from earmark.cloud.store.crypto import create_master_key
from earmark.cloud.store.database import StoreUnavailable
from earmark.cloud.store.registry import RegistryError
from earmark.cloud.store.store import Store
from earmark.runtime.command import confirmed
from earmark.runtime.config import flag_values
from earmark.wire.errors import UsageError

if TYPE_CHECKING:
    from earmark.cloud.broker.control import SyncReport
    from earmark.cloud.ingest.amqp_source import AmqpIngestService

log = logging.getLogger("earmark.cloud")


def _settings(args: argparse.Namespace) -> CloudSettings:
    """The settings, with the flags this command was given (generated from the settings'
    own fields: runtime/config.py)."""
    config = args.config
    if config is None:
        default = (args.data_dir or default_data_dir()) / "cloud.toml"
        config = default if default.is_file() else None
    return load_settings(config, args.data_dir, flag_values(args))


def _store(args: argparse.Namespace) -> Store:
    return open_for_work(_settings(args))


def open_for_work(s: CloudSettings) -> Store:
    """The store, with every erasure in the erasure ledger made true of it first (after a
    restore from an older backup, or a crash part-way through an erasure)."""
    from earmark.cloud.owner.erasure import apply_erasure_ledger

    store = Store.open(s)
    for owner_id in apply_erasure_ledger(store):
        log.warning("re-applied the erasure of owner %s from the erasure ledger", owner_id)
    return store


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A list: a table for people, one JSON array for scripts (`[]` when there is nothing)."""
    if args.json:
        print(json.dumps(rows))
        return
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "") if row.get(c) is not None else "-").ljust(widths[c]) for c in columns))


def cmd_init(args: argparse.Namespace) -> int:
    s = _settings(args)
    made = create_master_key(s.master_key_path)
    store = Store.open(s, create=True)
    counts = store.counts()
    result = {"data_dir": s.data_dir, "master_key_file": str(s.master_key_path), "master_key_created": made,
              "owners": counts["owners"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"store ready in {s.data_dir}; master key {'created' if made else 'kept'} at {s.master_key_path}")
        print("keep the master key off the database's disk and backed up: without it no clip can be read")
    return 0


def cmd_owner_add(args: argparse.Namespace) -> int:
    owner = _store(args).registry.add_owner(args.name)
    print(json.dumps(asdict(owner)) if args.json else owner.owner_id)
    return 0


def cmd_owner_list(args: argparse.Namespace) -> int:
    _emit(args, [asdict(o) for o in _store(args).registry.owners()],
          ["owner_id", "display_name", "created_at", "erased_at"])
    return 0


def cmd_owner_invite(args: argparse.Namespace) -> int:
    s = _settings(args)
    store = open_for_work(s)
    if store.registry.owner(args.owner) is None:
        raise RegistryError(f"no owner {args.owner}")
    token = store.portal.invite(args.owner, s.portal.invite_minutes * 60)
    link = f"{s.portal.public_url.rstrip('/')}/invite/{token}"
    print(json.dumps({"owner_id": args.owner, "link": link, "expires_in_minutes": s.portal.invite_minutes})
          if args.json else link)
    return 0


def cmd_portal(args: argparse.Namespace) -> int:
    import uvicorn

    from earmark.cloud.portal.app import create_app

    s = _settings(args)
    app = create_app(open_for_work(s), s.portal, s.broker.reload_command)
    log.info("portal on http://%s:%d for %s", s.portal.host, s.portal.port, s.portal.public_url)
    uvicorn.run(app, host=s.portal.host, port=s.portal.port, log_level="warning", proxy_headers=True,
                server_header=False)
    return 0


def cmd_owner_set_recipient(args: argparse.Namespace) -> int:
    _store(args).registry.set_recipient(args.owner, args.recipient)
    print(json.dumps({"owner_id": args.owner, "recipient": args.recipient}) if args.json else
          f"exports for {args.owner} will be encrypted to {args.recipient}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.export import export_owner, terminal_progress

    result = export_owner(_store(args), args.owner, args.out, args.recipient, terminal_progress)
    if args.json:
        print(json.dumps({"archive": str(result.path), "clips": result.clips, "audio_bytes": result.audio_bytes,
                          "encrypted": result.encrypted, "sha256": result.sha256}))
    else:
        print(f"{result.clips} clip(s) exported{' and encrypted to the owner' if result.encrypted else ''}: "
              f"{result.path}")
    return 0


def cmd_verify_export(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.verify_export import verify_export

    problems = verify_export(_store(args), args.archive, args.owner, args.identity)
    if args.json:
        print(json.dumps({"archive": str(args.archive), "ok": not problems, "problems": problems}))
    else:
        for problem in problems:
            print(problem)
        print(f"{args.archive.name}: " + ("every check holds" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_erase(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.erasure import erase_owner

    s = _settings(args)
    store = open_for_work(s)
    owner = store.registry.owner(args.owner)
    if owner is None:
        raise RegistryError(f"no owner {args.owner}")
    if not owner.erased_at and not confirmed(
            args.yes, "erase cannot be undone", f"Erase owner {owner.display_name!r} ({args.owner}), their "
            f"{store.clips.count(args.owner)} clip(s) and their devices? This cannot be undone.", args.owner):
        return 1
    result = erase_owner(store, args.owner)  # again after an interruption: completes what is left
    report = _sync_broker(s, store)  # the devices' logins leave the running broker
    print(json.dumps({**asdict(result), "broker": report.state}) if args.json else
          f"erased {args.owner}{' (completing an earlier erasure)' if owner.erased_at else ''}: key destroyed, "
          f"{result.clips} clip(s) deleted, {len(result.devices)} device(s) revoked; {report.describe()}")
    return 0


def cmd_clip_delete(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.erasure import delete_clip

    delete_clip(_store(args), args.owner, args.clip_id)
    print(json.dumps({"deleted": args.clip_id}) if args.json else f"deleted {args.clip_id}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.retention import purge_expired

    s = _settings(args)
    count = purge_expired(open_for_work(s), s.retention_days)
    print(json.dumps({"purged": count, "retention_days": s.retention_days}) if args.json else
          f"purged {count} clip(s) older than {s.retention_days} day(s)" if s.retention_days else
          "retention_days is 0: clips are kept; nothing purged")
    return 0


def cmd_device_add(args: argparse.Namespace) -> int:
    s = _settings(args)
    store = open_for_work(s)
    url = _bundle_broker_url(store, args.broker_url) if args.bundle_out else ""  # before anything is added
    device = store.registry.add_device(args.owner, args.public_key, args.device_id)
    if args.bundle_out:
        _issue_bundle(store, device.device_id, url, args.bundle_out)
        log.info("%s", _sync_broker(s, store).describe())
    print(json.dumps(asdict(device)) if args.json else device.device_id)
    if not args.bundle_out:
        print(f"next: `earmark-cloud device bundle {device.device_id} --out {device.device_id}.bundle.json` makes its "
              "broker login and pairing bundle for `earmark-device provision`", file=sys.stderr)
    return 0


def cmd_device_bundle(args: argparse.Namespace) -> int:
    s = _settings(args)
    store = open_for_work(s)
    device = store.registry.device(args.device_id)
    if device is None:
        raise RegistryError(f"no device {args.device_id}")
    if device.revoked_at:
        raise RegistryError(f"device {args.device_id} is revoked: enroll the device again with a new key")
    _issue_bundle(store, device.device_id, _bundle_broker_url(store, args.broker_url), args.out)
    report = _sync_broker(s, store)
    print(json.dumps({"device_id": device.device_id, "bundle": str(args.out), "broker": report.state})
          if args.json else
          f"wrote {args.out} (0600): a new broker password for {device.device_id}, the old one no longer works "
          f"({report.describe()}); copy it to the device, run `earmark-device provision {args.out.name}` there, "
          "then delete it")
    return 0


def _bundle_broker_url(store: Store, given: str | None) -> str:
    url = given or store.accounts.broker_url()
    if url is None:
        raise RegistryError("no broker address for the bundle: run `earmark-cloud broker config` or give --broker-url")
    return url


def _issue_bundle(store: Store, device_id: str, url: str, out: Path) -> None:
    """A new broker password for the device (replacing any earlier one) in a 0600 bundle."""
    from earmark.cloud.broker import logins as broker
    from earmark.wire.bundle import PairingBundle

    device = store.registry.device(device_id)
    assert device is not None and device.owner_id is not None
    password = broker.create_login(store, device_id, "device")
    ca = broker.broker_ca(store)
    bundle = PairingBundle(device_id, device.owner_id, device.public_key, url, device_id, password,
                           ca.read_text() if ca else "")
    _write_secret(out, bundle.to_json())


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    path.chmod(0o600)


def cmd_device_revoke(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.control import revoke_device

    s = _settings(args)
    device, report = revoke_device(open_for_work(s), args.device_id, s.broker.reload_command)  # again: re-syncs
    print(json.dumps({**asdict(device), "broker": report.state}) if args.json else
          f"{device.device_id} revoked at {device.revoked_at}; {report.describe()}")
    return 0


def _sync_broker(s: CloudSettings, store: Store) -> SyncReport:
    """The running broker brought in step with the registry, confirmed (broker/control.py);
    BrokerNotConfirmed, naming `broker sync`, if it could not be."""
    from earmark.cloud.broker.control import sync_broker

    return sync_broker(store, s.broker.reload_command)


def cmd_broker_sync(args: argparse.Namespace) -> int:
    s = _settings(args)
    store = open_for_work(s)
    pending = store.accounts.broker_pending_since()
    report = _sync_broker(s, store)
    print(json.dumps({"state": report.state, "logins": report.logins, "was_pending_since": pending})
          if args.json else report.describe() + (f" (it had been behind the registry since {pending})"
                                                  if pending else ""))
    return 0


def cmd_device_list(args: argparse.Namespace) -> int:
    _emit(args, [asdict(d) for d in _store(args).registry.devices(args.owner)],
          ["device_id", "owner_id", "bound_at", "revoked_at", "public_key"])
    return 0


def cmd_clips_list(args: argparse.Namespace) -> int:
    store = _store(args)
    if store.registry.owner(args.owner) is None:
        raise RegistryError(f"no owner {args.owner}")
    rows = [{"clip_id": c.clip_id, "device_id": c.device_id, "captured_at": c.captured_at,
             "duration_s": c.duration_ms / 1000, "wake_word": c.wake_word or f"({c.trigger})"}
            for c in store.clips.of_owner(args.owner)]
    # An operator reading someone's recordings list is access to their data: it is in their access log.
    store.audit.record("operator_listed_clips", owner_id=args.owner, detail={"clips": len(rows)})
    _emit(args, rows, ["clip_id", "device_id", "captured_at", "duration_s", "wake_word"])
    return 0


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    rows = [asdict(q) for q in _store(args).quarantine.all()]
    _emit(args, rows, ["quarantine_id", "received_at", "reason", "topic", "envelope_bytes"])
    return 0


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    from earmark.wire.envelope import EnvelopeError, decode_envelope

    store = _store(args)
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
    store = _store(args)
    ids = [q.quarantine_id for q in store.quarantine.all()] if args.all else args.quarantine_ids
    if not ids:
        raise RegistryError("name quarantine ids to purge, or --all")
    count = store.quarantine.purge(ids)
    print(json.dumps({"purged": count}) if args.json else f"purged {count} payload(s)")
    return 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    from earmark.cloud.broker import logins as broker
    from earmark.cloud.broker.config import write_broker_config

    store = _store(args)
    setup = write_broker_config(store, args.out, args.port, args.bind, args.hosts,
                                       args.require_client_certs, args.run_as)
    result = {"config": str(setup.config), "url": setup.url, "ca": str(setup.ca),
              "ingester_username": broker.INGESTER_USERNAME,
              "ingester_password_file": str(setup.ingester_password_file)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {setup.config}; start it with: mosquitto -c {setup.config}")
        print(f"the ingester's broker settings are in {store.data_dir / 'broker.toml'}: "
              "`earmark-cloud ingest` needs no broker flags")
    return 0


def cmd_broker_add_ingester(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.logins import add_ingester_login

    s = _settings(args)
    store = open_for_work(s)
    username, password_file = add_ingester_login(store, args.name)
    log.info("%s", _sync_broker(s, store).describe())
    if args.json:
        print(json.dumps({"username": username, "password_file": str(password_file)}))
    else:
        print(f"ingester login {username}; its password is in {password_file}")
        print(f"run it with: earmark-cloud ingest --username {username} --password-file {password_file} "
              f"--client-id {username} …")
    return 0


def cmd_ca_init(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.certs import ca_paths, init_ca

    s = _settings(args)
    made = init_ca(Path(s.data_dir) / "ca")
    cert, _ = ca_paths(Path(s.data_dir) / "ca")
    print(json.dumps({"ca": str(cert), "created": made}) if args.json else
          f"CA {'created' if made else 'already present'}: {cert}")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.certs import issue

    s = _settings(args)
    cert, key = issue(Path(s.data_dir) / "ca", args.name, args.out, args.hosts, server=not args.client)
    print(json.dumps({"cert": str(cert), "key": str(key)}) if args.json else f"{cert}\n{key}")
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from earmark.cloud.store.postgres import migrate

    before, after = migrate(args.admin_url, args.service_role)
    if args.json:
        print(json.dumps({"from_version": before, "to_version": after, "service_role": args.service_role}))
    else:
        print(f"schema at version {after} (was {before}); role {args.service_role} granted service access")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from earmark.cloud.store.backup import backup

    result = backup(_store(args), args.out, args.admin_url or "")
    print(json.dumps({"folder": str(result.folder), "backend": result.backend, "blob_files": result.blob_files})
          if args.json else f"backup of the {result.backend} store in {result.folder} ({result.blob_files} blob "
          "file(s)); it holds neither the master key nor the erasure ledger: keep those backed up apart")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from earmark.cloud.store.backup import restore

    s = _settings(args)
    if not confirmed(args.yes, "restore replaces the store's rows",
                     f"Replace the rows of the store in {s.data_dir} with the backup in {args.source}?", "restore"):
        return 1
    added = restore(Path(s.data_dir), args.source, s.database_url, args.admin_url or "")
    store = open_for_work(s)  # erasures made since the backup are applied again, first
    swept = store.sweep()  # clips that arrived after the backup get their rows back
    result = {"blob_files_added": added, "reindexed": swept.reindexed, "set_aside": swept.set_aside}
    print(json.dumps(result) if args.json else
          f"restored from {args.source}: {added} blob file(s) added, {swept.reindexed} newer clip(s) re-indexed, "
          f"{swept.set_aside} file(s) set aside")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    store = _store(args)
    count = store.rotate_master_key()
    print(json.dumps({"owner_keys": count, "master_key_file": str(store.master_key_path)}) if args.json else
          f"master key rotated: {count} owner key(s) re-wrapped; {store.master_key_path} holds the new key. "
          "Back it up now; backups taken before this open only with the old key, so destroying every copy of "
          "the old key retires them.")
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    found = _store(args).check(repair=args.repair)
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
    store = _store(args)
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
    from earmark.cloud.ingest.mqtt_source import IngestService
    from earmark.cloud.store.quarantine import QuarantineQuota

    s = _settings(args)
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
    service: IngestService | AmqpIngestService
    if s.source == "amqp":
        from earmark.cloud.ingest.amqp_source import AmqpIngestService

        service = AmqpIngestService(s, ingestor, metrics)
        log.info("ingesting from quorum queue %s at %s as %s", s.amqp.queue, s.amqp.url, s.amqp.username)
    else:
        service = IngestService(s, ingestor, metrics)
        log.info("ingesting from %s as %s (share group %s)", s.broker.url, s.broker.username or "anonymous",
                 s.broker.share_group)
    server = serve(metrics, service.health, s.metrics.host, s.metrics.port) if s.metrics.port else None
    retire = bool(getattr(args, "retire", False))
    member = s.broker.username or s.broker.client_id  # the broker makes a login its client id
    if isinstance(service, IngestService):
        store.accounts.note_ingester(member, "retiring" if retire else "running", s.broker.share_group)
    elif retire:
        raise UsageError("--retire applies to the MQTT shared subscription; a quorum queue has no members to leave")
    try:
        if isinstance(service, IngestService):
            service.run(stop, retire=retire)
            state = "retired" if service.retired else "stopped"
            store.accounts.note_ingester(member, state, s.broker.share_group)
        else:
            service.run(stop)
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

    return retrying(lambda: open_for_work(s), StoreUnavailable, stop, 1.0,
                    lambda exc, delay: log.error("%s; retrying in %.0f s", exc, delay))


def cmd_status(args: argparse.Namespace) -> int:
    """Counts, the last clip stored, the broker (reachable, logins in step, messages held)
    and the ingesters of the shared group. Exit 1 if the broker is configured but down or behind."""
    from earmark.cloud.broker.control import broker_queue_depth

    s = _settings(args)
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
