"""Is an export complete? verify-export's other checks prove that what an archive holds is
the owner's and untouched; these prove that it left nothing out.

- Against the store: a clip the store holds for the owner that is not in the archive must
  have been stored after the export was made. The archive's manifest records the audit
  log's head as the export's snapshot saw it (`audit_seq`); each stored clip has its
  `clip_stored` event, so "after" is decided by commit order, not by a clock.
- Against each device's own chain (wire v2): every position from 1 to the device's chain
  end (the highest position the store had from it when the export was made, in
  devices.json) must be in the archive, or accounted for: deleted on record (by its owner,
  by retention, by erasure; the store keeps the device and position, never the content),
  refused at ingest and kept in quarantine, or stored after the export. And each archived
  clip must name the digest of the archived clip before it.

A position with no such account was removed from the store behind the export's back: the
report names the device and the positions. Archives made before these fields existed get
the chain check up to their newest clip only. A device moved between owners by an older
Earmark has a chain that spans owners; its positions cannot be accounted for without looking
at another owner's clips, so its chain is not checked (its clips still are, one by one).
"""

from __future__ import annotations

from dataclasses import dataclass

from earmark.cloud.store.store import Store


@dataclass(frozen=True)
class ChainLink:
    """An archived, verified v2 clip's place in its device's chain."""

    device_id: str
    seq: int
    prev_sha256: str
    digest: str


@dataclass(frozen=True)
class ExportClaims:
    """What an archive says about the store when it was made."""

    owner_id: str
    clip_ids: set[str]  # the clips it holds
    audit_seq: int | None  # the audit log's head in the export's snapshot
    chain_ends: dict[str, int]  # device id -> its highest stored position then


def check_completeness(store: Store, claims: ExportClaims, links: list[ChainLink]) -> list[str]:
    problems = _left_out(store, claims)
    by_device: dict[str, dict[int, ChainLink]] = {}
    for link in links:
        if link.seq in by_device.setdefault(link.device_id, {}):
            problems.append(f"device {link.device_id}: two clips claim position {link.seq} of its chain")
        by_device[link.device_id][link.seq] = link
    for device_id in sorted(set(by_device) | set(claims.chain_ends)):
        if store.registry.identity_owner(store.registry.bindings(device_id)) == claims.owner_id:
            problems += _check_chain(store, claims, device_id, by_device.get(device_id, {}))
    return problems


def _left_out(store: Store, claims: ExportClaims) -> list[str]:
    """The owner's clips in the store, committed before the export's snapshot, not in it."""
    if claims.audit_seq is None:
        return []
    problems = []
    for row in store.clips.iter_owner(claims.owner_id):
        if row.clip_id in claims.clip_ids:
            continue
        stored = store.audit.stored_seq(claims.owner_id, row.clip_id)
        if stored is None or stored <= claims.audit_seq:
            problems.append(f"clip {row.clip_id} (device {row.device_id}, captured {row.captured_at}) was in the "
                            "store when the export was made, but is not in the archive")
    return problems


def _check_chain(store: Store, claims: ExportClaims, device_id: str, chain: dict[int, ChainLink]) -> list[str]:
    end = max([claims.chain_ends.get(device_id, 0), *chain])
    gaps = _gaps(set(chain), end)
    if gaps:
        accounted = (store.clips.deleted_seqs(device_id) | store.quarantine.refused_seqs(device_id)
                     | store.clips.stored_seqs(claims.owner_id, device_id))
        gaps = _gaps(set(chain) | accounted, end)
    problems = []
    if gaps:
        problems.append(f"device {device_id}: clip(s) at {_ranges(gaps)} of its chain are not in the export, "
                        "and no recorded deletion, retention purge or refusal explains them")
    for seq, link in sorted(chain.items()):
        before = chain.get(seq - 1)
        if before is not None and link.prev_sha256 != before.digest:
            problems.append(f"device {device_id}: the clip at {seq} does not follow the clip at {seq - 1} "
                            "(its prev_sha256 names another envelope)")
    return problems


def _gaps(present: set[int], end: int) -> list[tuple[int, int]]:
    """The spans of 1..end not in `present`, as (first, last): found between the positions
    present, so their cost follows the rows, not the size of the numbers (a device that
    jumps to 2**53 is one span, not a list of 2**53)."""
    spans = []
    before = 0
    for seq in sorted(n for n in present if 1 <= n <= end):
        if seq > before + 1:
            spans.append((before + 1, seq - 1))
        before = seq
    if end > before:
        spans.append((before + 1, end))
    return spans


def _ranges(spans: list[tuple[int, int]]) -> str:
    """[(3, 5), (9, 9)] -> "3-5, 9"."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
