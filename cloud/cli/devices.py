"""The devices' commands: registering, pairing bundles and revoking; the broker's config,
logins and reload; the private CA."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from earmark.cloud.broker.marks import send_marks
from earmark.cloud.cli.common import cli_settings, cli_store, emit, open_for_work, sync_logins, write_secret
from earmark.cloud.store.registry import RegistryError
from earmark.cloud.store.store import Store

log = logging.getLogger("earmark.cloud")


def cmd_device_add(args: argparse.Namespace) -> int:
    s = cli_settings(args)
    store = open_for_work(s)
    url = _bundle_broker_url(store, args.broker_url) if args.bundle_out else ""  # before anything is added
    device = store.registry.add_device(args.owner, args.public_key, args.device_id)
    if args.bundle_out:
        _issue_bundle(store, device.device_id, url, args.bundle_out)
        log.info("%s", sync_logins(s, store).describe())
    print(json.dumps(asdict(device)) if args.json else device.device_id)
    if not args.bundle_out:
        print(f"next: `earmark-cloud device bundle {device.device_id} --out {device.device_id}.bundle.json` makes its "
              "broker login and pairing bundle for `earmark-device provision`", file=sys.stderr)
    return 0


def cmd_device_bundle(args: argparse.Namespace) -> int:
    s = cli_settings(args)
    store = open_for_work(s)
    device = store.registry.device(args.device_id)
    if device is None:
        raise RegistryError(f"no device {args.device_id}")
    if device.revoked_at:
        raise RegistryError(f"device {args.device_id} is revoked: enroll the device again with a new key")
    _issue_bundle(store, device.device_id, _bundle_broker_url(store, args.broker_url), args.out)
    report = sync_logins(s, store)
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
    recipients = tuple(store.registry.household_recipients(device.owner_id))
    if not recipients:  # a device without the household's key records nothing
        raise RegistryError(f"{device_id}'s household has no key yet: it makes one on the portal's Household key "
                            "page (or with age-keygen, then `earmark-cloud owner set-recipient`); then run "
                            f"`earmark-cloud device bundle {device_id}`")
    password = broker.create_login(store, device_id, "device")
    ca = broker.broker_ca(store)
    bundle = PairingBundle(device_id, device.owner_id, device.public_key, url, device_id, password,
                           ca.read_text() if ca else "", recipients)
    write_secret(out, bundle.to_json())


def cmd_device_revoke(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.control import revoke_device

    s = cli_settings(args)
    device, report = revoke_device(open_for_work(s), args.device_id, s.broker.reload_command)  # again: re-syncs
    print(json.dumps({**asdict(device), "broker": report.state}) if args.json else
          f"{device.device_id} revoked at {device.revoked_at}; {report.describe()}")
    return 0


def cmd_broker_sync(args: argparse.Namespace) -> int:
    s = cli_settings(args)
    store = open_for_work(s)
    pending = store.accounts.broker_pending_since()
    report = sync_logins(s, store)
    marked = sorted({d for owner in store.registry.owners() for d in store.clips.marked_devices(owner.owner_id)})
    unsent = send_marks(store, marked) if report.state == "confirmed" else []
    print(json.dumps({"state": report.state, "logins": report.logins, "was_pending_since": pending,
                      "marks_sent": len(marked) - len(unsent), "marks_unsent": unsent})
          if args.json else report.describe() + (f" (it had been behind the registry since {pending})"
                                                  if pending else "")
          + (f"; the household's marks sent to {len(marked) - len(unsent)} device(s)" if marked else ""))
    return 1 if unsent else 0


def cmd_device_list(args: argparse.Namespace) -> int:
    emit(args, [asdict(d) for d in cli_store(args).registry.devices(args.owner)],
          ["device_id", "owner_id", "bound_at", "revoked_at", "public_key"])
    return 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    from earmark.cloud.broker import logins as broker
    from earmark.cloud.broker.config import write_broker_config

    store = cli_store(args)
    setup = write_broker_config(store, args.out, args.port, args.bind, args.hosts,
                                       args.require_client_certs, args.run_as, args.queue_mb)
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

    s = cli_settings(args)
    store = open_for_work(s)
    username, password_file = add_ingester_login(store, args.name)
    log.info("%s", sync_logins(s, store).describe())
    if args.json:
        print(json.dumps({"username": username, "password_file": str(password_file)}))
    else:
        print(f"ingester login {username}; its password is in {password_file}")
        print(f"run it with: earmark-cloud ingest --username {username} --password-file {password_file} "
              f"--client-id {username} …")
    return 0


def cmd_ca_init(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.certs import ca_paths, init_ca

    s = cli_settings(args)
    made = init_ca(Path(s.data_dir) / "ca")
    cert, _ = ca_paths(Path(s.data_dir) / "ca")
    print(json.dumps({"ca": str(cert), "created": made}) if args.json else
          f"CA {'created' if made else 'already present'}: {cert}")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    from earmark.cloud.broker.certs import issue

    s = cli_settings(args)
    cert, key = issue(Path(s.data_dir) / "ca", args.name, args.out, args.hosts, server=not args.client)
    print(json.dumps({"cert": str(cert), "key": str(key)}) if args.json else f"{cert}\n{key}")
    return 0
