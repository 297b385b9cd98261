"""The household's key in the portal: made in the owner's browser, never seen by the server.

The page makes an age X25519 identity (typage, vendored as static/age-encryption.js: see
deploy/typage/build.sh), wraps it for the member's passkey (age's fido2prf stanza: the
passkey's PRF, evaluated by the authenticator, is the only way back) and to a recovery code
shown once (age scrypt), and sends the server the identity's public recipient and the two
wraps. The server stores them (store/household.py) and from then on files only clips sealed
to that recipient. To listen, the page unwraps the identity with the passkey, or with the
recovery code for that session only, and decrypts each clip in the page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from earmark.cloud.portal.guard import Call, OwnerRoute
from earmark.cloud.portal.state import PortalState
from earmark.cloud.store.registry import RegistryError


def fingerprint(recipient: str) -> str:
    """A short, speakable fingerprint of a household key, for two members to compare."""
    digest = hashlib.sha256(recipient.encode()).hexdigest()[:20].upper()
    return " ".join(digest[i:i + 4] for i in range(0, 20, 4))


def page(call: Call) -> Response:
    store = call.state.store
    recipients = store.registry.household_recipients(call.owner_id)
    waiting = [(j.join_id, j.member_recipient, fingerprint(j.member_recipient), j.created_at)
               for j in store.household.joins(call.owner_id) if j.confirmed_at is None]
    return call.page("household.html", recipient=recipients[0] if recipients else "",
                     fingerprint=fingerprint(recipients[0]) if recipients else "", waiting=waiting)


def state(call: Call) -> Response:
    """What the page needs to unlock the key: the recipients and the wraps (ciphertext)."""
    store = call.state.store
    recipients = store.registry.household_recipients(call.owner_id)
    return JSONResponse({
        "recipients": recipients, "fingerprint": fingerprint(recipients[0]) if recipients else "",
        "wraps": [{"id": w.wrap_id, "kind": w.kind, "data": base64.b64encode(w.wrapped).decode("ascii"),
                   "join": w.join_id} for w in store.household.wraps(call.owner_id)],
        "joins": [{"id": j.join_id, "recipient": j.member_recipient, "fingerprint": fingerprint(j.member_recipient),
                   "wrap": base64.b64encode(j.member_wrap).decode("ascii"), "confirmed": j.confirmed_at is not None}
                  for j in store.household.joins(call.owner_id)]})


def create(call: Call) -> Response:
    body = call.body
    try:
        wraps = [(str(w["kind"]), base64.b64decode(str(w["data"]), validate=True)) for w in body.get("wraps", [])]
        call.state.store.household.create(call.owner_id, str(body.get("recipient", "")), wraps)
    except (KeyError, TypeError, binascii.Error):
        return JSONResponse({"error": "that request was not understood"}, 400)
    except RegistryError as exc:
        return JSONResponse({"error": str(exc)}, 409 if "already" in str(exc) else 400)
    recipient = str(body["recipient"])
    return JSONResponse({"ok": True, "fingerprint": fingerprint(recipient)})


def ask_to_join(call: Call) -> Response:
    """A newcomer's browser asks to be given the key (see store/household.py: the confirm pattern)."""
    try:
        join_id = call.state.store.household.ask_to_join(
            call.owner_id, str(call.body.get("recipient", "")), base64.b64decode(str(call.body.get("wrap", "")),
                                                                                validate=True))
    except binascii.Error:
        return JSONResponse({"error": "that request was not understood"}, 400)
    except RegistryError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse({"ok": True, "join": join_id, "fingerprint": fingerprint(str(call.body["recipient"]))})


def confirm_join(call: Call) -> Response:
    """A member's browser gives the newcomer the key, wrapped to the newcomer's member key."""
    try:
        call.state.store.household.confirm_join(call.owner_id, str(call.body.get("join", "")),
                                                base64.b64decode(str(call.body.get("data", "")), validate=True))
    except binascii.Error:
        return JSONResponse({"error": "that request was not understood"}, 400)
    except RegistryError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse({"ok": True})


def routes(state_: PortalState) -> list[Route]:
    return [
        OwnerRoute(state_, "/household", page),
        OwnerRoute(state_, "/api/household", state, page=False),
        OwnerRoute(state_, "/api/household", create, ("POST",), page=False),
        OwnerRoute(state_, "/api/household/join", ask_to_join, ("POST",), page=False),
        OwnerRoute(state_, "/api/household/confirm", confirm_join, ("POST",), page=False),
    ]
