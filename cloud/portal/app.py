"""The owner's portal: a Starlette app (uvicorn serves it: `earmark-cloud portal`).

Sign-in is by passkey only (passkeys.py). Every page and request below the sign-in is an
OwnerRoute (guard.py): the session and, for a state change, its CSRF token are checked
there, in one place, before any handler runs, and every handler is scoped by the signed-in
owner through the store's owner-scoped calls (on PostgreSQL, the same row-level security as
everywhere): another owner's clip id answers 404, exactly as a clip that does not exist, and
is audited under the signed-in owner. Handlers run on the thread pool. Every response
carries a strict CSP and `no-store`.

  recordings.py  the recordings: page, play, mark, delete
  devices.py     the devices and revoking one
  exports.py     download all your data
  account.py     the access log, sign-out, erase everything
  passkeys.py    invites, registration and sign-in
  state.py       what requests share (ceremonies, exports, rate limit), owned by PortalState
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from earmark.cloud.portal import account, devices, exports, household, passkeys, recordings
from earmark.cloud.portal.guard import COOKIE, OwnerRoute, PublicRoute
from earmark.cloud.portal.state import HERE, PortalState
from earmark.cloud.settings import DataRequestSettings, PortalSettings
from earmark.cloud.store.store import Store

__all__ = ["COOKIE", "HEADERS", "create_app", "server_config"]

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "media-src 'self' blob:; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "microphone=(), camera=(), geolocation=()",
}


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response


async def _http_error(request: Request, exc: Exception) -> Response:
    """A 404 or 405 from the router: a page like every other, with a way back."""
    status = getattr(exc, "status_code", 404)
    state: PortalState = request.app.state.portal
    title, text = ("Not found", "There is nothing at this address.") if status == 404 else (
        "Not allowed", "This address does not answer that kind of request.")
    return state.page("message.html", status, title=title, text=text, back="/", back_label="Back to Earmark")


async def _server_error(request: Request, exc: Exception) -> Response:
    """A 500 (made outside every middleware, so it brings the security headers itself)."""
    return PlainTextResponse("Something went wrong on our side. Try again later.", 500,
                             headers=HEADERS)


def server_config(app: Starlette, settings: PortalSettings, log_level: str = "warning") -> uvicorn.Config:
    """How uvicorn serves the portal. Its own proxy-header handling stays off: it would believe
    X-Forwarded-For from any local client; the portal reads it from portal.trusted_proxies
    alone (guard.py, Call.client)."""
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, proxy_headers=False,
                          server_header=False)


def create_app(store: Store, settings: PortalSettings, broker_reload: str = "", retention_days: int = 0,
               data_request: DataRequestSettings | None = None) -> Starlette:
    """The portal on `store`; `broker_reload`: the broker.reload_command revocations and
    erasures use to bring the running broker in step (see broker/control.py)."""
    state = PortalState(store, settings, broker_reload, retention_days, data_request or DataRequestSettings())
    routes: list[BaseRoute] = [route for part in (recordings, household, devices, exports, account, passkeys)
                               for route in part.routes(state)]
    unguarded = [r for r in routes if not isinstance(r, OwnerRoute | PublicRoute)]
    assert not unguarded, f"every portal route is an OwnerRoute or a PublicRoute: {unguarded}"
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.marks.tell([])  # marks still waiting for their devices (a broker that was down) go now
        yield
        await asyncio.to_thread(state.marks.close)

    app = Starlette(routes=routes, middleware=[Middleware(_SecurityHeaders)], lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.state.portal = state
    return app
