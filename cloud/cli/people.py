"""The owners' commands: the store and its owners, their portal, and their data (list,
export, verify, delete, purge, erase)."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict

from earmark.cloud.cli.common import cli_settings, cli_store, emit, open_for_work, sync_logins
from earmark.cloud.store.crypto import create_master_key
from earmark.cloud.store.registry import RegistryError
from earmark.cloud.store.store import Store
from earmark.runtime.command import confirmed

log = logging.getLogger("earmark.cloud")


def cmd_init(args: argparse.Namespace) -> int:
    s = cli_settings(args)
    from earmark.cloud.owner.signing import key_text, signing_key

    made = create_master_key(s.master_key_path)
    store = Store.open(s, create=True)
    store.blobs.check()  # an object store: can we write, read and delete in its bucket?
    export_key = key_text(signing_key(store).verify_key)
    counts = store.counts()
    result = {"data_dir": s.data_dir, "master_key_file": str(s.master_key_path), "master_key_created": made,
              "owners": counts["owners"], "export_key": export_key}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"store ready in {s.data_dir}; master key {'created' if made else 'kept'} at {s.master_key_path}")
        print("keep the master key off the database's disk and backed up: without it no clip can be read")
    return 0


def cmd_owner_add(args: argparse.Namespace) -> int:
    owner = cli_store(args).registry.add_owner(args.name)
    print(json.dumps(asdict(owner)) if args.json else owner.owner_id)
    return 0


def cmd_owner_list(args: argparse.Namespace) -> int:
    emit(args, [asdict(o) for o in cli_store(args).registry.owners()],
          ["owner_id", "display_name", "created_at", "erased_at"])
    return 0


def cmd_owner_invite(args: argparse.Namespace) -> int:
    s = cli_settings(args)
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

    from earmark.cloud.portal.app import create_app, server_config

    s = cli_settings(args)
    app = create_app(open_for_work(s), s.portal, s.broker.reload_command, s.retention_days, s.data_request)
    log.info("portal on http://%s:%d for %s", s.portal.host, s.portal.port, s.portal.public_url)
    uvicorn.Server(server_config(app, s.portal)).run()
    return 0


def cmd_owner_set_recipient(args: argparse.Namespace) -> int:
    cli_store(args).registry.set_recipient(args.owner, args.recipient)
    print(json.dumps({"owner_id": args.owner, "recipient": args.recipient}) if args.json else
          f"{args.owner}'s household key is {args.recipient}: devices paired from now on seal every clip to it "
          "(pair existing devices again: `earmark-cloud device bundle`), and exports are encrypted to it")
    return 0


def cmd_owner_reseal(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.reseal import reseal_owner

    store = cli_store(args)
    owners = [args.owner] if args.owner else [o.owner_id for o in store.registry.owners()
                                              if not o.erased_at and store.registry.household_recipients(o.owner_id)]
    for owner_id in owners:
        done = reseal_owner(store, owner_id)
        print(json.dumps(asdict(done)) if args.json else
              f"{owner_id}: {done.resealed} clip(s) re-sealed to the household's key, {done.already} sealed to it "
              f"already; the server keeps no key that opens their audio")
    if not owners and not args.json:
        print("no owner has set a household key yet: nothing to re-seal")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.export import export_owner, terminal_progress
    from earmark.cloud.owner.statement import DataRequest

    s = cli_settings(args)
    result = export_owner(open_for_work(s), args.owner, args.out, args.recipient, terminal_progress,
                          DataRequest(s.data_request, s.retention_days))
    if args.json:
        print(json.dumps({"archive": str(result.path), "clips": result.clips, "audio_bytes": result.audio_bytes,
                          "encrypted": result.encrypted, "sha256": result.sha256}))
    else:
        print(f"{result.clips} clip(s) exported{' and encrypted to the owner' if result.encrypted else ''}: "
              f"{result.path}")
    return 0


def cmd_verify_export(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.verify_export import verify_export

    # With --key the check is offline: the archive against the key alone, no store needed.
    store = None if args.key else cli_store(args)
    problems = verify_export(store, args.archive, args.owner, args.identity, [args.key] if args.key else None)
    if args.json:
        print(json.dumps({"archive": str(args.archive), "ok": not problems, "problems": problems}))
    else:
        for problem in problems:
            print(problem)
        done = "every check holds" + (" (offline: not compared with the store)" if store is None else "")
        print(f"{args.archive.name}: " + (done if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_erase(args: argparse.Namespace) -> int:
    from earmark.cloud.owner.erasure import erase_owner

    s = cli_settings(args)
    store = open_for_work(s)
    owner = store.registry.owner(args.owner)
    if owner is None:
        raise RegistryError(f"no owner {args.owner}")
    if not owner.erased_at and not confirmed(
            args.yes, "erase cannot be undone", f"Erase owner {owner.display_name!r} ({args.owner}), their "
            f"{store.clips.count(args.owner)} clip(s) and their devices? This cannot be undone.", args.owner):
        return 1
    result = erase_owner(store, args.owner)  # again after an interruption: completes what is left
    report = sync_logins(s, store)  # the devices' logins leave the running broker
    print(json.dumps({**asdict(result), "broker": report.state}) if args.json else
          f"erased {args.owner}{' (completing an earlier erasure)' if owner.erased_at else ''}: key destroyed, "
          f"{result.clips} clip(s) deleted, {len(result.devices)} device(s) revoked; {report.describe()}")
    return 0


def cmd_clip_delete(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.marks import send_marks
    from earmark.cloud.owner.erasure import delete_clip

    store = cli_store(args)
    send_marks(store, [delete_clip(store, args.owner, args.clip_id)])  # its device drops what it kept of it
    print(json.dumps({"deleted": args.clip_id}) if args.json else f"deleted {args.clip_id}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.marks import send_marks
    from earmark.cloud.owner.retention import purge_expired

    s = cli_settings(args)
    store, purged = open_for_work(s), list[str]()
    count = purge_expired(store, s.retention_days, purged)
    # Their devices drop what they kept of the purged recordings (their wake features).
    send_marks(store, [d.device_id for owner in purged for d in store.registry.devices(owner)])
    print(json.dumps({"purged": count, "retention_days": s.retention_days}) if args.json else
          f"purged {count} clip(s) older than {s.retention_days} day(s)" if s.retention_days else
          "retention_days is 0: clips are kept; nothing purged")
    return 0


def cmd_clips_list(args: argparse.Namespace) -> int:
    store = cli_store(args)
    if store.registry.owner(args.owner) is None:
        raise RegistryError(f"no owner {args.owner}")
    rows = [{"clip_id": c.clip_id, "device_id": c.device_id, "captured_at": c.captured_at,
             "duration_s": c.duration_ms / 1000, "wake_word": c.wake_word or f"({c.trigger})"}
            for c in store.clips.of_owner(args.owner)]
    # An operator reading someone's recordings list is access to their data: it is in their access log.
    store.audit.record("operator_listed_clips", owner_id=args.owner, detail={"clips": len(rows)})
    emit(args, rows, ["clip_id", "device_id", "captured_at", "duration_s", "wake_word"])
    return 0


def cmd_export_key(args: argparse.Namespace) -> int:
    """The public halves of the store's export signing keys: what an owner checks an archive with."""
    from earmark.cloud.owner.signing import known_keys, signing_key

    store = cli_store(args)
    signing_key(store)  # a store made before exports were signed gets its key now
    keys = known_keys(store)
    if args.json:
        print(json.dumps([k.__dict__ for k in keys]))
    else:
        for k in keys:
            print(f"{k.key}  since {k.since}" + (f", retired {k.retired}" if k.retired else "  (current)"))
    return 0
