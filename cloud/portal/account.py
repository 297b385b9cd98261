"""The owner's account: their access log (every audit event under their id, read in their
own scope), signing out, and erasing everything (a typed confirmation and their passkey once
more, then the same erasure as `earmark-cloud erase`)."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from earmark.cloud.broker.control import BrokerNotConfirmed, sync_broker
from earmark.cloud.owner.erasure import erase_owner
from earmark.cloud.portal.guard import COOKIE, Call, OwnerRoute, PublicRoute, clear_session_cookie
from earmark.cloud.portal.passkeys import answered, asserted, authentication_options, options_json
from earmark.cloud.portal.state import PortalState

log = logging.getLogger(__name__)
ACCESS_LOG_SIZE = 200
ERASE_PHRASE = "erase everything"

# The access log's words for the audit events an owner sees most; others show their own name.
EVENT_NAMES = {
    "clip_stored": "recording stored", "clip_deleted": "recording deleted", "clips_purged": "recordings purged",
    "export_completed": "export made", "export_aborted": "export stopped by a failed check",
    "owner_added": "account created", "owner_recipient_set": "household key set",
    "owner_clips_resealed": "earlier recordings sealed to your household key",
    "device_added": "device added",
    "device_revoked": "device revoked", "portal_invite_made": "portal invite made",
    "portal_passkey_registered": "passkey registered", "portal_signed_in": "signed in to the portal",
    "portal_signed_out": "signed out of the portal",
    "portal_export_downloaded": "export downloaded", "owner_erased": "everything erased",
    "portal_not_found": "asked for something not yours or gone",
    "clip_marked": "marked “Not meant for me”", "clip_mark_cleared": "mark taken off a recording",
    "operator_listed_clips": "an operator listed your recordings",
    "clips_deleted": "recordings deleted", "owner_retention_set": "auto-delete chosen",
}


def access(call: Call) -> Response:
    store = call.state.store
    events = [{**dict(e), "what": EVENT_NAMES.get(e["event"], e["event"].replace("_", " "))}
              for e in store.audit.of_owner(call.owner_id, ACCESS_LOG_SIZE)]
    return call.page("access.html", events=events)


def signout(call: Call) -> Response:
    call.state.store.portal.end(call.request.cookies[COOKIE], call.owner_id, "signed out")
    response = RedirectResponse("/signin", 303)
    clear_session_cookie(response)
    return response


def typed_phrase(call: Call) -> bool:
    """The erase phrase as typed: case and surrounding spaces aside (a phone's keyboard
    capitalises the first letter)."""
    return " ".join(str(call.body.get("typed", "")).split()).casefold() == ERASE_PHRASE.casefold()


def erase_page(call: Call) -> Response:
    store = call.state.store
    return call.page("erase.html", phrase=ERASE_PHRASE, count=store.clips.count(call.owner_id))


def erased(call: Call) -> Response:
    return call.page("message.html", title="Everything is erased", back="/signin", back_label="Sign-in page",
                     text="Your recordings, your key, your devices' access and your passkeys are gone. "
                          "Only the record that an erasure happened remains in the audit log.")


def erase_options(call: Call) -> Response:
    if not typed_phrase(call):
        return JSONResponse({"error": f"type “{ERASE_PHRASE}” to confirm"}, 400)
    state = call.state
    options = authentication_options(state, state.store.portal.passkeys_of(call.owner_id))
    return options_json(state, options, call.owner_id)


def erase_verify(call: Call) -> Response:
    ceremony, credential, passkey = answered(call)
    if (ceremony is None or ceremony.owner_id != call.owner_id or passkey is None
            or passkey.owner_id != call.owner_id or not typed_phrase(call)):
        return JSONResponse({"error": "the confirmation did not match: nothing was erased"}, 400)
    sign_count = asserted(call.state, ceremony, credential, passkey)
    if sign_count is None:
        return JSONResponse({"error": "the passkey could not be checked: nothing was erased"}, 400)
    state = call.state
    state.store.portal.passkey_used(passkey, sign_count)  # recorded even if the erasure stops part-way
    state.exports.forget(call.owner_id)
    erase_owner(state.store, call.owner_id)  # also ends every session of theirs
    try:
        sync_broker(state.store, state.broker_reload)  # their devices' logins go
    except BrokerNotConfirmed as exc:  # the erasure stands; `broker sync` finishes this part
        log.warning("owner erased from the portal; the broker is not in step yet: %s", exc)
    response = JSONResponse({"ok": True, "next": "/erased"})
    clear_session_cookie(response)
    return response


def routes(state: PortalState) -> list[Route]:
    return [
        OwnerRoute(state, "/access", access),
        OwnerRoute(state, "/signout", signout, ("POST",)),
        OwnerRoute(state, "/erase", erase_page),
        PublicRoute(state, "/erased", erased),
        OwnerRoute(state, "/api/erase/options", erase_options, ("POST",), page=False),
        OwnerRoute(state, "/api/erase/verify", erase_verify, ("POST",), page=False),
    ]
