"""The household's marks, as the cloud tells a device (topic earmark/v1/marks/<device id>,
retained, written only by the cloud's marks login, read only by that device):

    {"v": 1, "not_meant": [clip id, ...], "deleted": [clip id, ...]}

`not_meant` is the whole of what the household has marked "not meant for me" among this
device's recordings, newest first, at most MOST_LISTED: the device learns each it has not
learnt yet and forgets each it learnt from the portal that is no longer listed (a mark
taken off). `deleted` names its recordings the owner deleted in the last DELETED_DAYS:
the device drops what it kept of them. Clip ids only, never audio or features; the message
is the state, not a change, so a device that was offline, or hears it twice, ends the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from earmark.wire.envelope import CLIP_ID_PATTERN
from earmark.wire.errors import EarmarkError

MARKS_VERSION = 1
MOST_LISTED = 1000  # per list: a device keeps the household's newest 1000 marks
DELETED_DAYS = 31  # a device keeps a recording's wake features at most 30 days
MAX_MARKS_BYTES = 2 * MOST_LISTED * 40 + 256  # two full lists of quoted UUIDs and their commas


class MarksMessageError(EarmarkError, ValueError):
    """A marks message that does not follow the contract."""


@dataclass(frozen=True)
class MarksMessage:
    not_meant: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return json.dumps({"v": MARKS_VERSION, "not_meant": list(self.not_meant[:MOST_LISTED]),
                           "deleted": list(self.deleted[:MOST_LISTED])}, separators=(",", ":")).encode()


def parse_marks(payload: bytes) -> MarksMessage:
    if len(payload) > MAX_MARKS_BYTES:
        raise MarksMessageError(f"marks message of {len(payload)} bytes exceeds {MAX_MARKS_BYTES}")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MarksMessageError(f"marks message is not JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"v", "not_meant", "deleted"}:
        raise MarksMessageError("marks message must be an object with exactly v, not_meant, deleted")
    if data["v"] != MARKS_VERSION:
        raise MarksMessageError(f"marks message version {data['v']!r} is not {MARKS_VERSION}")
    lists = []
    for name in ("not_meant", "deleted"):
        ids = data[name]
        if not isinstance(ids, list) or len(ids) > MOST_LISTED:
            raise MarksMessageError(f"marks message {name} must be a list of at most {MOST_LISTED} clip ids")
        if not all(isinstance(i, str) and CLIP_ID_PATTERN.fullmatch(i) for i in ids):
            raise MarksMessageError(f"marks message {name} holds something that is not a clip id (a lowercase UUID)")
        lists.append(tuple(ids))
    return MarksMessage(*lists)
