"""The owner's recordings: a keyset page of them, newest first; each played (decrypted on the
fly, after the export's own signature and binding checks), marked "I did not mean to wake
it" or deleted. Another owner's clip id answers 404, as a clip that does not exist."""

from __future__ import annotations

import re

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from earmark.cloud.owner.erasure import delete_clip
from earmark.cloud.owner.export import ExportError, KnownDevices, checked_envelope
from earmark.cloud.portal.guard import Call, OwnerRoute
from earmark.cloud.portal.state import PortalState
from earmark.cloud.store.clips import MARK_NAMES, ClipRow

PAGE_SIZE = 25


def clip_of(call: Call, clip_id: str) -> ClipRow | Response:
    found = call.state.store.clips.get(call.owner_id, clip_id)
    return found if found is not None else call.not_found("clip", clip_id)


def recordings(call: Call) -> Response:
    store, owner_id = call.state.store, call.owner_id
    before = None  # a keyset page: the clips older than ?before=<clip id of the last one shown>
    last = store.clips.get(owner_id, call.request.query_params.get("before", ""))
    if last is not None:
        before = (last.captured_at, last.clip_id)
    shown = store.clips.page(owner_id, before, PAGE_SIZE + 1)
    marks = store.clips.marks(owner_id, [c.clip_id for c in shown[:PAGE_SIZE]])
    return call.page("recordings.html", clips=shown[:PAGE_SIZE], marks=marks, mark_names=MARK_NAMES,
                     request_before=last.clip_id if last else "", total=store.clips.count(owner_id),
                     first=before is None, more=len(shown) > PAGE_SIZE)


def audio(call: Call) -> Response:
    row = clip_of(call, call.param("clip_id"))
    if isinstance(row, Response):
        return row
    store = call.state.store
    try:
        envelope = checked_envelope(store, call.owner_id, row, KnownDevices(store).get(row.device_id))
    except ExportError:
        return call.message(409, "Not played", "This recording failed its checks and is not played.")
    return ranged(call, bytes(envelope.audio), "audio/wav")


def ranged(call: Call, body: bytes, media_type: str) -> Response:
    """The whole body, or the one byte range asked for (a player seeking, or reading a WAV's
    header for its length, gets only those bytes)."""
    asked = re.fullmatch(r"bytes=(\d*)-(\d*)", call.request.headers.get("range", "").strip())
    headers = {"Accept-Ranges": "bytes"}
    if asked is None or not (asked[1] or asked[2]):
        return Response(body, media_type=media_type, headers=headers)
    size = len(body)
    if asked[1]:
        start, end = int(asked[1]), min(int(asked[2]) if asked[2] else size - 1, size - 1)
    else:  # the last N bytes
        start, end = max(0, size - int(asked[2])), size - 1
    if start >= size or start > end:
        return Response(b"", 416, headers={**headers, "Content-Range": f"bytes */{size}"})
    return Response(body[start:end + 1], 206, media_type=media_type,
                    headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}"})


def delete(call: Call) -> Response:
    row = clip_of(call, call.param("clip_id"))
    if isinstance(row, Response):
        return row
    delete_clip(call.state.store, call.owner_id, row.clip_id)
    return RedirectResponse("/", 303)


def mark(call: Call) -> Response:
    clip_id, given = call.param("clip_id"), call.form.get("mark", "")
    if given and given not in MARK_NAMES:
        return call.message(400, "Unknown mark", "That is not a mark Earmark knows.")
    store = call.state.store
    if not store.clips.mark(call.owner_id, clip_id, given or None):
        return call.not_found("clip", clip_id)
    back = store.clips.get(call.owner_id, call.form.get("before", ""))
    return RedirectResponse(f"/?before={back.clip_id}#clip-{clip_id}" if back else f"/#clip-{clip_id}", 303)


def routes(state: PortalState) -> list[Route]:
    return [
        OwnerRoute(state, "/", recordings),
        OwnerRoute(state, "/clips/{clip_id}/audio", audio, page=False),
        OwnerRoute(state, "/clips/{clip_id}/delete", delete, ("POST",)),
        OwnerRoute(state, "/clips/{clip_id}/mark", mark, ("POST",)),
    ]
