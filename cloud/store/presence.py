"""Whether each device is online, from its retained status topic (earmark/v1/status/<id>).

A connected device keeps its status JSON retained there; its MQTT will replaces it with
`offline` when its connection drops (or it says so itself on a clean stop). The MQTT
ingester reads the topics (only a device may publish to its own: the broker's ACL), and
records each change here under the device's owner, so the owner's portal shows it without
any broker login of its own. A revoked or unknown device's status is not kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from earmark.cloud.store.database import Database
from earmark.cloud.store.ddl import insert
from earmark.cloud.store.registry import Registry
from earmark.wire.timestamps import utc_now

STATUS_MAX = 4096  # bytes of a device's status JSON kept; a bigger one is kept as {}
UPSERT = insert("device_presence", conflict="device_id", update=("online", "changed_at", "status"))


@dataclass(frozen=True)
class Presence:
    online: bool
    changed_at: str
    status: dict[str, object]  # the device's own last status (mic, mute, spool depth…); {} when offline


def parse_status(payload: bytes) -> tuple[bool, dict[str, object]]:
    """(online, status) from a status topic's payload: `offline` or empty (a cleared retained
    message) is offline; anything else is the status JSON of a connected device."""
    text = payload.strip()
    if not text or text == b"offline":
        return False, {}
    try:
        status = json.loads(text) if len(text) <= STATUS_MAX else {}
    except ValueError:
        status = {}
    return True, status if isinstance(status, dict) else {}


class DevicePresence:
    def __init__(self, db: Database, registry: Registry) -> None:
        self.db, self.registry = db, registry

    def record(self, device_id: str, payload: bytes) -> bool:
        """Keep what the device's status topic now says; False (nothing kept) for a device the
        registry does not know, has revoked or cannot tie to one owner."""
        device = self.registry.device(device_id)
        if device is None or device.revoked_at or device.owner_id is None:
            return False
        online, status = parse_status(payload)
        with self.db.transaction() as cur:
            cur.scope(device.owner_id)
            cur.execute(UPSERT, {"device_id": device_id, "owner_id": device.owner_id, "online": online,
                                 "changed_at": utc_now(), "status": json.dumps(status, sort_keys=True)})
        return True

    def of_owner(self, owner_id: str) -> dict[str, Presence]:
        """The owner's devices' last known states, by device id."""
        rows = self.db.query("SELECT device_id, online, changed_at, status FROM device_presence "
                             "WHERE owner_id = :owner_id", {"owner_id": owner_id}, owner=owner_id)
        return {r["device_id"]: Presence(bool(r["online"]), r["changed_at"], json.loads(r["status"])) for r in rows}

    def forget(self, owner_id: str) -> None:
        """An erasure: nothing about the owner's devices stays."""
        with self.db.transaction() as cur:
            cur.scope(owner_id)
            cur.execute("DELETE FROM device_presence WHERE owner_id = :owner_id", {"owner_id": owner_id})
