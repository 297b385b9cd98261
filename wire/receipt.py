"""The receipt the ingester publishes for each clip: {clip_id, status, reason}."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from earmark.wire.envelope import CLIP_ID_PATTERN
from earmark.wire.errors import EarmarkError

Status = Literal["stored", "duplicate", "rejected"]
STATUSES: tuple[Status, ...] = ("stored", "duplicate", "rejected")
MAX_RECEIPT_BYTES = 1024


class ReceiptError(EarmarkError, ValueError):
    """A receipt payload that does not follow the contract."""


@dataclass(frozen=True)
class Receipt:
    clip_id: str
    status: Status
    reason: str = ""

    def encode(self) -> bytes:
        return json.dumps(
            {"clip_id": self.clip_id, "status": self.status, "reason": self.reason},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()


def parse_receipt(payload: bytes) -> Receipt:
    if len(payload) > MAX_RECEIPT_BYTES:
        raise ReceiptError(f"receipt of {len(payload)} bytes exceeds {MAX_RECEIPT_BYTES}")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReceiptError(f"receipt is not JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"clip_id", "status", "reason"}:
        raise ReceiptError("receipt must be an object with exactly clip_id, status, reason")
    clip_id, status, reason = data["clip_id"], data["status"], data["reason"]
    if not isinstance(clip_id, str) or not CLIP_ID_PATTERN.fullmatch(clip_id):
        raise ReceiptError("receipt clip_id is not a lowercase UUID")
    if status not in STATUSES:
        raise ReceiptError(f"receipt status {status!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(reason, str) or len(reason) > 512:
        raise ReceiptError("receipt reason must be a string of at most 512 characters")
    return Receipt(clip_id, status, reason)
