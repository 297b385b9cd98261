"""The owner's portal: a Starlette app (uvicorn serves it: `earmark-cloud portal`).

Sign-in is by passkey only (WebAuthn, the `webauthn` library): an operator's one-time invite
link (`earmark-cloud owner invite`) lets the owner register one, and later sign-ins use it.
Every page and request below the sign-in is scoped by the signed-in owner through the store's
owner-scoped calls (on PostgreSQL, the same row-level security as everywhere): another
owner's clip id answers 404, exactly as a clip that does not exist, and is audited under the
signed-in owner. Every response carries a strict CSP and `no-store`; every state change
needs the session's CSRF token; sign-in ceremonies are rate-limited per client.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import webauthn
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from earmark.cloud.broker.control import BrokerNotConfirmed, revoke_device, sync_broker
from earmark.cloud.owner.erasure import delete_clip, erase_owner
from earmark.cloud.owner.export import ExportError, KnownDevices, checked_envelope, export_owner
from earmark.cloud.settings import PortalSettings
from earmark.cloud.store.clips import MARK_NAMES, ClipRow
from earmark.cloud.store.portal import Passkey, Session, token_sha256
from earmark.cloud.store.store import Store
from earmark.wire.errors import EarmarkError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent  # (an editable install links files, not folders)
COOKIE = "__Host-earmark"  # __Host-: Secure, Path=/, no Domain: this origin only
PAGE_SIZE = 25
CEREMONY_S = 120  # a passkey prompt's challenge lives this long
SIGN_IN_LIMIT = (10, 60.0)  # ceremonies per client per this many seconds
ACCESS_LOG_SIZE = 200
DOWNLOAD_S = 600  # an export waits this long for its one download
ERASE_PHRASE = "erase everything"

# The access log's words for the audit events an owner sees most; others show their own name.
EVENT_NAMES = {
    "clip_stored": "recording stored", "clip_deleted": "recording deleted", "clips_purged": "recordings purged",
    "export_completed": "export made", "export_aborted": "export stopped by a failed check",
    "owner_added": "account created", "owner_recipient_set": "export encryption key set",
    "device_added": "device added",
    "device_revoked": "device revoked", "portal_invite_made": "portal invite made",
    "portal_passkey_registered": "passkey registered", "portal_signed_in": "signed in to the portal",
    "portal_signed_out": "signed out of the portal",
    "portal_export_downloaded": "export downloaded", "owner_erased": "everything erased",
    "portal_not_found": "asked for something not yours or gone",
    "clip_marked": "marked “I did not mean to wake it”", "clip_mark_cleared": "mark taken off a recording",
    "operator_listed_clips": "an operator listed your recordings",
}

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "media-src 'self'; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "microphone=(), camera=(), geolocation=()",
}


@dataclass
class _Export:
    """One owner's export being built in the background, then waiting to be downloaded once."""

    folder: Path
    done: int = 0
    total: int = 0
    path: Path | None = None
    error: str = ""
    token_sha256: str = ""
    ready_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.path is None and not self.error


@dataclass
class _Ceremony:
    challenge: bytes
    started: float
    owner_id: str | None  # registration: the invited owner
    token: str | None  # registration: the invite


def malformed() -> JSONResponse:
    return JSONResponse({"error": "that request was not understood"}, 400)


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response


class Portal:
    def __init__(self, store: Store, settings: PortalSettings, broker_reload: str = "") -> None:
        self.store, self.settings, self.broker_reload = store, settings, broker_reload
        url = urlsplit(settings.public_url)
        self.origin = f"{url.scheme}://{url.netloc}"
        self.rp_id = url.hostname or "localhost"
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())
        self._ceremonies: dict[str, _Ceremony] = {}
        self._exports: dict[str, _Export] = {}  # by owner
        self._exports_dir = store.data_dir / "portal-exports"
        shutil.rmtree(self._exports_dir, ignore_errors=True)  # a restart forgets every undelivered export
        self._attempts: defaultdict[str, deque[float]] = defaultdict(deque)

    # -- plumbing ------------------------------------------------------------------------

    def page(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(name).render(**values), status_code=status)

    def session(self, request: Request) -> Session | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        return self.store.portal.session(token, self.settings.session_idle_minutes * 60,
                                         self.settings.session_max_hours * 3600)

    async def form_session(self, request: Request) -> Session | Response:
        """The session behind a form post whose CSRF token is the session's; else the response
        to send instead (to the sign-in page, or 403 for a stale or forged form)."""
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", 303)
        given = str((await request.form()).get("csrf", ""))
        if not secrets.compare_digest(given, session.csrf):
            return Response("stale form: reload the page", status_code=403)
        return session

    async def json_session(self, request: Request) -> tuple[Session, dict[str, Any]] | Response:
        """The session and JSON body of a request whose CSRF token (in the body) is the
        session's; else the response to send instead (400 malformed, 403 sign in again)."""
        session, body = self.session(request), await self.body(request)
        if body is None:
            return malformed()
        if session is None or not secrets.compare_digest(str(body.get("csrf", "")), session.csrf):
            return JSONResponse({"error": "sign in again"}, 403)
        return session, body

    @staticmethod
    async def body(request: Request) -> dict[str, Any] | None:
        """A JSON request's object; None if it is not one (the caller answers 400)."""
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _limited(self, request: Request) -> bool:
        client = request.client.host if request.client else "?"
        now, (count, window) = time.monotonic(), SIGN_IN_LIMIT
        recent = self._attempts[client]
        while recent and now - recent[0] > window:
            recent.popleft()
        recent.append(now)
        return len(recent) > count

    def _start(self, challenge: bytes, owner_id: str | None = None, token: str | None = None) -> str:
        now = time.monotonic()
        for key in [k for k, c in self._ceremonies.items() if now - c.started > CEREMONY_S]:
            del self._ceremonies[key]
        ceremony = secrets.token_urlsafe(16)
        self._ceremonies[ceremony] = _Ceremony(challenge, now, owner_id, token)
        return ceremony

    def _asserted(self, ceremony: _Ceremony, credential: dict[str, Any], passkey: Passkey) -> int | None:
        """The passkey's new sign count if `credential` is its valid answer to the ceremony's
        challenge (user verified); None if it is not."""
        try:
            return webauthn.verify_authentication_response(
                credential=credential, expected_challenge=ceremony.challenge, expected_rp_id=self.rp_id,
                expected_origin=self.origin, credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count, require_user_verification=True).new_sign_count
        except InvalidAuthenticationResponse:
            return None

    def _signed_in(self, passkey: Passkey, sign_count: int, request: Request) -> JSONResponse:
        token, _ = self.store.portal.sign_in(passkey, sign_count, request.client.host if request.client else "?")
        response = JSONResponse({"ok": True, "next": "/"})
        response.set_cookie(COOKIE, token, max_age=self.settings.session_max_hours * 3600, path="/",
                            secure=True, httponly=True, samesite="strict")
        return response

    def _not_found(self, session: Session, what: str, given: str) -> Response:
        """Another owner's, or nobody's: the same answer, and a line in the signed-in owner's log."""
        self.store.audit.record("portal_not_found", owner_id=session.owner_id, detail={"what": what, "id": given[:64]})
        return Response("not found", status_code=404)

    def _clip(self, session: Session, clip_id: str) -> ClipRow | Response:
        found = self.store.clips.get(session.owner_id, clip_id)
        return found if found is not None else self._not_found(session, "clip", clip_id)

    # -- pages ---------------------------------------------------------------------------

    async def invite(self, request: Request) -> Response:
        token = request.path_params["token"]
        if self.store.portal.invited_owner(token) is None:
            return self.page("message.html", 404, title="This link does not work",
                             text="It was used already, it expired, or it was never made. Ask for a new one.")
        return self.page("register.html", token=token)

    async def signin(self, request: Request) -> Response:
        return self.page("signin.html")

    async def recordings(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", 303)
        before = None  # a keyset page: the clips older than ?before=<clip id of the last one shown>
        last = self.store.clips.get(session.owner_id, request.query_params.get("before", ""))
        if last is not None:
            before = (last.captured_at, last.clip_id)
        shown = self.store.clips.page(session.owner_id, before, PAGE_SIZE + 1)
        owner = self.store.registry.owner(session.owner_id)
        marks = self.store.clips.marks(session.owner_id, [c.clip_id for c in shown[:PAGE_SIZE]])
        return self.page("recordings.html", owner=owner, clips=shown[:PAGE_SIZE], marks=marks, mark_names=MARK_NAMES,
                         request_before=last.clip_id if last else "",
                         total=self.store.clips.count(session.owner_id), first=before is None,
                         more=len(shown) > PAGE_SIZE, csrf=session.csrf)

    async def devices(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", 303)
        return self.page("devices.html", owner=self.store.registry.owner(session.owner_id), csrf=session.csrf,
                         devices=self.store.registry.devices(session.owner_id),
                         presence=self.store.presence.of_owner(session.owner_id))

    async def revoke(self, request: Request) -> Response:
        session = await self.form_session(request)
        if isinstance(session, Response):
            return session
        device_id = request.path_params["device_id"]
        if device_id not in {d.device_id for d in self.store.registry.devices(session.owner_id)}:
            return self._not_found(session, "device", device_id)
        try:
            # The reload also disconnects it. Confirming it waits on the broker (up to 10 s): off
            # the event loop, so nobody else's page waits with it (the store serialises its use).
            await run_in_threadpool(revoke_device, self.store, device_id, self.broker_reload)
        except BrokerNotConfirmed as exc:
            log.warning("device %s revoked from the portal; the broker is not in step yet: %s", device_id, exc)
            return self.page("message.html", title="Your device is revoked",
                             text="It can no longer send recordings for you. The broker has not confirmed it yet, "
                                  "so a connection it has now may last until it does; your operator has been told.")
        return RedirectResponse("/devices", 303)

    async def access(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", 303)
        events = [{**dict(e), "what": EVENT_NAMES.get(e["event"], e["event"].replace("_", " "))}
                  for e in self.store.audit.of_owner(session.owner_id, ACCESS_LOG_SIZE)]
        return self.page("access.html", owner=self.store.registry.owner(session.owner_id), events=events,
                         csrf=session.csrf)

    # -- the export: built in the background, downloaded once --------------------------

    def _build_export(self, owner_id: str, job: _Export) -> None:
        """The export in a thread of its own, on a Store of its own (its snapshot must not
        hold up the pages). The same fail-closed export as `earmark-cloud export`."""
        store = Store(self.store.data_dir, self.store.master_key_path, database_url=self.store.database_url)
        try:
            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            result = export_owner(store, owner_id, job.folder, progress=progress)
            job.ready_at = time.monotonic()
            job.path = result.path
        except EarmarkError as exc:
            job.error = str(exc)
        except Exception as exc:  # the page says it failed; the log says why
            log.exception("portal export for %s failed", owner_id)
            job.error = f"the export failed ({type(exc).__name__}); nothing was sent"
        finally:
            store.close()

    def _expired(self, job: _Export) -> bool:
        return job.path is not None and time.monotonic() - job.ready_at > DOWNLOAD_S

    def _forget(self, owner_id: str) -> None:
        job = self._exports.pop(owner_id, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    async def export(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", 303)
        for owner_id in [o for o, j in self._exports.items() if self._expired(j)]:
            self._forget(owner_id)  # nobody's export waits on disk past its link
        job = self._exports.get(session.owner_id)
        token = ""
        if job is not None and job.path is not None and not job.token_sha256:
            token = secrets.token_urlsafe(32)  # shown once, on the page that announces it
            job.token_sha256 = token_sha256(token)
        return self.page("export.html", owner=self.store.registry.owner(session.owner_id), csrf=session.csrf,
                         job=job, token=token, minutes=DOWNLOAD_S // 60,
                         encrypted=bool(self.store.registry.recipient(session.owner_id)))

    async def export_start(self, request: Request) -> Response:
        session = await self.form_session(request)
        if isinstance(session, Response):
            return session
        job = self._exports.get(session.owner_id)
        if job is None or not job.running:
            self._forget(session.owner_id)
            self._exports_dir.mkdir(mode=0o700, exist_ok=True)
            job = _Export(Path(tempfile.mkdtemp(dir=self._exports_dir)))
            self._exports[session.owner_id] = job
            threading.Thread(target=self._build_export, args=(session.owner_id, job), daemon=True).start()
        return RedirectResponse("/export", 303)

    async def export_download(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", 303)
        job = self._exports.get(session.owner_id)
        given = token_sha256(request.path_params["token"])
        if (job is None or job.path is None or not job.token_sha256 or self._expired(job)
                or not secrets.compare_digest(given, job.token_sha256)):
            return self._not_found(session, "export", "")
        self._exports.pop(session.owner_id, None)  # single use: gone once this response is sent
        self.store.audit.record("portal_export_downloaded", owner_id=session.owner_id,
                                detail={"file": job.path.name})
        return FileResponse(job.path, filename=job.path.name, media_type="application/octet-stream",
                            background=BackgroundTask(shutil.rmtree, job.folder, ignore_errors=True))

    async def audio(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return Response(status_code=401)
        row = self._clip(session, request.path_params["clip_id"])
        if isinstance(row, Response):
            return row
        try:
            envelope = checked_envelope(self.store, session.owner_id, row, KnownDevices(self.store).get(row.device_id))
        except ExportError:
            return Response("this recording failed its checks and is not played", status_code=409)
        return Response(bytes(envelope.audio), media_type="audio/wav")

    async def delete(self, request: Request) -> Response:
        session = await self.form_session(request)
        if isinstance(session, Response):
            return session
        row = self._clip(session, request.path_params["clip_id"])
        if isinstance(row, Response):
            return row
        delete_clip(self.store, session.owner_id, row.clip_id)
        return RedirectResponse("/", 303)

    async def mark(self, request: Request) -> Response:
        session = await self.form_session(request)
        if isinstance(session, Response):
            return session
        clip_id = request.path_params["clip_id"]
        given = str((await request.form()).get("mark", ""))
        if given and given not in MARK_NAMES:
            return Response("unknown mark", status_code=400)
        if not self.store.clips.mark(session.owner_id, clip_id, given or None):
            return self._not_found(session, "clip", clip_id)
        back = self.store.clips.get(session.owner_id, str((await request.form()).get("before", "")))
        return RedirectResponse(f"/?before={back.clip_id}#clip-{clip_id}" if back else f"/#clip-{clip_id}", 303)

    async def signout(self, request: Request) -> Response:
        session = await self.form_session(request)
        if isinstance(session, Session):
            self.store.portal.end(request.cookies[COOKIE], session.owner_id, "signed out")
        response = RedirectResponse("/signin", 303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    # -- erasing everything: a typed confirmation and the passkey again -----------------

    async def erase_page(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", 303)
        return self.page("erase.html", owner=self.store.registry.owner(session.owner_id), csrf=session.csrf,
                         phrase=ERASE_PHRASE, count=self.store.clips.count(session.owner_id))

    async def erased(self, request: Request) -> Response:
        return self.page("message.html", title="Everything is erased",
                         text="Your recordings, your key, your devices' access and your passkeys are gone. "
                              "Only the record that an erasure happened remains in the audit log.")

    async def erase_options(self, request: Request) -> Response:
        checked = await self.json_session(request)
        if isinstance(checked, Response):
            return checked
        session, body = checked
        if str(body.get("typed", "")).strip() != ERASE_PHRASE:
            return JSONResponse({"error": f"type “{ERASE_PHRASE}” to confirm"}, 400)
        options = webauthn.generate_authentication_options(
            rp_id=self.rp_id, user_verification=UserVerificationRequirement.REQUIRED,
            allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c))
                               for c in self.store.portal.passkeys_of(session.owner_id)])
        return JSONResponse({"ceremony": self._start(options.challenge, session.owner_id),
                             "options": json.loads(webauthn.options_to_json(options))})

    async def erase_verify(self, request: Request) -> Response:
        checked = await self.json_session(request)
        if isinstance(checked, Response):
            return checked
        session, body = checked
        ceremony = self._ceremonies.pop(str(body.get("ceremony", "")), None)
        credential = body.get("credential", {})
        passkey = self.store.portal.passkey(str(credential.get("id", ""))) if isinstance(credential, dict) else None
        if (ceremony is None or ceremony.owner_id != session.owner_id or passkey is None
                or passkey.owner_id != session.owner_id or str(body.get("typed", "")).strip() != ERASE_PHRASE):
            return JSONResponse({"error": "the confirmation did not match: nothing was erased"}, 400)
        if self._asserted(ceremony, credential, passkey) is None:
            return JSONResponse({"error": "the passkey could not be checked: nothing was erased"}, 400)
        self._forget(session.owner_id)
        erase_owner(self.store, session.owner_id)  # also ends every session of theirs (erasure step 5)
        try:
            await run_in_threadpool(sync_broker, self.store, self.broker_reload)  # their devices' logins go
        except BrokerNotConfirmed as exc:  # the erasure stands; `broker sync` finishes this part
            log.warning("owner erased from the portal; the broker is not in step yet: %s", exc)
        response = JSONResponse({"ok": True, "next": "/erased"})
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    # -- passkey ceremonies (JSON) -------------------------------------------------------

    async def register_options(self, request: Request) -> Response:
        if self._limited(request):
            return JSONResponse({"error": "too many attempts: wait a minute"}, 429)
        body = await self.body(request)
        if body is None:
            return malformed()
        token = str(body.get("token", ""))
        owner_id = self.store.portal.invited_owner(token)
        if owner_id is None:
            return JSONResponse({"error": "this link does not work any more"}, 404)
        owner = self.store.registry.owner(owner_id)
        options = webauthn.generate_registration_options(
            rp_id=self.rp_id, rp_name="Earmark", user_id=owner_id.encode(),
            user_name=owner.display_name if owner else "owner",
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED))
        ceremony = self._start(options.challenge, owner_id, token)
        return JSONResponse({"ceremony": ceremony, "options": json.loads(webauthn.options_to_json(options))})

    async def register_verify(self, request: Request) -> Response:
        body = await self.body(request)
        if body is None:
            return malformed()
        ceremony = self._ceremonies.pop(str(body.get("ceremony", "")), None)
        if ceremony is None or ceremony.owner_id is None or ceremony.token is None:
            return JSONResponse({"error": "the passkey prompt timed out: try again"}, 400)
        try:
            verified = webauthn.verify_registration_response(
                credential=body.get("credential", {}), expected_challenge=ceremony.challenge,
                expected_rp_id=self.rp_id, expected_origin=self.origin, require_user_verification=True)
        except InvalidRegistrationResponse:
            return JSONResponse({"error": "the passkey could not be checked: try again"}, 400)
        passkey = Passkey(bytes_to_base64url(verified.credential_id), ceremony.owner_id,
                          verified.credential_public_key, verified.sign_count)
        if not self.store.portal.register(ceremony.token, passkey):
            return JSONResponse({"error": "this link does not work any more"}, 404)
        return self._signed_in(passkey, verified.sign_count, request)

    async def signin_options(self, request: Request) -> Response:
        if self._limited(request):
            return JSONResponse({"error": "too many attempts: wait a minute"}, 429)
        options = webauthn.generate_authentication_options(rp_id=self.rp_id,
                                                           user_verification=UserVerificationRequirement.REQUIRED)
        return JSONResponse({"ceremony": self._start(options.challenge),
                             "options": json.loads(webauthn.options_to_json(options))})

    async def signin_verify(self, request: Request) -> Response:
        body = await self.body(request)
        if body is None:
            return malformed()
        ceremony = self._ceremonies.pop(str(body.get("ceremony", "")), None)
        credential = body.get("credential", {})
        passkey = self.store.portal.passkey(str(credential.get("id", ""))) if isinstance(credential, dict) else None
        if ceremony is None or passkey is None:
            return JSONResponse({"error": "that passkey is not known here"}, 400)
        sign_count = self._asserted(ceremony, credential, passkey)
        if sign_count is None:
            return JSONResponse({"error": "the passkey could not be checked: try again"}, 400)
        return self._signed_in(passkey, sign_count, request)


def create_app(store: Store, settings: PortalSettings, broker_reload: str = "") -> Starlette:
    """The portal on `store`; `broker_reload`: the broker.reload_command revocations and
    erasures use to bring the running broker in step (see broker/control.py)."""
    portal = Portal(store, settings, broker_reload)
    return Starlette(
        routes=[
            Route("/", portal.recordings),
            Route("/signin", portal.signin),
            Route("/access", portal.access),
            Route("/export", portal.export),
            Route("/export", portal.export_start, methods=["POST"]),
            Route("/export/download/{token}", portal.export_download),
            Route("/invite/{token}", portal.invite),
            Route("/clips/{clip_id}/audio", portal.audio),
            Route("/clips/{clip_id}/delete", portal.delete, methods=["POST"]),
            Route("/clips/{clip_id}/mark", portal.mark, methods=["POST"]),
            Route("/devices", portal.devices),
            Route("/devices/{device_id}/revoke", portal.revoke, methods=["POST"]),
            Route("/signout", portal.signout, methods=["POST"]),
            Route("/erase", portal.erase_page),
            Route("/erased", portal.erased),
            Route("/api/erase/options", portal.erase_options, methods=["POST"]),
            Route("/api/erase/verify", portal.erase_verify, methods=["POST"]),
            Route("/api/register/options", portal.register_options, methods=["POST"]),
            Route("/api/register/verify", portal.register_verify, methods=["POST"]),
            Route("/api/signin/options", portal.signin_options, methods=["POST"]),
            Route("/api/signin/verify", portal.signin_verify, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(_SecurityHeaders)],
    )
