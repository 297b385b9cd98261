"""The upgrade of a store from before household keys: once an owner has set one, every clip
the server sealed for them (wire v1 and v2, under the owner's data key) is re-sealed to the
household's key (store/resealed.py), and then the server's key for that owner is dropped
and its secret shredded. After that no key on the server opens any of the owner's audio.

Run by the operator (`earmark-cloud owner reseal --owner ID`, or `--all` for every owner who
has set a household key), any number of times: a clip re-sealed already is passed over, and
a run cut short carries on where it stopped. The owner's key is dropped only once every one
of their clips is sealed to the household; a clip whose blob does not open as the store's
row says is left as it is, with its key, and named (`earmark-cloud check` tells what to do).

Clips stored while a run is under way (a device not yet re-paired can no longer send plain
clips once the household has a key: the ingester refuses them as `not_sealed`) are taken in
a second pass before the key goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from earmark.cloud.store.clips import ClipRow
from earmark.cloud.store.crypto import CryptoError
from earmark.cloud.store.resealed import Resealed, reseal
from earmark.cloud.store.store import Store
from earmark.runtime.durable import Data
from earmark.wire.envelope import EnvelopeError
from earmark.wire.errors import UsageError
from earmark.wire.timestamps import utc_now

BATCH = 100  # blobs written together (one flush of the filesystem, or one transaction)


class ResealError(UsageError, RuntimeError):
    """The owner cannot be re-sealed (no household key) or a clip of theirs would not open."""


@dataclass(frozen=True)
class Resealing:
    owner_id: str
    resealed: int  # clips re-sealed by this run
    already: int  # clips sealed to the household before it (on their device, or by an earlier run)
    key_dropped: bool  # this run dropped the server's key for the owner


def reseal_owner(store: Store, owner_id: str, progress: Callable[[int], None] | None = None) -> Resealing:
    recipients = store.registry.household_recipients(owner_id)
    if not recipients:
        raise ResealError(f"owner {owner_id} has set no household key yet: nothing to re-seal to (their clips "
                          "stay sealed with the server's key until they set one in the portal)")
    resealed = already = 0
    since = ""
    while True:  # a second pass takes what was stored while the first ran
        started = utc_now()
        for batch in _batches(row for row in store.clips.iter_owner(owner_id) if row.stored_at >= since):
            done, kept = _reseal_batch(store, owner_id, batch, recipients)
            resealed, already = resealed + done, already + kept
            if progress:
                progress(resealed)
        if since:
            break
        since = started
    dropped = store.keys.has_server_key(owner_id)
    with store.write() as cur:
        cur.scope(owner_id)
        store.keys.drop_server_key(cur, owner_id)
        if dropped or resealed:
            store.audit.append(cur, "owner_clips_resealed", owner_id=owner_id,
                               detail={"clips": resealed, "recipients": len(recipients)})
    store.keys.shred_owner(owner_id)  # after the commit; again if an earlier run stopped before it
    return Resealing(owner_id, resealed, already, dropped)


def _batches(rows: Iterator[ClipRow]) -> Iterator[list[ClipRow]]:
    batch: list[ClipRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _reseal_batch(store: Store, owner_id: str, rows: list[ClipRow], recipients: list[str]) -> tuple[int, int]:
    """Re-seal the rows' server-sealed blobs; (re-sealed now, sealed to the household already)."""
    blobs: list[tuple[str, Data]] = []
    for row in rows:
        try:
            envelope = store.clips.stored(owner_id, row)
        except (CryptoError, EnvelopeError, FileNotFoundError) as exc:
            raise ResealError(f"clip {row.clip_id} of owner {owner_id} does not open as its row says ({exc}): the "
                              "owner's key is kept; run `earmark-cloud check` and then this again") from None
        if isinstance(envelope, Resealed) or envelope.header.sealed:  # by an earlier run, or on its device
            continue
        if envelope.digest != row.envelope_sha256:
            raise ResealError(f"clip {row.clip_id} of owner {owner_id} is not the envelope its row names: the "
                              "owner's key is kept; run `earmark-cloud check` and then this again")
        blobs.append((row.blob_path, reseal(envelope, recipients).to_blob()))
    if blobs:
        store.blobs.write_many(blobs)
    return len(blobs), len(rows) - len(blobs)
