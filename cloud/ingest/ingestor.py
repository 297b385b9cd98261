"""The ingest core, independent of any transport: one message in, one outcome out.

For each message: bound the size before decoding; parse strictly; find the device named by
the topic (the broker's authenticated username) and refuse unknown or revoked devices;
verify the signature with the device's registered key; refuse a capture time more than
MAX_CLOCK_AHEAD ahead of the server's; take the owner from the registry (the one owner the
device's identity belongs to, never a time the device supplies) and require the envelope's
owner tag and device id to agree; require a clip sealed on its device (wire v3) to be sealed
to the household's live keys only, and refuse a plain clip once the household has a key;
de-duplicate by clip id; then seal and store under the owner. The ingester opens no audio:
a sealed clip's audio is the household's ciphertext, and no key here opens it. Anything refused goes to
quarantine, tied to no owner, with its reason and an audit event.

A batch goes through two phases: `judge` (every check above, the registry looked up once
per batch, refusals quarantined) and `commit` (seal and store what was accepted, in one
durable transaction). `handle_batch` is the two in turn; a message source may judge the
next batch while this one commits (source.Pipeline). `commit` re-checks what may have
changed since `judge` (an erasure; the same clip stored by another batch or ingester).

`handle` returns an Outcome for every message it can judge. It raises only StoreError,
when the store cannot record anything (disk full, database gone): the caller must then
not acknowledge the message, so it is delivered again later.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from earmark.cloud.store.clips import NewClip
from earmark.cloud.store.crypto import CryptoError
from earmark.cloud.store.database import StoreError
from earmark.cloud.store.keys import OwnerError
from earmark.cloud.store.quarantine import QuarantineQuota
from earmark.cloud.store.registry import Device
from earmark.cloud.store.store import Store
from earmark.wire.envelope import (
    MAX_ENVELOPE_BYTES,
    ClipHeader,
    Envelope,
    EnvelopeError,
    decode_envelope,
    parse_public_key,
)
from earmark.wire.errors import EarmarkError
from earmark.wire.receipt import Receipt, Status
from earmark.wire.timestamps import parse_utc
from earmark.wire.topics import TopicError, clip_topic, device_from_clip_topic

log = logging.getLogger(__name__)

REJECTION_REASONS = (
    "oversize", "malformed", "unknown_version", "audio_hash", "bad_topic", "unknown_device",
    "revoked_device", "bad_signature", "device_mismatch", "captured_in_future", "rebound_device",
    "owner_erased", "owner_mismatch", "clip_id_conflict", "unknown_recipient", "not_sealed",
)
# A Pi has no real-time clock: its time may lag (it boots with the last one saved) but a
# capture time well ahead of the server's receive time is not a clock a clip can come from.
MAX_CLOCK_AHEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str  # "" when stored; a REJECTION_REASONS entry when rejected
    clip_id: str | None
    device_id: str | None
    owner_id: str | None = None
    detail: str = ""
    kept: bool = True  # False: refused and not kept in quarantine (quota, or an erased owner's)

    def receipt(self) -> Receipt | None:
        """The receipt for the device, if the message carried a clip id to answer to."""
        if self.clip_id is None:
            return None
        return Receipt(self.clip_id, self.status, self.reason)


class Rejected(EarmarkError):
    """A message refused by the checks: it goes to quarantine with `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.clip_id: str | None = None
        self.device_id: str | None = None  # the topic's
        self.claimed_owner: str | None = None  # the owner the header names, if it parsed
        self.seq: int | None = None  # its chain position, only once its device's signature verified

    def about(self, clip_id: str | None, device_id: str | None, claimed_owner: str | None,
              seq: int | None = None) -> Rejected:
        self.clip_id, self.device_id, self.claimed_owner, self.seq = clip_id, device_id, claimed_owner, seq
        return self


@dataclass
class Judged:
    """A judged batch: an outcome per message (in message order), and the accepted clips,
    whose "stored" outcomes hold until `commit` has made them durable."""

    outcomes: list[Outcome]
    accepted: list[NewClip]
    position: dict[str, int]  # clip id -> index of its outcome
    view: _BatchView


@dataclass(frozen=True)
class _Checked:
    """A message that passed every check that needs no store."""

    device_id: str
    envelope: Envelope
    digest: str  # the envelope's digest (wire/envelope.py)


def _device_id_or_none(topic: str) -> str | None:
    try:
        return device_from_clip_topic(topic)
    except TopicError:
        return None


class _BatchView:
    """The registry as one batch sees it: each device, its bindings, its parsed key and each
    owner asked once."""

    def __init__(self, store: Store) -> None:
        self.bindings = functools.cache(store.registry.bindings)
        self.owner = functools.cache(store.registry.owner)
        self.device = functools.cache(lambda device_id: store.registry.device(device_id, self.bindings(device_id)))
        self.key = functools.cache(parse_public_key)
        self.recipients = functools.cache(lambda owner_id: frozenset(store.registry.household_recipients(owner_id)))

    def erased(self, owner_id: str | None) -> bool:
        owner = self.owner(owner_id) if owner_id is not None else None
        return owner is not None and owner.erased_at is not None


class Ingestor:
    def __init__(self, store: Store, max_bytes: int = MAX_ENVELOPE_BYTES,
                 quota: QuarantineQuota | None = None) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.quota = quota or QuarantineQuota()
        self._quota_reported: set[str | None] = set()

    def handle(self, topic: str, payload: bytes) -> Outcome:
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(self, messages: list[tuple[str, bytes]]) -> list[Outcome]:
        """Judge each message, then store all accepted clips in one group commit. Outcomes
        come back in message order. Raises StoreError (nothing stored) if the store fails."""
        return self.commit(self.judge(messages))

    def judge(self, messages: list[tuple[str, bytes]]) -> Judged:
        """Every check, and refusals quarantined; nothing accepted is stored yet. Raises
        StoreError if the store cannot be read or cannot keep a refusal."""
        # One view of the registry per batch: each device's record and bindings, each owner,
        # and every clip id's fingerprint are looked up once (a round trip each on PostgreSQL).
        view = _BatchView(self.store)
        devices = {device_id: view.device(device_id) for device_id in
                   {_device_id_or_none(topic) for topic, _ in messages} if device_id is not None}
        # The checks that need no store run first (they are pure: see _check); measured, a
        # thread pool for them did not help, because JSON parsing and AES hold the GIL.
        checked = [self._check(topic, payload, devices, view) for topic, payload in messages]
        stored = self.store.clips.fingerprints([c.envelope.header.clip_id for c in checked
                                                if isinstance(c, _Checked)])
        outcomes: list[Outcome] = []
        accepted: list[NewClip] = []
        position: dict[str, int] = {}  # clip id -> index of its outcome
        in_batch: dict[str, str] = {}  # clip id -> envelope digest, for repeats within the batch
        for (topic, payload), result in zip(messages, checked, strict=True):
            if isinstance(result, Rejected):
                outcomes.append(self._quarantine(topic, payload, result, view))
                continue
            h, device_id = result.envelope.header, result.device_id
            try:
                owner_id = self._owner_for(device_id, result.envelope, view)
                known = in_batch.get(h.clip_id) or stored.get(h.clip_id)
                if known is not None:
                    if known != result.digest:
                        raise Rejected("clip_id_conflict", "a different clip is already stored under this id")
                    outcomes.append(Outcome("duplicate", "", h.clip_id, device_id, owner_id))
                    continue
                in_batch[h.clip_id] = result.digest
                accepted.append(NewClip(owner_id, result.envelope, payload, result.digest))
                position[h.clip_id] = len(outcomes)
                outcomes.append(Outcome("stored", "", h.clip_id, device_id, owner_id))
            except Rejected as rejection:
                signed_seq = h.seq if h.device_id == device_id else None  # signed by the topic's device
                outcomes.append(self._quarantine(topic, payload,
                                                 rejection.about(h.clip_id, device_id, h.owner_id, signed_seq), view))
        return Judged(outcomes, accepted, position, view)

    def commit(self, judged: Judged) -> list[Outcome]:
        """Store the accepted clips in one durable commit; the outcomes, final. Raises
        StoreError (nothing of this batch stored) if the store fails: commit again later."""
        outcomes, accepted, position, view = list(judged.outcomes), judged.accepted, judged.position, judged.view
        not_stored = self.store.clips.put_many(accepted) if accepted else {}
        for clip in accepted:
            h = clip.envelope.header
            why = not_stored.get(h.clip_id)
            if why == "owner_erased":  # the owner was erased while this batch was being judged
                erased = Rejected("owner_erased", f"the owner of {h.device_id} was erased")
                outcomes[position[h.clip_id]] = self._quarantine(
                    clip_topic(h.device_id), clip.raw, erased.about(h.clip_id, h.device_id, h.owner_id, h.seq),
                    _BatchView(self.store))  # a fresh view: it changed
            elif why == "duplicate":  # another ingester stored it first (a redelivery raced us)
                outcomes[position[h.clip_id]] = self._settle_race(clip, view)
            else:
                # DEBUG only: one line per clip would outrun journald's rate limit; IngestSummary
                # reports the totals. Never the owner id: logs outlive erasures.
                log.debug("stored clip %s from %s", h.clip_id, h.device_id)
        return outcomes

    def _check(self, topic: str, payload: bytes, devices: dict[str, Device | None],
               view: _BatchView) -> _Checked | Rejected:
        """The checks that need no store (the device record is looked up beforehand), in the
        documented order; a Rejected is returned, not raised, to keep the batch going."""
        clip_id = device_id = claimed = None
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
            clip_id, claimed = envelope.header.clip_id, envelope.header.owner_id
            device = devices.get(device_id)
            if device is None:
                raise Rejected("unknown_device", f"device {device_id} is not registered")
            if device.revoked_at:
                raise Rejected("revoked_device", f"device {device_id} was revoked at {device.revoked_at}")
            if not envelope.verify(view.key(device.public_key)):
                raise Rejected("bad_signature", f"signature does not verify with {device_id}'s key")
            return _Checked(device_id, envelope, envelope.digest)
        except Rejected as rejection:
            return rejection.about(clip_id, device_id, claimed)

    def _settle_race(self, clip: NewClip, view: _BatchView) -> Outcome:
        h = clip.envelope.header
        if self.store.clips.fingerprints([h.clip_id]).get(h.clip_id) == clip.digest:
            return Outcome("duplicate", "", h.clip_id, h.device_id, clip.owner_id)
        conflict = Rejected("clip_id_conflict", "a different clip is already stored under this id")
        return self._quarantine(clip_topic(h.device_id), clip.raw,
                                conflict.about(h.clip_id, h.device_id, h.owner_id, h.seq), view)

    def _quarantine(self, topic: str, payload: bytes, rejection: Rejected, view: _BatchView) -> Outcome:
        """Keep a refused payload for a person to look at, unless it belongs to an erased owner
        (its device's, or the one its header claims: erasure reaches the quarantine too) or its
        device is over its quarantine quota."""
        clip_id, device_id, claimed = rejection.clip_id, rejection.device_id, rejection.claimed_owner
        device = view.device(device_id) if device_id is not None else None
        if view.erased(claimed) or (device is not None and view.erased(device.owner_id)):
            return Outcome("rejected", rejection.reason, clip_id, device_id, detail=rejection.detail, kept=False)
        qid, new = self.store.quarantine.put(topic, rejection.reason, rejection.detail, payload, device_id,
                                             claimed, self.quota, rejection.seq)
        if qid is None:
            if device_id not in self._quota_reported:  # once per device per process: the log stays bounded
                self._quota_reported.add(device_id)
                log.warning("device %s is over its quarantine quota: its refused messages are not kept", device_id)
                self.store.audit.record("quarantine_quota_reached", device_id=device_id,
                                        detail={"items_per_day": self.quota.items_per_day,
                                                "bytes_per_day": self.quota.bytes_per_day})
            return Outcome("rejected", rejection.reason, clip_id, device_id, detail=rejection.detail, kept=False)
        if new:
            log.warning("quarantined %s from topic %r: %s (%s)", qid, topic[:100], rejection.reason, rejection.detail)
        return Outcome("rejected", rejection.reason, clip_id, device_id, detail=rejection.detail)

    def _owner_for(self, device_id: str, envelope: Envelope, view: _BatchView) -> str:
        """The registry's owner for a verified envelope from `device_id`, or Rejected."""
        header = envelope.header
        if header.device_id != device_id:
            raise Rejected("device_mismatch", f"envelope names device {header.device_id}, "
                                              f"topic names {device_id}")
        if parse_utc(header.captured_at) > datetime.now(UTC) + MAX_CLOCK_AHEAD:
            raise Rejected("captured_in_future", f"captured_at {header.captured_at} is ahead of the server's clock "
                                                 f"by more than {MAX_CLOCK_AHEAD}")
        # The owner is the one the device's identity belongs to; no time the device supplies
        # takes part in deciding it.
        owner_id = self.store.registry.identity_owner(view.bindings(device_id))
        if owner_id is None:
            raise Rejected("rebound_device", f"{device_id} was moved between owners by an older Earmark: "
                                             "revoke it and enroll the device again with a new key")
        owner = view.owner(owner_id)
        if owner is None or owner.erased_at:
            raise Rejected("owner_erased", f"the owner of {device_id} was erased")
        if header.owner_id != owner_id:
            raise Rejected("owner_mismatch", "the envelope names another owner than the one the registry "
                                             f"binds {device_id} to")  # (no owner id in the log)
        _check_sealing(header, view.recipients(owner_id), device_id)
        if header.sealed:
            return owner_id  # stored as sent: no key of the owner's is needed (store/clips.py)
        try:
            self.store.keys.owner_key(owner_id)  # the key must open before anything is written
        except OwnerError:
            raise Rejected("owner_erased", f"the key of {device_id}'s owner does not open (erased)") from None
        except CryptoError:  # a set-up error, not the clip's: nothing is acked, nothing quarantined
            raise StoreError(f"a plain clip from {device_id} needs its owner's key, which does not open on this "
                             f"host: put the owner-keys folder ({self.store.keys.secrets.folder}) in place (only "
                             "households whose devices seal to their key need none)") from None
        return owner_id


def _check_sealing(header: ClipHeader, household: frozenset[str], device_id: str) -> None:
    """A clip sealed on its device (wire v3) must be sealed to the household's live keys
    only (a retired key's identity may be in the hands of someone removed); once a household
    has a key, a plain clip (v1, v2) from its device is refused: the device must be paired
    again, which hands it the key. A household without a key yet still gets plain clips."""
    if header.recipients is not None:
        if not household or not set(header.recipients) <= household:
            raise Rejected("unknown_recipient", f"{device_id} sealed the clip to a key the household does not hold "
                                                "(or has retired): pair the device again")
    elif household:
        raise Rejected("not_sealed", f"{device_id} sent a clip not sealed to the household's key: pair the device "
                                     "again so that it seals every clip")
