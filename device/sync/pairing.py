"""`earmark-device provision BUNDLE`: install what the cloud issued for this device.

Writes, in the data dir: broker-ca.pem, broker.password (0600) and pairing.toml (0600),
which `load_settings` reads beneath the config file. Refuses a bundle made for another
device key, so a bundle mixed up between two devices cannot make one publish as the other.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from earmark.device.sync.identity import load_or_create_key, public_key_of
from earmark.runtime.durable import write_file
from earmark.wire.bundle import BundleError, PairingBundle, parse_bundle


def install_bundle(data_dir: Path, bundle_path: Path) -> PairingBundle:
    try:
        bundle = parse_bundle(bundle_path.read_text())
    except FileNotFoundError:
        raise BundleError(f"pairing bundle {bundle_path} does not exist") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    key, _ = load_or_create_key(data_dir / "device.key")
    if public_key_of(key) != bundle.public_key:
        raise BundleError(f"the bundle was made for key {bundle.public_key[:20]}…, not this device's "
                          f"{public_key_of(key)[:20]}… (`earmark-device enroll` prints it)")
    password_file, ca_file = data_dir / "broker.password", data_dir / "broker-ca.pem"
    write_file(password_file, (bundle.password + "\n").encode())
    broker = {"url": bundle.broker_url, "username": bundle.username, "password_file": str(password_file)}
    if bundle.ca_pem:
        write_file(ca_file, bundle.ca_pem.encode(), 0o644)
        broker["ca"] = str(ca_file)
    lines = ["# Written by `earmark-device provision`; the config file and flags override it.",
             f"device_id = {json.dumps(bundle.device_id)}", f"owner_id = {json.dumps(bundle.owner_id)}",
             f"recipients = {json.dumps(list(bundle.recipients))}", "",
             "[broker]", *(f"{k} = {json.dumps(v)}" for k, v in broker.items()), ""]
    write_file(data_dir / "pairing.toml", "\n".join(lines).encode())
    return bundle


PAIRING_FILES = ("device.key", "chain.json", "pairing.toml", "broker.password", "broker-ca.pem")


def reset_identity(data_dir: Path, spool_dir: Path) -> list[Path]:
    """Forget this device's identity before it goes to someone else: its key, its pairing, its
    spool (clips recorded for the old owner must never go out under a new one) and the
    household voices enrolled on it (their features are the old household's). Returns what
    was deleted. Enrolling again makes a new key, which the cloud registers anew."""
    removed = []
    for name in PAIRING_FILES:
        path = data_dir / name
        if path.exists():
            path.unlink()
            removed.append(path)
    for folder in (spool_dir, data_dir / "voices"):
        if folder.exists():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
