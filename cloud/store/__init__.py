"""The store layer: the only modules that hold SQL. `Store` composes a database (SQLite or
PostgreSQL), the keys, the blob files and the audit log with the repositories built on them."""

from earmark.cloud.store.audit import AuditLog, AuditProblem
from earmark.cloud.store.clips import ClipRow, Clips, NewClip
from earmark.cloud.store.crypto import CryptoError, MasterKeyError, create_master_key
from earmark.cloud.store.database import StoreError, StoreUnavailable
from earmark.cloud.store.keys import OwnerError
from earmark.cloud.store.quarantine import QuarantineRow
from earmark.cloud.store.registry import Device, Owner, Registry, RegistryError
from earmark.cloud.store.store import Store

__all__ = [
    "AuditLog",
    "AuditProblem",
    "ClipRow",
    "Clips",
    "CryptoError",
    "Device",
    "MasterKeyError",
    "NewClip",
    "Owner",
    "OwnerError",
    "QuarantineRow",
    "Registry",
    "RegistryError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "create_master_key",
]
