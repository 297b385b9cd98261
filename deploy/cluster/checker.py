"""The checker: what every device spooled, against what the store holds and what each
owner's export contains (as Jepsen checks a history against a model).

For each clip a device wrote to its ledger (it was spooled, so the device will keep sending
it until a receipt says it is safe):
  lost       no row for it under its owner, or not in its owner's export;
  doubled    more than one clip_stored event for it in the audit chain, or more than one
             entry for it in an export;
  misfiled   a row, an event or an export entry of it under any other owner.
Then each export must verify (signatures, the device's chain: a gap is a missing clip
nobody explained) and the audit chain must be unbroken. Anything stored for these devices
that no ledger holds is reported too. The report's last line is the verdict.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from earmark.cloud.owner.export import ExportError, export_owner
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.store.store import Store


@dataclass
class Report:
    sent: int = 0
    stored_once: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    misfiled: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # export verification, audit chain, strays

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.misfiled or self.problems)

    def lines(self) -> list[str]:
        verdict = (f"checked: {self.sent} clips sent, {self.stored_once} stored exactly once, "
                   f"{len(self.lost)} lost, {len(self.doubled)} doubled, {len(self.misfiled)} misfiled"
                   + ("" if not self.problems else f", {len(self.problems)} other problem(s)"))
        return [*(f"lost: {c}" for c in self.lost[:20]), *(f"doubled: {c}" for c in self.doubled[:20]),
                *(f"misfiled: {c}" for c in self.misfiled[:20]), *self.problems[:40], verdict]


def read_ledgers(devices: dict[str, Path]) -> dict[str, list[str]]:
    """Each device's spooled clip ids, from its ledger file."""
    return {d: [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
            for d, path in devices.items()}


def archive_entries(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [c["clip_id"] for c in json.loads(zf.read("manifest.json"))["clips"]]


def check(store: Store, sent: dict[str, list[str]], owner_of: dict[str, str], exports: Path,
          identity: str = "") -> Report:
    """`sent`: each device's spooled clip ids; `owner_of`: each device's owner; `identity`:
    the households' age identity, for exports encrypted to their key."""
    report = Report(sent=sum(len(ids) for ids in sent.values()))
    owners = sorted(set(owner_of.values()))
    rows = {o: {r.clip_id: r for r in store.clips.iter_owner(o)} for o in owners}
    entries: dict[str, Counter[str]] = {}
    for owner in owners:
        try:
            archive = export_owner(store, owner, exports / owner).path
        except ExportError as exc:  # it refused: something of another owner's, or a blob gone
            report.problems.append(f"export of {owner} refused: {exc}")
            entries[owner] = Counter()
            continue
        if archive.name.endswith(".age"):  # encrypted to the household's key, as every export to one is
            import pyrage
            from pyrage import x25519

            opened = archive.with_name(archive.name.removesuffix(".age"))
            pyrage.decrypt_file(str(archive), str(opened), [x25519.Identity.from_str(identity)])
            archive = opened
        entries[owner] = Counter(archive_entries(archive))
        report.problems += [f"export of {owner}: {p}" for p in verify_export(store, archive, owner)]
    stored_events: dict[str, list[str | None]] = {}
    for event in store.audit.chain():
        if event["event"] in ("clip_stored", "clip_reindexed") and event["clip_id"]:
            stored_events.setdefault(event["clip_id"], []).append(event["owner_id"])
    report.problems += [f"audit chain: {p}" for p in store.audit.verify()]
    expected = {clip: device for device, ids in sent.items() for clip in ids}
    for clip, device in expected.items():
        owner = owner_of[device]
        elsewhere = [o for o in owners if o != owner and (clip in rows[o] or entries[o][clip])]
        elsewhere += [o for o in stored_events.get(clip, []) if o != owner]
        if elsewhere:
            report.misfiled.append(f"{clip} of {device} (owner {owner}) also under {sorted(set(map(str, elsewhere)))}")
        row = rows[owner].get(clip)
        if row is None or entries[owner][clip] == 0:
            report.lost.append(f"{clip} of {device}")
        elif row.device_id != device:
            report.misfiled.append(f"{clip} of {device} stored as {row.device_id}'s")
        elif entries[owner][clip] > 1 or len(stored_events.get(clip, [])) > 1:
            report.doubled.append(f"{clip} of {device}: {entries[owner][clip]} export entries, "
                                  f"{len(stored_events.get(clip, []))} stored events")
        elif not elsewhere:
            report.stored_once += 1
    for owner in owners:
        strays = [c for c in rows[owner] if c not in expected]
        report.problems += [f"stored for {owner} but in no device's ledger: {c}" for c in strays]
    return report
