"""The ingest core, independent of any transport: one message in, one outcome out.

For each message: bound the size before decoding; parse strictly; find the device named by
the topic (the broker's authenticated username) and refuse unknown or revoked devices;
verify the signature with the device's registered key; take the owner from the registry
(the binding at capture time) and require the envelope's owner tag and device id to agree;
de-duplicate by clip id; then seal and store under the owner. Anything refused goes to
quarantine, tied to no owner, with its reason and an audit event.

`handle` returns an Outcome for every message it can judge. It raises only StoreError,
when the store cannot record anything (disk full, database gone): the caller must then
not acknowledge the message, so it is delivered again later.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from cloud.store import OwnerError, Store
from earmark_wire.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    EnvelopeError,
    decode_envelope,
    parse_public_key,
)
from earmark_wire.receipt import Receipt, Status
from earmark_wire.topics import TopicError, device_from_clip_topic

log = logging.getLogger(__name__)

REJECTION_REASONS = (
    "oversize", "malformed", "unknown_version", "audio_hash", "bad_topic", "unknown_device",
    "revoked_device", "bad_signature", "device_mismatch", "no_owner_at_capture", "owner_erased",
    "owner_mismatch", "clip_id_conflict",
)


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str  # "" when stored; a REJECTION_REASONS entry when rejected
    clip_id: str | None
    device_id: str | None
    owner_id: str | None = None
    detail: str = ""

    def receipt(self) -> Receipt | None:
        """The receipt for the device, if the message carried a clip id to answer to."""
        if self.clip_id is None:
            return None
        return Receipt(self.clip_id, self.status, self.reason)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Ingestor:
    def __init__(self, store: Store, max_bytes: int = MAX_ENVELOPE_BYTES) -> None:
        self.store = store
        self.max_bytes = max_bytes

    def handle(self, topic: str, payload: bytes) -> Outcome:
        clip_id = device_id = None
        try:
            if len(payload) > self.max_bytes:
                raise Rejected("oversize", f"{len(payload)} bytes exceeds the limit of {self.max_bytes}")
            try:
                device_id = device_from_clip_topic(topic)
            except TopicError as exc:
                raise Rejected("bad_topic", str(exc)) from None
            try:
                envelope = decode_envelope(payload, self.max_bytes)
            except EnvelopeError as exc:
                raise Rejected(exc.reason, exc.detail) from None
            header = envelope.header
            clip_id = header.clip_id
            owner_id = self._owner_for(device_id, envelope)
            known = self.store.clips.fingerprint(clip_id)
            if known is not None:
                if known == hashlib.sha256(payload).hexdigest():
                    return Outcome("duplicate", "", clip_id, device_id, owner_id)
                raise Rejected("clip_id_conflict", "a different clip is already stored under this id")
            try:
                self.store.clips.put(owner_id, envelope, payload)
            except OwnerError as exc:  # erased between the check and the write
                raise Rejected("owner_erased", str(exc)) from None
            log.info("stored clip %s from %s for owner %s", clip_id, device_id, owner_id)
            return Outcome("stored", "", clip_id, device_id, owner_id)
        except Rejected as rejection:
            qid, new = self.store.quarantine.put(topic, rejection.reason, rejection.detail, payload)
            if new:
                log.warning("quarantined %s from topic %r: %s (%s)", qid, topic[:100], rejection.reason,
                            rejection.detail)
            return Outcome("rejected", rejection.reason, clip_id, device_id, detail=rejection.detail)

    def _owner_for(self, device_id: str, envelope: Envelope) -> str:
        header = envelope.header
        device = self.store.registry.device(device_id)
        if device is None:
            raise Rejected("unknown_device", f"device {device_id} is not registered")
        if device.revoked_at:
            raise Rejected("revoked_device", f"device {device_id} was revoked at {device.revoked_at}")
        if not envelope.verify(parse_public_key(device.public_key)):
            raise Rejected("bad_signature", f"signature does not verify with {device_id}'s key")
        if header.device_id != device_id:
            raise Rejected("device_mismatch", f"envelope names device {header.device_id}, "
                                              f"topic names {device_id}")
        owner_id = self.store.registry.owner_at(device_id, header.captured_at)
        if owner_id is None:
            raise Rejected("no_owner_at_capture", f"{device_id} was bound to no owner at {header.captured_at}")
        owner = self.store.registry.owner(owner_id)
        if owner is None or owner.erased_at:
            raise Rejected("owner_erased", f"owner {owner_id} was erased")
        if header.owner_id != owner_id:
            raise Rejected("owner_mismatch", f"envelope names owner {header.owner_id}, the registry "
                                             f"binds {device_id} to {owner_id} at {header.captured_at}")
        return owner_id
