"""Sync: the device's identity (its Ed25519 key) that seals each clip, the durable spool, the
pairing bundle, and the publisher that sends spooled clips until the cloud receipts them."""

from earmark.device.sync.identity import Sealer, load_or_create_key, public_key_of
from earmark.device.sync.spool import Spool, SpoolFull

__all__ = ["Sealer", "Spool", "SpoolFull", "load_or_create_key", "public_key_of"]
