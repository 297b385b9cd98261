"""What the portal makes of hostile input over HTTP, on the real app and store (issue 24,
cases 9 and 10): malformed passkey JSON inside a valid ceremony is a 400, never a 500; a
credential id registered already gets the same answer as any bad credential (nothing tells
it exists) and leaves the invite usable; a 500 carries the security headers; and the
sign-in rate limit believes X-Forwarded-For only from a configured proxy. And (issue 33,
case 3) no body is read before the session is checked, and every body is bounded."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pyrage import x25519

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.export import export_owner
from earmark.cloud.owner.retention import purge_expired
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.portal.app import HEADERS
from earmark.cloud.portal.guard import BODY_LIMIT, COOKIE
from earmark.cloud.portal.state import SIGN_IN_LIMIT, PortalState, RateLimit
from earmark.cloud.store.store import Store
from tests.integration.test_portal_guard import _NoRedirect as NoRedirect
from tests.support.cloudkit import SimDevice, enrolled_device
from tests.support.portalserver import served, session_for
from tests.support.softkey import SoftPasskey, b64url


@dataclass
class Portal:
    url: str
    state: PortalState

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            text = exc.read()
            return exc.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}

    def get(self, path: str) -> tuple[int, dict[str, str]]:
        """(status, headers by their names as HEADERS spells them)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            status, headers = exc.code, exc.headers
        return status, {name: headers.get(name, "") for name in HEADERS}


def serve(store: Store, **settings: Any) -> Iterator[Portal]:
    with served(store, **settings) as (url, state):
        yield Portal(url, state)


@pytest.fixture
def portal(store: Store) -> Iterator[Portal]:
    yield from serve(store)


def registration(portal: Portal, token: str) -> tuple[str, dict[str, Any]]:
    status, answer = portal.post("/api/register/options", {"token": token})
    assert status == 200, answer
    return answer["ceremony"], answer["options"]


def register(portal: Portal, token: str, passkey: SoftPasskey) -> tuple[int, dict[str, Any]]:
    ceremony, options = registration(portal, token)
    return portal.post("/api/register/verify", {"ceremony": ceremony,
                                                "credential": passkey.register(options, portal.url)})


def invited(store: Store, name: str) -> tuple[str, str]:
    owner = store.registry.add_owner(name).owner_id
    return owner, store.portal.invite(owner, 900)


Spoil = Callable[[dict[str, Any]], Any]
MALFORMED: dict[str, Spoil] = {
    "credential a string": lambda c: "x",
    "credential a list": lambda c: [c],
    "response a string": lambda c: {**c, "response": "x"},
    "response empty": lambda c: {**c, "response": {}},
    "response a list": lambda c: {**c, "response": [1, 2]},
    "rawId not the id": lambda c: {**c, "rawId": b64url(b"another credential")},
    "rawId a number": lambda c: {**c, "rawId": 7},
    "id missing": lambda c: {k: v for k, v in c.items() if k != "id"},
    "clientDataJSON not base64": lambda c: {**c, "response": {**c["response"], "clientDataJSON": "%%%"}},
}


def test_malformed_passkey_json_in_a_valid_ceremony_is_a_400(store: Store, portal: Portal) -> None:
    """Case 9: a string or empty `response`, a list, a mismatched rawId were 500s."""
    portal.state.sign_in_limit = RateLimit(1000, 60)
    _, token = invited(store, "Alice")
    for name, spoil in MALFORMED.items():
        ceremony, options = registration(portal, token)
        good = SoftPasskey().register(options, portal.url)
        status, answer = portal.post("/api/register/verify", {"ceremony": ceremony, "credential": spoil(good)})
        assert (status, answer) == (400, {"error": "the passkey could not be checked: try again"}), name
    passkey = SoftPasskey()
    assert register(portal, token, passkey)[0] == 200  # the invite still works

    for name, spoil in MALFORMED.items():
        status, answer = portal.post("/api/signin/options", {})
        assert status == 200
        good = passkey.sign_in(answer["options"], portal.url)
        status, answer = portal.post("/api/signin/verify", {"ceremony": answer["ceremony"], "credential": spoil(good)})
        assert status == 400 and "error" in answer, name
    status, answer = portal.post("/api/signin/options", {})
    assert portal.post("/api/signin/verify", {"ceremony": answer["ceremony"],
                                              "credential": passkey.sign_in(answer["options"], portal.url)})[0] == 200


def test_a_credential_id_registered_already_is_refused_like_any_bad_credential(store: Store,
                                                                               portal: Portal) -> None:
    """Case 9: an existing credential id raised IntegrityError (a 500), which also told
    whether a credential exists."""
    _, bobs_token = invited(store, "Bob")
    bobs = SoftPasskey()
    assert register(portal, bobs_token, bobs)[0] == 200
    alice, token = invited(store, "Alice")
    status, answer = register(portal, token, SoftPasskey(credential_id=bobs.credential_id))  # a new key, his id
    assert (status, answer) == (400, {"error": "the passkey could not be checked: try again"})
    passkey = store.portal.passkey(b64url(bobs.credential_id))
    assert passkey is not None and passkey.owner_id != alice  # Bob's passkey is his still
    assert store.portal.invited_owner(token) == alice  # and Alice's invite was not used up
    assert register(portal, token, SoftPasskey())[0] == 200


def test_a_500_carries_the_security_headers(store: Store, portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(token: str) -> str | None:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(store.portal, "invited_owner", broken)
    status, headers = portal.get("/invite/whatever")
    assert status == 500
    assert headers == HEADERS


def attempts(portal: Portal, spoofed: bool) -> list[int]:
    """The sign-in prompt asked for SIGN_IN_LIMIT's count + 2 times from this host, each
    with another X-Forwarded-For if `spoofed`."""
    return [portal.post("/api/signin/options", {},
                        {"X-Forwarded-For": f"198.51.100.{n}"} if spoofed else {})[0]
            for n in range(SIGN_IN_LIMIT[0] + 2)]


def test_the_sign_in_rate_limit_ignores_x_forwarded_for_by_default(portal: Portal) -> None:
    """Case 10: rotating X-Forwarded-For on loopback got 12 of 12 prompts (10, then 429, without)."""
    count = SIGN_IN_LIMIT[0]
    assert attempts(portal, spoofed=True) == [200] * count + [429, 429]


def test_behind_a_configured_proxy_each_forwarded_client_has_its_own_limit(store: Store) -> None:
    for portal in serve(store, trusted_proxies="127.0.0.1"):
        assert attempts(portal, spoofed=True) == [200] * (SIGN_IN_LIMIT[0] + 2)  # twelve clients, one each
        assert attempts(portal, spoofed=False)[-1] == 429  # the proxy itself, unforwarded, is one client


def test_audio_is_served_in_the_byte_ranges_a_player_asks_for(store: Store, portal: Portal) -> None:
    """Issue 25 case 6: the players' metadata requests got whole files (no range requests)."""
    from tests.integration.test_erasure_leaves_nothing import with_clips

    alice = with_clips(store, "Alice", 1)
    token, _ = session_for(store, alice.owner_id)
    [clip] = store.clips.of_owner(alice.owner_id)

    def fetch(extra: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{portal.url}/clips/{clip.clip_id}/audio",
                                         headers={"Cookie": f"{COOKIE}={token}", **extra})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    status, headers, whole = fetch({})
    assert status == 200 and headers["accept-ranges"] == "bytes" and whole[:4] == b"RIFF"
    status, headers, head = fetch({"Range": "bytes=0-43"})  # a WAV's header: what a player reads first
    assert (status, head, headers["content-range"]) == (206, whole[:44], f"bytes 0-43/{len(whole)}")
    status, _, tail = fetch({"Range": "bytes=-100"})
    assert (status, tail) == (206, whole[-100:])
    status, _, rest = fetch({"Range": f"bytes={len(whole) - 10}-"})
    assert (status, rest) == (206, whole[-10:])
    assert fetch({"Range": f"bytes={len(whole)}-"})[0] == 416


def form_post(portal: Portal, token: str, path: str, fields: list[tuple[str, str]]) -> int:
    request = urllib.request.Request(portal.url + path, data=urlencode(fields).encode(), method="POST",
                                     headers={"Cookie": f"{COOKIE}={token}",
                                              "Content-Type": "application/x-www-form-urlencoded"})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def page_of(portal: Portal, token: str, query: str = "") -> str:
    request = urllib.request.Request(f"{portal.url}/?{query}", headers={"Cookie": f"{COOKIE}={token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_an_owner_filters_and_deletes_many_recordings_and_sets_auto_delete(store: Store, portal: Portal,
                                                                          tmp_path: Path) -> None:
    """Issue 25 case 3: 33 recordings took 66 clicks to delete; no range, no "all but keep my
    account", no filter by date or device, no retention shown or chosen."""
    alice = enrolled_device(store, "Alice")
    kitchen = SimDevice("alice-kitchen", alice.owner_id)
    store.registry.add_device(alice.owner_id, kitchen.public_key, kitchen.device_id)
    bob = enrolled_device(store, "Bob")
    days = [datetime(2026, 11, d, 12, tzinfo=UTC) for d in range(1, 11)]  # ten days of one a day
    sent = [(alice.topic, alice.clip(seed=n, seconds=0.25, captured=day)) for n, day in enumerate(days)]
    sent += [(kitchen.topic, kitchen.clip(seed=50 + n, seconds=0.25, captured=day)) for n, day in enumerate(days[:3])]
    sent += [(bob.topic, bob.clip(seed=99, seconds=0.25))]
    assert {o.status for o in Ingestor(store).handle_batch(sent)} == {"stored"}
    token, csrf = session_for(store, alice.owner_id)
    ids = {c.captured_at[:10] + "/" + c.device_id: c.clip_id for c in store.clips.of_owner(alice.owner_id)}

    shown = page_of(portal, token, "device=alice-kitchen")
    assert "3 of your 13 recordings match" in shown and shown.count('name="clip"') == 3
    shown = page_of(portal, token, "since=2026-11-04&until=2026-11-05&since_tz=-60&until_tz=-60")  # Berlin's days
    assert shown.count('name="clip"') == 2

    # Ticked: two of hers, and Bob's, whose id she cannot delete (it is no clip of hers).
    [bobs] = [c.clip_id for c in store.clips.of_owner(bob.owner_id)]
    picked = [ids["2026-11-01/alice-pi"], ids["2026-11-02/alice-pi"], bobs]
    assert form_post(portal, token, "/clips/delete", [("csrf", csrf), *(("clip", c) for c in picked)]) == 303
    assert store.clips.count(alice.owner_id) == 11 and store.clips.count(bob.owner_id) == 1
    # A date range of one device, then everything, the account staying.
    assert form_post(portal, token, "/clips/delete-shown", [("csrf", csrf), ("since", "2026-11-03"),
                                                            ("until", "2026-11-05"), ("device", "alice-pi")]) == 303
    assert sorted(c.captured_at[:10] for c in store.clips.of_owner(alice.owner_id)
                  if c.device_id == "alice-pi") == [f"2026-11-{d:02d}" for d in range(6, 11)]
    assert form_post(portal, token, "/clips/delete", [("clip", ids["2026-11-06/alice-pi"])]) == 403  # no CSRF
    assert form_post(portal, token, "/clips/delete-shown", [("csrf", csrf)]) == 303
    assert store.clips.count(alice.owner_id) == 0 and store.clips.count(bob.owner_id) == 1
    assert store.registry.owner(alice.owner_id).erased_at is None  # type: ignore[union-attr]
    events = [e["event"] for e in store.audit.of_owner(alice.owner_id, 50)]
    assert events.count("clips_deleted") == 3

    # Every deletion is on record: her export proves itself complete with nothing in it.
    archive = export_owner(store, alice.owner_id, tmp_path / "out").path
    assert verify_export(store, archive, alice.owner_id) == []

    # Her own auto-delete, shown on the page and enforced by the daily purge.
    assert form_post(portal, token, "/retention", [("csrf", csrf), ("days", "90")]) == 303
    assert form_post(portal, token, "/retention", [("csrf", csrf), ("days", "7")]) == 400  # not offered
    assert store.registry.retention(alice.owner_id) == 90
    assert "Recordings older than 90 days are deleted every day, as you chose" in page_of(portal, token)
    old = datetime.now(UTC) - timedelta(days=100)
    assert Ingestor(store).handle(alice.topic, alice.clip(seed=200, seconds=0.25, captured=old)).status == "stored"
    assert Ingestor(store).handle(bob.topic, bob.clip(seed=201, seconds=0.25, captured=old)).status == "stored"
    assert purge_expired(store, 0) == 1  # hers went; Bob chose nothing and the service keeps all
    assert store.clips.count(alice.owner_id) == 0 and store.clips.count(bob.owner_id) == 2


def raw_post(portal: Portal, path: str, head: dict[str, str], body: bytes, timeout: float = 10) -> int:
    """Send a POST's headers and `body` (perhaps only the start of what Content-Length says)
    over a socket of its own, and return the status of the answer, which must come within
    `timeout` while the rest of the body is still unsent."""
    host, port = portal.url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in head.items()), "", ""]
    with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout) as sock:
        sock.sendall("\r\n".join(lines).encode() + body)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer.split()[1])


def test_a_large_body_without_a_session_is_refused_before_it_is_read(store: Store, portal: Portal) -> None:
    """Issue 33 case 3: a 600 MB JSON POST to /clips/delete with no cookie is answered at once,
    the portal reading none of it (before: read whole, then 400, the portal at 1.5 GB)."""
    head = {"Content-Type": "application/json", "Content-Length": str(600 * 1024 * 1024)}
    assert raw_post(portal, "/clips/delete", head, b'{"csrf": "' + b"x" * 4096) == 403
    form = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(600 * 1024 * 1024)}
    assert raw_post(portal, "/clips/delete", form, b"clip=" + b"x" * 4096) == 303  # a form: to the sign-in page


def test_every_body_is_bounded_signed_in_or_not(store: Store, portal: Portal) -> None:
    """Signed in, and on the public routes: a body over the bound is a 413, by its
    Content-Length before it is read, or as a chunked body once it passes the bound."""
    owner = store.registry.add_owner("Alice").owner_id
    token, csrf = session_for(store, owner)
    big = str(BODY_LIMIT + 1)
    signed_in = {"Cookie": f"{COOKIE}={token}", "X-CSRF-Token": csrf}
    for path, extra in (("/clips/delete", signed_in), ("/api/signin/options", {})):
        head = {"Content-Type": "application/json", "Content-Length": big, **extra}
        assert raw_post(portal, path, head, b"{") == 413
        chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **extra}
        chunk = b"x" * 8192
        stream = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (BODY_LIMIT // len(chunk) + 2)
        assert raw_post(portal, path, chunked, stream) == 413
    # A body within the bound still works: the signed-in owner's sign-out form.
    status = raw_post(portal, "/signout", {**signed_in, "Content-Type": "application/x-www-form-urlencoded",
                                           "Content-Length": str(len(f"csrf={csrf}"))}, f"csrf={csrf}".encode())
    assert status == 303


def test_a_household_key_is_taken_once_and_only_as_a_recipient_with_age_wraps(store: Store,
                                                                                   portal: Portal) -> None:
    """Issue 34's bad input: wraps that are not age files, a member key that is not an age
    recipient, a missing recovery wrap, a household key that is not an age recipient, and a
    second key over the first are refused; nothing is kept."""
    owner = store.registry.add_owner("Alice").owner_id
    token, csrf = session_for(store, owner)
    signed_in = {"Cookie": f"{COOKIE}={token}", "X-CSRF-Token": csrf}
    recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
    wrap = base64.b64encode(b"age-encryption.org/v1\n-> scrypt x 18\nxyz\n--- abc\n0123").decode()
    member = {"recipient": "age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q", "wrap": wrap, "data": wrap}
    good = {"recipient": recipient, "recovery": wrap, "member": member}
    for bad in ({**good, "recovery": base64.b64encode(b"AGE-SECRET-KEY-1...").decode()},
                {**good, "member": {**member, "data": base64.b64encode(b"not age").decode()}},
                {**good, "member": {**member, "recipient": "age1nope"}},
                {key: value for key, value in good.items() if key != "recovery"},
                {**good, "recipient": "AGE-SECRET-KEY-1PA5838KK9JXNZ3AECS5X86WKLA3X0D8YY6JFSUH472YZPLT2Y85SYGMYUU"},
                {**good, "recovery": "%%%"}):
        status, answer = portal.post("/api/household", bad, signed_in)
        assert status == 400, answer
        assert store.registry.household_recipients(owner) == [] and store.household.wraps(owner) == []
    assert portal.post("/api/household", good)[0] in (401, 403)  # no session
    assert portal.post("/api/household", good, signed_in)[0] == 200
    assert portal.post("/api/household", {**good, "recipient": str(x25519.Identity.generate().to_public())},
                       signed_in)[0] == 409
    assert store.registry.household_recipients(owner) == [recipient]
