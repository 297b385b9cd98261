"""The owner's recordings: a keyset page of them, newest first, narrowed by dates (in the
owner's own time zone) and device; each played (decrypted on the fly, after the export's own
signature and binding checks, in the byte ranges a player asks for), marked "not meant for
me" (alone or those ticked: the device that made it learns from it, broker/marks.py) or
deleted (the device drops what it kept of it); several deleted at once (those ticked, those shown, or all of them,
the account staying), each deletion recorded as the CLI's are; and the owner's own
auto-delete. Another owner's clip id answers 404, as a clip that does not exist."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from earmark.cloud.owner.erasure import delete_chosen, delete_clip, delete_clips
from earmark.cloud.owner.export import ExportError, KnownDevices, checked_envelope
from earmark.cloud.owner.retention import OWNER_CHOICES, effective_days
from earmark.cloud.portal.guard import Call, OwnerRoute
from earmark.cloud.portal.state import PortalState
from earmark.cloud.store.clips import MARK_NAMES, ClipFilter, ClipRow
from earmark.cloud.store.resealed import sealed_audio
from earmark.wire.timestamps import format_utc

PAGE_SIZE = 25


def clip_of(call: Call, clip_id: str) -> ClipRow | Response:
    found = call.state.store.clips.get(call.owner_id, clip_id)
    return found if found is not None else call.not_found("clip", clip_id)


FILTER_KEYS = ("since", "until", "device", "since_tz", "until_tz")


def chosen_by(values: Mapping[str, str]) -> tuple[ClipFilter, dict[str, str]]:
    """The filter the owner asked for: dates (YYYY-MM-DD, both days included) in their own
    time zone, each day's start given as minutes behind UTC there (`since_tz`, `until_tz`:
    what the browser's getTimezoneOffset says for that very day, so a range across a change
    to or from summer time is right at both ends), and a device. Returns (the filter in UTC,
    the values as given, for the form and the links)."""
    given = {k: str(values.get(k, "")).strip() for k in FILTER_KEYS}

    def instant(day: str, offset: str, next_day: bool) -> str:
        try:
            start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
            minutes = max(-14 * 60, min(14 * 60, int(offset or 0)))
        except ValueError:
            return ""
        return format_utc(start + timedelta(days=1 if next_day else 0, minutes=minutes), places=3)

    chosen = ClipFilter(instant(given["since"], given["since_tz"], False),
                        instant(given["until"], given["until_tz"], True), given["device"][:200])
    return chosen, {k: v for k, v in given.items() if v}


def recordings(call: Call) -> Response:
    store, owner_id = call.state.store, call.owner_id
    chosen, given = chosen_by(call.request.query_params)
    before = None  # a keyset page: the clips older than ?before=<clip id of the last one shown>
    last = store.clips.get(owner_id, call.request.query_params.get("before", ""))
    if last is not None:
        before = (last.captured_at, last.clip_id)
    shown = store.clips.page(owner_id, before, PAGE_SIZE + 1, chosen)
    marks = store.clips.marks(owner_id, [c.clip_id for c in shown[:PAGE_SIZE]])
    own, service = store.registry.retention(owner_id), call.state.data_request.service_days
    total = store.clips.count_chosen(owner_id, chosen)
    return call.page("recordings.html", clips=shown[:PAGE_SIZE], marks=marks, mark_names=MARK_NAMES,
                     request_before=last.clip_id if last else "", total=total,
                     everything=store.clips.count(owner_id) if chosen.narrows else total, first=before is None,
                     more=len(shown) > PAGE_SIZE, given=given, query=urlencode(given),
                     filtered=chosen.narrows, devices=store.registry.devices(owner_id),
                     service_days=service, own_days=own or 0, choices=OWNER_CHOICES,
                     kept_days=effective_days(service, own),
                     household=bool(store.registry.household_recipients(owner_id)))


def tell_devices(call: Call, device_ids: list[str] | None = None) -> None:
    """The owner's marks and deletions reach the devices that made the clips (broker/marks.py,
    by the portal's sender thread: the page does not wait for the broker): these devices, or
    (None) every device of the owner's."""
    store = call.state.store
    ids = device_ids if device_ids is not None else [d.device_id for d in store.registry.devices(call.owner_id)]
    call.state.marks.tell(ids)


def delete_selected(call: Call) -> Response:
    delete_clips(call.state.store, call.owner_id, call.form_lists.get("clip", []))
    tell_devices(call)
    return RedirectResponse("/", 303)


def mark_selected(call: Call) -> Response:
    """"Not meant for me" on every recording ticked."""
    marked = [call.state.store.clips.mark(call.owner_id, clip_id, "not_meant")
              for clip_id in call.form_lists.get("clip", [])[:PAGE_SIZE * 4]]
    tell_devices(call, sorted({device for device in marked if device is not None}))
    return RedirectResponse("/", 303)


def delete_shown(call: Call) -> Response:
    """Every recording the filter picks: a date range, a device, or (no filter) all of them."""
    chosen, _ = chosen_by(call.form)
    delete_chosen(call.state.store, call.owner_id, chosen)
    tell_devices(call)
    return RedirectResponse("/", 303)


def retention(call: Call) -> Response:
    try:
        days = int(call.form.get("days", ""))
    except ValueError:
        days = -1
    if days not in OWNER_CHOICES:
        return call.message(400, "Not a choice", "Choose one of the periods offered.", back="/")
    call.state.store.registry.set_retention(call.owner_id, days or None)
    return RedirectResponse("/#keeping", 303)


def audio(call: Call) -> Response:
    row = clip_of(call, call.param("clip_id"))
    if isinstance(row, Response):
        return row
    store = call.state.store
    try:
        envelope = checked_envelope(store, call.owner_id, row, KnownDevices(store).get(row.device_id))
    except ExportError:
        return call.message(409, "Not played", "This recording failed its checks and is not played.")
    if sealed_audio(envelope):  # the household's ciphertext: the page opens it (static/household.js)
        return Response(bytes(envelope.audio), media_type="application/octet-stream",
                        headers={"X-Earmark-Sealed": "age"})
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
    tell_devices(call, [delete_clip(call.state.store, call.owner_id, row.clip_id)])
    return RedirectResponse("/", 303)


def mark(call: Call) -> Response:
    clip_id, given = call.param("clip_id"), call.form.get("mark", "")
    if given and given not in MARK_NAMES:
        return call.message(400, "Unknown mark", "That is not a mark Earmark knows.")
    store = call.state.store
    device = store.clips.mark(call.owner_id, clip_id, given or None)
    if device is None:
        return call.not_found("clip", clip_id)
    tell_devices(call, [device])
    back = store.clips.get(call.owner_id, call.form.get("before", ""))
    return RedirectResponse(f"/?before={back.clip_id}#clip-{clip_id}" if back else f"/#clip-{clip_id}", 303)


def routes(state: PortalState) -> list[Route]:
    return [
        OwnerRoute(state, "/", recordings),
        OwnerRoute(state, "/clips/{clip_id}/audio", audio, page=False),
        OwnerRoute(state, "/clips/delete", delete_selected, ("POST",)),
        OwnerRoute(state, "/clips/delete-shown", delete_shown, ("POST",)),
        OwnerRoute(state, "/clips/mark", mark_selected, ("POST",)),
        OwnerRoute(state, "/retention", retention, ("POST",)),
        OwnerRoute(state, "/clips/{clip_id}/delete", delete, ("POST",)),
        OwnerRoute(state, "/clips/{clip_id}/mark", mark, ("POST",)),
    ]
