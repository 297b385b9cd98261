"""Passkeys (WebAuthn, the `webauthn` library): an operator's one-time invite link lets the
owner register one; later sign-ins use it (a discoverable credential, user verified). The
ceremonies are rate-limited per client; a malformed request is a 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

import webauthn
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from earmark.cloud.portal.guard import Call, PublicRoute, set_session_cookie
from earmark.cloud.portal.state import Ceremony, PortalState
from earmark.cloud.store.portal import Passkey, PasskeyTaken

# What webauthn raises for a credential that is not what it should be: its own errors, and
# (a string, a list or a field of the wrong type where an object should be) Python's.
MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError)
NOT_CHECKED = "the passkey could not be checked: try again"


def too_many(call: Call) -> Response | None:
    if call.state.sign_in_limit.exceeded(call.client):
        return JSONResponse({"error": "too many attempts: wait a minute"}, 429)
    return None


def options_json(state: PortalState, options: Any, owner_id: str | None = None, token: str | None = None,
                 extensions: dict[str, Any] | None = None) -> Response:
    """The ceremony's options as the page's WebAuthn JSON parsers take them; `extensions`
    added as given (py_webauthn has no option for PRF, which household keys need)."""
    as_json = json.loads(webauthn.options_to_json(options))
    if extensions:
        as_json["extensions"] = {**as_json.get("extensions", {}), **extensions}
    return JSONResponse({"ceremony": state.ceremonies.start(options.challenge, owner_id, token), "options": as_json})


def authentication_options(state: PortalState, credential_ids: list[str] | None = None) -> Any:
    """A sign-in prompt; with `credential_ids`, one that only those passkeys can answer."""
    return webauthn.generate_authentication_options(
        rp_id=state.rp_id, user_verification=UserVerificationRequirement.REQUIRED,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in credential_ids or []])


def answered(call: Call) -> tuple[Ceremony | None, dict[str, Any], Passkey | None]:
    """(the ceremony the body answers, its credential, the passkey that credential names)."""
    ceremony = call.state.ceremonies.take(call.body.get("ceremony", ""))
    credential = call.body.get("credential", {})
    credential = credential if isinstance(credential, dict) else {}
    passkey = call.state.store.portal.passkey(str(credential.get("id", ""))) if credential else None
    return ceremony, credential, passkey


def asserted(state: PortalState, ceremony: Ceremony, credential: dict[str, Any], passkey: Passkey) -> int | None:
    """The passkey's new sign count if `credential` is its valid, user-verified answer to the
    ceremony's challenge; None if it is not."""
    try:
        return webauthn.verify_authentication_response(
            credential=credential, expected_challenge=ceremony.challenge, expected_rp_id=state.rp_id,
            expected_origin=state.origin, credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count, require_user_verification=True).new_sign_count
    except MALFORMED:
        return None


def signed_in(call: Call, passkey: Passkey, sign_count: int) -> Response:
    token, _ = call.state.store.portal.sign_in(passkey, sign_count, call.client)
    response = JSONResponse({"ok": True, "next": "/"})
    set_session_cookie(response, token, call.state.settings.session_max_hours * 3600)
    return response


def invite(call: Call) -> Response:
    token = call.param("token")
    if call.state.store.portal.invited_owner(token) is None:
        return call.message(404, "This link does not work",
                            "It was used already, it expired, or it was never made. Ask for a new one.")
    return call.page("register.html", token=token)


def signin(call: Call) -> Response:
    return call.page("signin.html")


def register_options(call: Call) -> Response:
    if (refused := too_many(call)) is not None:
        return refused
    token = str(call.body.get("token", ""))
    owner_id = call.state.store.portal.invited_owner(token)
    if owner_id is None:
        return JSONResponse({"error": "this link does not work any more"}, 404)
    owner = call.state.store.registry.owner(owner_id)
    options = webauthn.generate_registration_options(
        rp_id=call.state.rp_id, rp_name="Earmark", user_id=owner_id.encode(),
        user_name=owner.display_name if owner else "owner",
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED))
    # PRF (hmac-secret) turned on at creation: the passkey can then unwrap the household key
    # in the page (portal/household.py); a passkey without it unlocks with the recovery code.
    return options_json(call.state, options, owner_id, token, extensions={"prf": {}})


def register_verify(call: Call) -> Response:
    ceremony = call.state.ceremonies.take(call.body.get("ceremony", ""))
    if ceremony is None or ceremony.owner_id is None or ceremony.token is None:
        return JSONResponse({"error": "the passkey prompt timed out: try again"}, 400)
    try:
        verified = webauthn.verify_registration_response(
            credential=call.body.get("credential", {}), expected_challenge=ceremony.challenge,
            expected_rp_id=call.state.rp_id, expected_origin=call.state.origin, require_user_verification=True)
    except MALFORMED:
        return JSONResponse({"error": NOT_CHECKED}, 400)
    passkey = Passkey(bytes_to_base64url(verified.credential_id), ceremony.owner_id,
                      verified.credential_public_key, verified.sign_count)
    try:
        registered = call.state.store.portal.register(ceremony.token, passkey)
    except PasskeyTaken:  # the same answer as any other bad credential: nothing says it exists
        return JSONResponse({"error": NOT_CHECKED}, 400)
    if not registered:
        return JSONResponse({"error": "this link does not work any more"}, 404)
    return signed_in(call, passkey, verified.sign_count)


def signin_options(call: Call) -> Response:
    if (refused := too_many(call)) is not None:
        return refused
    return options_json(call.state, authentication_options(call.state))


def signin_verify(call: Call) -> Response:
    ceremony, credential, passkey = answered(call)
    if ceremony is None or passkey is None:
        return JSONResponse({"error": "that passkey is not known here"}, 400)
    sign_count = asserted(call.state, ceremony, credential, passkey)
    if sign_count is None:
        return JSONResponse({"error": NOT_CHECKED}, 400)
    return signed_in(call, passkey, sign_count)


def routes(state: PortalState) -> list[Route]:
    return [
        PublicRoute(state, "/signin", signin),
        PublicRoute(state, "/invite/{token}", invite),
        PublicRoute(state, "/api/register/options", register_options, ("POST",)),
        PublicRoute(state, "/api/register/verify", register_verify, ("POST",)),
        PublicRoute(state, "/api/signin/options", signin_options, ("POST",)),
        PublicRoute(state, "/api/signin/verify", signin_verify, ("POST",)),
    ]
