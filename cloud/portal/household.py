"""The household's key in the portal: made in the members' browsers, never seen by the server.

The page makes an age X25519 identity (typage, vendored as static/age-encryption.js: see
deploy/typage/build.sh) and a member key for this member, kept by their passkey (age's fido2prf
stanza: the passkey's PRF, evaluated by the authenticator, is the only way back); it wraps the
household identity to the member key and to a recovery code shown once (age scrypt), and sends
the server the public recipient and those wraps. New members join by the confirm pattern;
removing one rotates the key (store/household.py). To listen, the page unwraps the identity
with the member's passkey, or the recovery code or key file for that session only, and decrypts
each clip in the page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from earmark.cloud.portal.guard import Call, OwnerRoute
from earmark.cloud.portal.state import PortalState
from earmark.cloud.store.household import NewMember
from earmark.cloud.store.registry import RegistryError


def fingerprint(recipient: str) -> str:
    """A short, speakable fingerprint of a household key, for two members to compare."""
    digest = hashlib.sha256(recipient.encode()).hexdigest()[:20].upper()
    return " ".join(digest[i:i + 4] for i in range(0, 20, 4))


def page(call: Call) -> Response:
    store = call.state.store
    recipients = store.registry.household_recipients(call.owner_id)
    joins = store.household.joins(call.owner_id)
    waiting = [(j.join_id, j.member_recipient, fingerprint(j.member_recipient), j.created_at)
               for j in joins if j.confirmed_at is None]
    members = [(j.join_id, fingerprint(j.member_recipient), j.confirmed_at) for j in joins if j.confirmed_at]
    return call.page("household.html", recipient=recipients[0] if recipients else "",
                     fingerprint=fingerprint(recipients[0]) if recipients else "", waiting=waiting, members=members)


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


def _b64(value: object) -> bytes:
    return base64.b64decode(str(value), validate=True)


def _answer(act: Callable[[], dict[str, Any]]) -> Response:
    """A household action on the request's body, answered as JSON: 400 for a body that is not
    understood, the store's one-line reason otherwise (409 for a key the household has already)."""
    try:
        return JSONResponse({"ok": True, **act()})
    except (KeyError, TypeError, binascii.Error):
        return JSONResponse({"error": "that request was not understood"}, 400)
    except RegistryError as exc:
        return JSONResponse({"error": str(exc)}, 409 if "already" in str(exc) else 400)


def create(call: Call) -> Response:
    def act() -> dict[str, Any]:
        body, member = call.body, call.body["member"]
        call.state.store.household.create(
            call.owner_id, str(body.get("recipient", "")), _b64(body["recovery"]),
            NewMember(str(member["recipient"]), _b64(member["wrap"]), _b64(member["data"])))
        return {"fingerprint": fingerprint(str(body["recipient"]))}
    return _answer(act)


def rotate(call: Call) -> Response:
    """A member's browser made a new key without the members it leaves out (see store/household.py)."""
    def act() -> dict[str, Any]:
        body = call.body
        kept = {str(m["join"]): _b64(m["data"]) for m in body["members"]}
        removed = call.state.store.household.rotate(call.owner_id, str(body.get("recipient", "")),
                                                    _b64(body["recovery"]), _b64(body["previous"]), kept)
        return {"removed": removed, "fingerprint": fingerprint(str(body["recipient"]))}
    return _answer(act)


def ask_to_join(call: Call) -> Response:
    """A newcomer's browser asks to be given the key (see store/household.py: the confirm pattern)."""
    def act() -> dict[str, Any]:
        recipient = str(call.body.get("recipient", ""))
        join_id = call.state.store.household.ask_to_join(call.owner_id, recipient, _b64(call.body.get("wrap", "")))
        return {"join": join_id, "fingerprint": fingerprint(recipient)}
    return _answer(act)


def confirm_join(call: Call) -> Response:
    """A member's browser gives the newcomer the key, wrapped to the newcomer's member key."""
    def act() -> dict[str, Any]:
        call.state.store.household.confirm_join(call.owner_id, str(call.body.get("join", "")),
                                                _b64(call.body.get("data", "")))
        return {}
    return _answer(act)


def routes(state_: PortalState) -> list[Route]:
    return [
        OwnerRoute(state_, "/household", page),
        OwnerRoute(state_, "/api/household", state, page=False),
        OwnerRoute(state_, "/api/household", create, ("POST",), page=False),
        OwnerRoute(state_, "/api/household/join", ask_to_join, ("POST",), page=False),
        OwnerRoute(state_, "/api/household/confirm", confirm_join, ("POST",), page=False),
        OwnerRoute(state_, "/api/household/rotate", rotate, ("POST",), page=False),
    ]
