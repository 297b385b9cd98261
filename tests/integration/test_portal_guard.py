"""Every portal route is guarded in one place (cloud/portal/guard.py): each is an OwnerRoute
or a PublicRoute, the public ones are the sign-in's few, and no owner route's handler runs
without a live session, nor a state change without the session's CSRF token. Exercised over
HTTP against the real app and store, route by route, so a route added later is covered."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

from starlette.routing import Mount

from earmark.cloud.portal.app import COOKIE, create_app
from earmark.cloud.portal.guard import OwnerRoute, PublicRoute
from earmark.cloud.settings import PortalSettings
from earmark.cloud.store.portal import Passkey
from earmark.cloud.store.store import Store
from tests.integration.test_portal import portal, with_clips  # noqa: F401 - the fixture

PUBLIC = {"/signin", "/invite/{token}", "/erased", "/api/register/options", "/api/register/verify",
          "/api/signin/options", "/api/signin/verify"}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def call(url: str, method: str, cookie: str = "", data: bytes | None = None,
         content_type: str = "application/x-www-form-urlencoded") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=data if method != "GET" else None)
    if cookie:
        request.add_header("Cookie", f"{COOKIE}={cookie}")
    if method != "GET":
        request.add_header("Content-Type", content_type)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("location", "")


def concrete(path: str, clip_id: str, device_id: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: {"clip_id": clip_id, "device_id": device_id}.get(m[1], "x"), path)


def test_every_route_is_an_owners_or_one_of_the_sign_ins_few(store: Store) -> None:
    app = create_app(store, PortalSettings())
    kinds = {}
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path == "/static"
            continue
        assert isinstance(route, OwnerRoute | PublicRoute), route
        kinds.setdefault(route.path, set()).add(type(route))
    assert {path for path, k in kinds.items() if PublicRoute in k} == PUBLIC
    assert all(k == {OwnerRoute} for path, k in kinds.items() if path not in PUBLIC)


def test_no_owner_route_runs_without_a_session_nor_a_state_change_without_its_csrf_token(
        portal: tuple[str, Store], tmp_path: Path) -> None:  # noqa: F811 - the fixture
    base, store = portal
    alice, clips = with_clips(store, "Alice", 2)
    passkey = Passkey("credential-1", alice.owner_id, b"public key", 0)
    assert store.portal.register(store.portal.invite(alice.owner_id, 900), passkey)
    cookie, _ = store.portal.sign_in(passkey, 1, "127.0.0.1")
    app = create_app(store, PortalSettings())
    owner_routes = [(r.path, m) for r in app.routes if isinstance(r, OwnerRoute) for m in sorted(r.methods or ())
                    if m != "HEAD"]
    assert len(owner_routes) >= 12
    for path, method in owner_routes:
        url = base + concrete(path, clips[0], alice.device_id)
        status, location = call(url, method)
        assert status in (303, 401, 403), (path, method, status)  # never the handler
        assert status != 303 or location == "/signin", (path, method, location)
        if method == "POST":
            for body, kind in ((b"csrf=forged", "application/x-www-form-urlencoded"),
                               (b'{"csrf": "forged"}', "application/json")):
                status, _ = call(url, method, cookie, body, kind)
                assert status == 403, (path, method, kind, status)
    assert [c.clip_id for c in store.clips.of_owner(alice.owner_id)] == clips  # nothing was deleted
    assert store.registry.device(alice.device_id).revoked_at is None  # type: ignore[union-attr]
    assert store.registry.owner(alice.owner_id).erased_at is None  # type: ignore[union-attr]
    assert call(f"{base}/", "GET", cookie)[0] == 200  # the session itself still works
