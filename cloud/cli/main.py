"""`earmark-cloud`: create the store, manage owners and devices, inspect clips, quarantine
and the audit log, and run the ingester. Admin commands print ids so scripts can capture
them, and take --json for machine-readable output. Every error prints one line; the exit
code says what kind it was (earmark.wire.errors): 2 a person must fix something, 75 try
again later, 1 the command's answer was no."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from earmark.cloud.broker.config import QUEUE_MB
from earmark.cloud.cli.devices import (
    cmd_broker_add_ingester,
    cmd_broker_config,
    cmd_broker_sync,
    cmd_ca_init,
    cmd_ca_issue,
    cmd_device_add,
    cmd_device_bundle,
    cmd_device_list,
    cmd_device_revoke,
)
from earmark.cloud.cli.operations import (
    cmd_audit_verify,
    cmd_backup,
    cmd_db_migrate,
    cmd_ingest,
    cmd_keys_rotate,
    cmd_keys_rotate_export,
    cmd_quarantine_list,
    cmd_quarantine_purge,
    cmd_quarantine_show,
    cmd_restore,
    cmd_status,
    cmd_store_check,
)
from earmark.cloud.cli.people import (
    cmd_clip_delete,
    cmd_clips_list,
    cmd_erase,
    cmd_export,
    cmd_export_key,
    cmd_init,
    cmd_owner_add,
    cmd_owner_invite,
    cmd_owner_list,
    cmd_owner_reseal,
    cmd_owner_set_recipient,
    cmd_portal,
    cmd_purge,
    cmd_verify_export,
)
from earmark.cloud.settings import CloudSettings, default_data_dir
from earmark.cloud.store.database import StoreError
from earmark.runtime.command import add_global_options, run_command, version
from earmark.runtime.config import add_flags


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    """The options every command takes, before or after its name (`earmark-cloud --json
    device list` and `earmark-cloud device list --json` are the same)."""
    suppress: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--data-dir", type=Path, help=f"the store (default: $EARMARK_CLOUD_DIR or {default_data_dir()})",
                   **suppress)
    p.add_argument("--config", type=Path, help="TOML config (default: <data-dir>/cloud.toml if it exists)",
                   **suppress)
    add_flags(p, CloudSettings, ["database_url"], **suppress)
    add_global_options(p, top=top)


# One example per command, shown under its --help (tests/integration/test_cloud_cli.py checks
# that every command has one).
EXAMPLES: dict[str, list[str]] = {
    "init": ["earmark-cloud init --data-dir /var/lib/earmark-cloud"],
    "db_migrate": ["earmark-cloud db migrate --admin-url postgresql://postgres@db/earmark "
                   "--service-role earmark_service"],
    "owner_add": ["OWNER=$(earmark-cloud owner add --name 'Alice')"],
    "owner_list": ["earmark-cloud owner list --json | jq '.[].owner_id'"],
    "owner_invite": ["earmark-cloud owner invite --owner $OWNER   # a one-time link to the portal, for the owner"],
    "portal": ["earmark-cloud portal              # http://localhost:8080 (portal.public_url in cloud.toml)"],
    "owner_set_recipient": ["earmark-cloud owner set-recipient --owner $OWNER age1ql3z7hjy54pw3hyww5ayyfg7…"],
    "owner_reseal": ["earmark-cloud owner reseal --all   # after upgrading: once each owner has set a household key"],
    "device_add": ["earmark-cloud device add --owner $OWNER --public-key ed25519:… --device-id kitchen-pi "
                   "--bundle-out kitchen-pi.bundle.json"],
    "device_bundle": ["earmark-cloud device bundle kitchen-pi --out kitchen-pi.bundle.json"],
    "device_revoke": ["earmark-cloud device revoke kitchen-pi"],
    "device_list": ["earmark-cloud device list --owner $OWNER"],
    "clips_list": ["earmark-cloud clips list --owner $OWNER | head"],
    "clip_delete": ["earmark-cloud clip delete --owner $OWNER 2f1c…"],
    "export": ["earmark-cloud export --owner $OWNER --out /srv/exports"],
    "verify_export": ["earmark-cloud verify-export --owner $OWNER earmark-export-….zip",
                      "earmark-cloud verify-export --owner $OWNER --key ed25519:… earmark-export-….zip   # offline"],
    "export_key": ["earmark-cloud export-key"],
    "keys_rotate_export": ["earmark-cloud keys rotate-export"],
    "erase": ["earmark-cloud erase --owner $OWNER        # asks you to type the owner id"],
    "purge": ["earmark-cloud purge        # with retention_days = 90 in cloud.toml"],
    "quarantine_list": ["earmark-cloud quarantine list --json"],
    "quarantine_show": ["earmark-cloud quarantine show q-…"],
    "quarantine_purge": ["earmark-cloud quarantine purge --all"],
    "broker_config": ["earmark-cloud broker config --out /var/lib/earmark-cloud/broker --bind 0.0.0.0 "
                      "--host broker.example.org"],
    "broker_sync": ["earmark-cloud broker sync"],
    "broker_add_ingester": ["earmark-cloud broker add-ingester ingest-2"],
    "ca_init": ["earmark-cloud ca init"],
    "ca_issue": ["earmark-cloud ca issue kitchen-pi --client --out ./certs"],
    "backup": ["earmark-cloud backup --out /srv/backups/$(date +%F)"],
    "restore": ["earmark-cloud restore --from /srv/backups/2026-11-01"],
    "keys_rotate": ["earmark-cloud keys rotate"],
    "store_check": ["earmark-cloud store check --repair"],
    "audit_verify": ["earmark-cloud audit verify"],
    "ingest": ["earmark-cloud ingest        # after `broker config`, no flags are needed",
               "earmark-cloud ingest --retire        # leave the shared group for good (scale-down)"],
    "status": ["earmark-cloud status --json"],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earmark-cloud", description="Earmark cloud: registry, ingester, store.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], helptext: str,
                parent: Any = sub) -> argparse.ArgumentParser:
        words = handler.__name__.removeprefix("cmd_")
        example = EXAMPLES[words]
        p: argparse.ArgumentParser = parent.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
            epilog="example:\n  " + "\n  ".join(example), formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False)  # a flag is spelt out: --password must not become --password-file
        _common(p)
        p.set_defaults(handler=handler)
        return p

    command("init", cmd_init, "create the store and the master key (0600)")

    db = sub.add_parser("db", help="the PostgreSQL backend").add_subparsers(dest="db_command", required=True)
    migrate = command("migrate", cmd_db_migrate, "create or upgrade the PostgreSQL schema (as its admin) "
                      "and grant the service role", db)
    migrate.add_argument("--admin-url", required=True,
                         help="postgresql://ADMIN@HOST/DB: owns the tables (a password from PGPASSFILE)")
    migrate.add_argument("--service-role", default="earmark_service",
                         help="the role ingesters and tools log in as (created if missing)")

    owner = sub.add_parser("owner", help="owners").add_subparsers(dest="owner_command", required=True)
    command("add", cmd_owner_add, "add an owner; prints its id", owner).add_argument("--name", required=True)
    command("list", cmd_owner_list, "list owners", owner)
    command("invite", cmd_owner_invite, "a one-time link with which the owner makes the passkey for their "
            "portal page (single use, expires in portal.invite_minutes)", owner).add_argument("--owner", required=True)
    recipient = command("set-recipient", cmd_owner_set_recipient,
                        "the household's key (its age public key, from `age-keygen`; the identity stays with "
                        "the household): devices paired from now on seal every clip to it, and exports are "
                        "encrypted to it; a key set before is retired", owner)
    recipient.add_argument("--owner", required=True)
    recipient.add_argument("recipient", help="age1…")
    reseal = command("reseal", cmd_owner_reseal,
                     "re-seal to the household's key every clip the server sealed for an owner before they set "
                     "one, then shred the server's key for them (run again at will: it carries on)", owner)
    whom = reseal.add_mutually_exclusive_group(required=True)
    whom.add_argument("--owner", help="owner id")
    whom.add_argument("--all", action="store_true", help="every owner who has set a household key")

    portal = command("portal", cmd_portal, "serve the owners' portal (passkey sign-in; each owner sees, hears "
                     "and deletes their own recordings)")
    add_flags(portal, CloudSettings, ["portal.host", "portal.port"])

    device = sub.add_parser("device", help="devices").add_subparsers(dest="device_command", required=True)
    add = command("add", cmd_device_add, "register a device's public key to an owner; prints its id", device)
    add.add_argument("--owner", required=True, help="owner id")
    add.add_argument("--public-key", required=True, help="ed25519:… as printed by `earmark-device keygen`")
    add.add_argument("--device-id", help="id to use (default: generated); also the device's broker username")
    add.add_argument("--bundle-out", type=Path, help="write the device's pairing bundle here (0600)")
    add.add_argument("--broker-url", help="broker address for the bundle (default: from `broker config`)")
    bundle = command("bundle", cmd_device_bundle, "a new broker password and pairing bundle for a device "
                     "(the old password stops working)", device)
    bundle.add_argument("device_id")
    bundle.add_argument("--out", type=Path, required=True, help="where to write the bundle (0600)")
    bundle.add_argument("--broker-url", help="broker address for the bundle (default: from `broker config`)")
    command("revoke", cmd_device_revoke, "revoke a device: its clips are refused from now on",
            device).add_argument("device_id")
    command("list", cmd_device_list, "list devices", device).add_argument("--owner")

    clips = sub.add_parser("clips", help="clips").add_subparsers(dest="clips_command", required=True)
    command("list", cmd_clips_list, "an owner's clips", clips).add_argument("--owner", required=True)
    clip = sub.add_parser("clip", help="one clip").add_subparsers(dest="clip_command", required=True)
    delete = command("delete", cmd_clip_delete, "delete one of an owner's clips", clip)
    delete.add_argument("--owner", required=True)
    delete.add_argument("clip_id")

    export = command("export", cmd_export, "all of an owner's recordings, and nothing else, as a zip archive")
    export.add_argument("--owner", required=True)
    export.add_argument("--out", type=Path, required=True, help="directory for earmark-export-<owner>-<utc>.zip")
    export.add_argument("--recipient", help="age1… to encrypt to (default: the owner's registered recipient)")
    verify = command("verify-export", cmd_verify_export, "check an export archive; exit 0 only if it all holds")
    verify.add_argument("archive", type=Path)
    verify.add_argument("--owner", required=True)
    verify.add_argument("--identity", type=Path, help="the owner's age identity file, for an encrypted archive")
    verify.add_argument("--key", help="ed25519:… (`earmark-cloud export-key`, or the portal's export page): check "
                                      "the archive offline against this signing key alone, without the store")
    command("export-key", cmd_export_key, "the export signing keys' public halves: what archives are checked with")
    erase = command("erase", cmd_erase, "erase an owner: destroy their key, delete their clips, revoke devices")
    erase.add_argument("--owner", required=True)
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    command("purge", cmd_purge, "delete clips older than retention_days (config)")

    quarantine = sub.add_parser("quarantine", help="rejected payloads").add_subparsers(
        dest="quarantine_command", required=True)
    command("list", cmd_quarantine_list, "list quarantined payloads", quarantine)
    command("show", cmd_quarantine_show, "one quarantined payload's record and header",
            quarantine).add_argument("quarantine_id")
    purge = command("purge", cmd_quarantine_purge, "delete quarantined payloads", quarantine)
    purge.add_argument("quarantine_ids", nargs="*")
    purge.add_argument("--all", action="store_true")

    broker = sub.add_parser("broker", help="the Mosquitto broker").add_subparsers(dest="broker_command", required=True)
    config = command("config", cmd_broker_config, "write a Mosquitto 2.0 config with TLS, logins and ACL", broker)
    config.add_argument("--out", type=Path, required=True, help="directory for mosquitto.conf and its files")
    config.add_argument("--port", type=int, default=8883)
    config.add_argument("--bind", default="127.0.0.1", help="listener address")
    config.add_argument("--host", action="append", dest="hosts",
                        help="name or address devices use to reach the broker (repeatable; goes in the certificate)")
    config.add_argument("--require-client-certs", action="store_true",
                        help="devices log in with client certificates (`ca issue --client`) instead of passwords")
    config.add_argument("--run-as", help="the user Mosquitto runs as (default: Mosquitto's own, 'mosquitto')")
    config.add_argument("--queue-mb", type=int, default=QUEUE_MB, metavar="MB",
                        help=f"each client's queue at most (an ingester's clips while it is down; default {QUEUE_MB}; "
                             "deploy/SCALING.md sizes it from the fleet)")

    command("sync", cmd_broker_sync, "bring the running broker in step with the registry's logins and confirm it "
            "(after a change the broker did not confirm)", broker)
    command("add-ingester", cmd_broker_add_ingester, "a broker login of its own for one more ingester "
            "(earmark-ingester-NAME)", broker).add_argument("name", help="e.g. the host it runs on: ingest-2")

    ca = sub.add_parser("ca", help="the private CA for TLS").add_subparsers(dest="ca_command", required=True)
    command("init", cmd_ca_init, "make the CA (in <data-dir>/ca)", ca)
    issue = command("issue", cmd_ca_issue, "issue a server or client certificate", ca)
    issue.add_argument("name")
    issue.add_argument("--out", type=Path, required=True)
    issue.add_argument("--host", action="append", dest="hosts", help="subject alternative name (servers)")
    issue.add_argument("--client", action="store_true", help="a client certificate (CN = the name)")

    backup = command("backup", cmd_backup, "a consistent copy of the rows and blobs (never the master key "
                     "or the erasure ledger)")
    backup.add_argument("--out", type=Path, required=True, help="a new, empty folder")
    backup.add_argument("--admin-url",
                        help="PostgreSQL only: postgresql://ADMIN@HOST/DB (pg_dump runs as the admin)")
    restore = command("restore", cmd_restore, "put a backup back; erasures made since are applied again")
    restore.add_argument("--from", dest="source", type=Path, required=True, help="a folder `backup` wrote")
    restore.add_argument("--admin-url", help="PostgreSQL only: postgresql://ADMIN@HOST/DB")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    keys = sub.add_parser("keys", help="the master key").add_subparsers(dest="keys_command", required=True)
    command("rotate", cmd_keys_rotate, "a new master key: every owner key re-wrapped under it, the old key "
            "file replaced (backups taken before then no longer open once it is gone)", keys)
    command("rotate-export", cmd_keys_rotate_export, "a new export signing key (archives signed by the old one "
            "still verify)", keys)

    store_cmd = sub.add_parser("store", help="the store's files and rows").add_subparsers(
        dest="store_command", required=True)
    check = command("check", cmd_store_check, "report rows without blobs and blobs without rows; exit 1 if any",
                    store_cmd)
    check.add_argument("--repair", action="store_true",
                       help="re-index complete clips, set aside what cannot be accounted for, drop rows whose "
                            "blob is gone")

    command("status", cmd_status, "counts, the last clip stored, the broker (reachable, logins in step, "
            "messages held) and the ingesters; exit 1 if the broker is down or behind")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    command("verify", cmd_audit_verify, "check the hash chain; exit 1 if anything was edited or removed", audit)

    ingest = command("ingest", cmd_ingest, "run the ingester until SIGTERM")
    add_flags(ingest, CloudSettings, ["broker.url", "broker.username", "broker.password_file", "broker.client_id",
                                      "broker.client_cert", "broker.client_key", "broker.ca", "source", "amqp.url",
                                      "amqp.password_file", "metrics.port", "metrics.host"])
    ingest.add_argument("--retire", action="store_true",
                        help="scale-down: take no new clips, drain this ingester's queue, then end its session "
                             "so the group's other members get every clip (deploy/SCALING.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command("earmark-cloud", build_parser().parse_args(argv), _as_store_error)


def _as_store_error(exc: Exception) -> Exception:
    """A database driver's own error that escaped the store layer, as the store's."""
    if isinstance(exc, sqlite3.DatabaseError):
        return StoreError(f"the database is unusable: {exc}")
    psycopg = sys.modules.get("psycopg")  # imported only when a PostgreSQL store was opened
    if psycopg is not None and isinstance(exc, psycopg.Error):
        from earmark.cloud.store.postgres import first_line

        return StoreError(f"PostgreSQL refused: {first_line(exc)}")
    return exc


if __name__ == "__main__":
    sys.exit(main())
