"""Who may call a route, decided in one place. Every route of the portal is one of two kinds,
and create_app accepts no other:

  OwnerRoute   the signed-in owner's: without a live session the request never reaches the
               handler (a page sends the browser to the sign-in page; anything else is 401);
               a state change (any method but GET) must carry the session's CSRF token (a
               form's `csrf` field, a JSON body's `csrf`, or an X-CSRF-Token header) or it is
               refused with 403. The handler is given the session: it cannot be written
               without one.
  PublicRoute  sign-in, invites, static pages: no session is looked up.

Handlers are plain functions run on the thread pool (the store's calls block: decryption,
signature checks, database round trips), given a request whose form or JSON body is already
read. An owner's route looks the session up before it reads a byte of the body, so a client
without one cannot make the portal read anything. Every body is bounded (BODY_LIMIT, 64 KiB:
the largest the portal takes is a passkey's registration, a few KiB; a bulk deletion is a
page of 25 clip ids): a larger one is a 413, refused on its Content-Length before it is read,
or as soon as a body sent in chunks passes the bound. A JSON body that is not an object, and
a body of any other type, is a 400 before any handler runs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from earmark.cloud.portal.state import PortalState
from earmark.cloud.store.portal import Session

COOKIE = "__Host-earmark"  # __Host-: Secure, Path=/, no Domain: this origin only


@dataclass
class Call:
    """One request, read: its form fields or JSON object, and (for an owner's route) its session."""

    request: Request
    state: PortalState
    form: dict[str, str] = field(default_factory=dict)
    form_lists: dict[str, list[str]] = field(default_factory=dict)  # every value of a field given many times
    body: dict[str, Any] = field(default_factory=dict)
    session: Session | None = None

    @property
    def owner_id(self) -> str:
        assert self.session is not None, "an owner's route always has a session"
        return self.session.owner_id

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""

    @property
    def client(self) -> str:
        """The client's address: the peer's, or, from a trusted proxy (portal.trusted_proxies),
        the nearest address in X-Forwarded-For that is not one of those proxies."""
        peer = self.request.client.host if self.request.client else "?"
        trusted = self.state.trusted_proxies
        if peer not in trusted:
            return peer
        hops = [h.strip() for h in self.request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        return next((h for h in reversed(hops) if h not in trusted), peer)[:64]

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def not_found(self, what: str, given: str) -> Response:
        """Another owner's, or nobody's: the same answer, and a line in the signed-in owner's log."""
        self.state.store.audit.record("portal_not_found", owner_id=self.owner_id,
                                      detail={"what": what, "id": given[:64]})
        return self.message(404, "Not found", "There is nothing of yours at this address.")

    def message(self, status: int, title: str, text: str, back: str = "", back_label: str = "") -> Response:
        if self.wants_json:
            return JSONResponse({"error": text}, status)
        return self.page("message.html", status, title=title, text=text, signed_in=self.session is not None,
                         back=back, back_label=back_label)

    def page(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        """A page, with what every page's header needs: whose it is, the CSRF token, where we are."""
        owner = self.state.store.registry.owner(self.session.owner_id) if self.session else None
        return self.state.page(name, status, owner=owner, csrf=self.csrf, here=self.request.url.path, **values)

    @property
    def wants_json(self) -> bool:
        return self.request.headers.get("content-type", "").startswith("application/json")


Handler = Callable[[Call], Response]
PAGES = ("/", "/devices", "/export", "/access", "/erase")  # the pages a stale form may send the owner back to


BODY_LIMIT = 64 * 1024
FORM = "application/x-www-form-urlencoded"


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or None if it is (or says it is) over BODY_LIMIT: never read past it."""
    try:
        if int(request.headers.get("content-length", "0")) > BODY_LIMIT:
            return None
    except ValueError:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _read(call: Call) -> Response | None:
    """Read the call's form or JSON body into it; a Response if it is refused."""
    request = call.request
    if request.method == "GET":
        return None
    body = await _bounded_body(request)
    if body is None:
        return JSONResponse({"error": f"that request is larger than the portal takes ({BODY_LIMIT // 1024} KiB)"},
                            413)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return JSONResponse({"error": "that request was not understood"}, 400)
        call.body = parsed
    elif content_type == FORM:
        for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            call.form[k] = v
            call.form_lists.setdefault(k, []).append(v)
    elif body:
        return JSONResponse({"error": "that request was not understood"}, 400)
    return None


class PublicRoute(Route):
    def __init__(self, state: PortalState, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> None:
        async def endpoint(request: Request) -> Response:
            call = Call(request, state)
            if refused := await _read(call):
                return refused
            return await run_in_threadpool(handler, call)

        super().__init__(path, endpoint, methods=list(methods))


class OwnerRoute(Route):
    def __init__(self, state: PortalState, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",),
                 page: bool = True) -> None:
        """`page`: a page a person opens (no session: to the sign-in page) rather than a
        resource or an API call (no session: 401)."""

        async def endpoint(request: Request) -> Response:
            call = Call(request, state)
            token = request.cookies.get(COOKIE, "")
            settings = state.settings
            call.session = await run_in_threadpool(
                state.store.portal.session, token, settings.session_idle_minutes * 60,
                settings.session_max_hours * 3600) if token else None
            if call.session is None:
                if page and not call.wants_json:
                    return RedirectResponse("/signin", 303)
                return call.message(401 if request.method == "GET" else 403, "Sign in again",
                                    "Your session has ended: sign in again.")
            if refused := await _read(call):
                return refused
            if request.method != "GET":
                given = call.form.get("csrf") or str(call.body.get("csrf", "")) or request.headers.get(
                    "x-csrf-token", "")
                if not secrets.compare_digest(given, call.session.csrf):
                    return call.message(403, "This page is out of date",
                                        "Nothing was changed: the page was opened before your last sign-in, or in "
                                        "another tab that has changed since.", back=request.url.path
                                        if request.url.path in PAGES else "/", back_label="Open the page again")
            return await run_in_threadpool(handler, call)

        super().__init__(path, endpoint, methods=list(methods))


def set_session_cookie(response: Response, token: str, max_age_s: int) -> None:
    response.set_cookie(COOKIE, token, max_age=max_age_s, path="/", secure=True, httponly=True, samesite="strict")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
