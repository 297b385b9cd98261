"""The owners' portal in a real browser: Debian's Chromium driven by Playwright, Chromium's
virtual authenticator standing in for each owner's passkey, the portal served by uvicorn on
the real store (SQLite and PostgreSQL under row-level security).

Alice is invited, registers a passkey, sees her recordings, plays one (the audio element
loads and has a duration), deletes one, signs out and back in, downloads her export (built
in the background; it passes verify-export; the link works once) and reads her access log.
Bob finally erases everything (a typed confirmation and his passkey again): his recordings,
key and passkeys go, his session ends, Alice's things stay. Bob, in another browser
context with his own passkey, sees only his, and Alice's clip ids give him 404 (audited) for
listening and for deleting; a used invite link does not work twice."""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.portal import recordings as portal_recordings
from earmark.cloud.portal.app import COOKIE, HEADERS
from earmark.cloud.store.store import Store
from tests.support.cloudkit import SimDevice, enrolled_device, tamper
from tests.support.portalserver import served

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def portal(store: Store) -> Iterator[tuple[str, Store]]:
    with served(store) as (url, _):
        yield url, store


def with_clips(store: Store, name: str, count: int) -> tuple[SimDevice, list[str]]:
    device = enrolled_device(store, name)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    envelopes = [device.clip(canary=name.encode(), seconds=1.0 + i / 2, captured=start + timedelta(hours=i), seed=i)
                 for i in range(count)]
    Ingestor(store).handle_batch([(device.topic, e) for e in envelopes])
    return device, [r.clip_id for r in store.clips.of_owner(device.owner_id)]


def passkey_holder(browser: Any) -> Any:
    """A browser context whose page has its own virtual passkey authenticator."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return page


def register(page: Any, base: str, link: str) -> None:
    page.goto(link)
    page.click("#register")
    try:
        page.wait_for_url(f"{base}/", timeout=15_000)
    except playwright.TimeoutError:
        raise AssertionError(f"registration did not finish: {page.text_content('#status')!r}") from None


def rows(page: Any) -> list[str]:
    return [r.get_attribute("id").removeprefix("clip-") for r in page.query_selector_all("tbody tr")]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (deploy/setup.sh installs it)")
def test_owners_sign_in_with_passkeys_hear_and_delete_their_own_recordings_and_nobody_elses(
        portal: tuple[str, Store], tmp_path: Path) -> None:
    base, store = portal
    shots = Path(os.environ.get("EARMARK_SCREENSHOTS", tmp_path))  # docs/ for the README's
    alice, alice_clips = with_clips(store, "Alice", 3)
    bob, bob_clips = with_clips(store, "Bob", 2)
    alice_link = f"{base}/invite/{store.portal.invite(alice.owner_id, 900)}"
    bob_link = f"{base}/invite/{store.portal.invite(bob.owner_id, 900)}"

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = passkey_holder(browser)
        register(page, base, alice_link)
        assert sorted(rows(page)) == sorted(alice_clips)
        response = page.goto(f"{base}/")
        assert response is not None and all(response.headers.get(k.lower()) == v for k, v in HEADERS.items())
        [cookie] = [c for c in page.context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        # The players load nothing until asked (issue 25: a page view fetched every recording on it).
        assert page.evaluate("[...document.querySelectorAll('audio')].every(a => a.readyState === 0)")
        page.evaluate("document.querySelector('audio').load()")
        deadline = time.monotonic() + 10
        while page.evaluate("document.querySelector('audio').readyState") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        duration = page.evaluate("document.querySelector('audio').duration")
        assert duration > 0.9  # the newest of Alice's clips plays: 2.0 s

        page.once("dialog", lambda dialog: dialog.accept())
        first = rows(page)[0]
        page.click(f"#clip-{first} button.danger")
        page.wait_for_url(f"{base}/")
        assert first not in rows(page) and len(rows(page)) == 2
        assert first not in [r.clip_id for r in store.clips.of_owner(alice.owner_id)]

        marked = rows(page)[0]  # "I did not mean to wake it": kept, shown, audited
        page.click(f"#clip-{marked} form.mark button")
        page.wait_for_selector(f"#clip-{marked}.marked")
        assert store.clips.marks(alice.owner_id, alice_clips) == {marked: "not_meant"}
        page.screenshot(path=str(shots / "portal-recordings.png"), full_page=True)

        page.click("header button")  # sign out
        page.wait_for_url(f"{base}/signin")
        assert page.goto(f"{base}/").url == f"{base}/signin"  # no session, no list
        page.click("#signin")
        page.wait_for_url(f"{base}/", timeout=15_000)
        assert len(rows(page)) == 2

        with pytest.MonkeyPatch.context() as patch:  # paging, a page of one: newest first, then older
            patch.setattr(portal_recordings, "PAGE_SIZE", 1)
            page.goto(f"{base}/")
            newest = rows(page)
            page.click("#older")
            assert rows(page) != newest and len(rows(page)) == 1 and page.query_selector("#older") is None
            assert newest + rows(page) == [c for c in reversed(alice_clips) if c != first]

        used = page.goto(alice_link)
        assert used is not None and used.status == 404  # an invite works once

        other = passkey_holder(browser)
        register(other, base, bob_link)
        assert sorted(rows(other)) == sorted(bob_clips)
        for clip_id in alice_clips[1:]:
            assert other.request.get(f"{base}/clips/{clip_id}/audio").status == 404
            csrf = other.get_attribute("input[name=csrf]", "value")
            assert other.request.post(f"{base}/clips/{clip_id}/delete", form={"csrf": csrf}).status == 404
        assert page.request.get(f"{base}/clips/{bob_clips[0]}/audio").status == 404
        assert page.request.post(f"{base}/clips/{alice_clips[1]}/delete", form={"csrf": "forged"}).status == 403
        csrf = other.get_attribute("input[name=csrf]", "value")
        assert other.request.post(f"{base}/clips/{marked}/mark", form={"csrf": csrf, "mark": ""}).status == 404
        assert other.request.post(f"{base}/devices/{alice.device_id}/revoke", form={"csrf": csrf}).status == 404
        other.goto(f"{base}/devices")
        assert [r.get_attribute("id") for r in other.query_selector_all("tbody tr")] == [f"device-{bob.device_id}"]
        assert store.clips.marks(alice.owner_id, [marked]) == {marked: "not_meant"}
        assert store.registry.device(alice.device_id).revoked_at is None  # type: ignore[union-attr]
        for junk in ("not json", "[1, 2]", '{"credential": "x", "ceremony": 1}'):  # one-line 400s, never a 500
            for api in ("register", "signin", "erase"):
                for step in ("options", "verify")[api == "signin":]:  # (signin's options read no body)
                    answer = other.request.post(f"{base}/api/{api}/{step}", data=junk,
                                                headers={"content-type": "application/json"})
                    assert answer.status in (400, 403, 404), (api, step, junk, answer.status)
        other.screenshot(path=str(shots / "portal-other-owner.png"), full_page=True)

        store.presence.record(alice.device_id, b'{"state": "online", "mic": "open", "spool_depth": 1}')
        page.goto(f"{base}/devices")  # her device, online (what the ingester read from its status topic)
        assert page.get_attribute(f"#device-{alice.device_id}", "data-state") == "online"
        page.screenshot(path=str(shots / "portal-devices.png"), full_page=True)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f"#device-{alice.device_id} button.danger")  # she revokes it
        page.wait_for_selector(f"#device-{alice.device_id}[data-state=revoked]")
        assert store.registry.device(alice.device_id).revoked_at is not None  # type: ignore[union-attr]

        page.goto(f"{base}/export")  # her whole export, built in the background, downloaded once
        page.click("#prepare")
        try:
            page.wait_for_selector("#download", timeout=30_000)
        except playwright.TimeoutError:
            raise AssertionError(page.inner_text("main")) from None
        link = page.get_attribute("#download", "href")
        with page.expect_download() as download:
            page.click("#download")
        archive = tmp_path / download.value.suggested_filename
        download.value.save_as(archive)
        assert verify_export(store, archive, alice.owner_id) == []  # every check holds, nothing left out
        shown = page.inner_text("code.export-key.current")  # the key the page shows checks it offline
        assert verify_export(None, archive, alice.owner_id, keys=[shown]) == []
        with zipfile.ZipFile(archive) as zf:  # her mark went with her data, and shows in index.html
            entries = {e["clip_id"]: e.get("mark") for e in json.loads(zf.read("manifest.json"))["clips"]}
            assert entries == {clip_id: "not_meant" if clip_id == marked else None for clip_id in entries}
            assert zf.read("index.html").decode().count("you marked it: Not meant for me") == 1
        assert page.request.get(f"{base}{link}").status == 404  # single use
        assert other.request.get(f"{base}{link}").status == 404

        page.goto(f"{base}/access")  # Alice's access log: her events, none of Bob's
        seen = [r.get_attribute("data-event") for r in page.query_selector_all("tr.event")]
        assert seen.count("portal_signed_in") == 2 and "clip_deleted" in seen and "clip_stored" in seen
        assert seen.count("clip_stored") == len(alice_clips) and "portal_not_found" in seen
        assert "export_completed" in seen and "portal_export_downloaded" in seen
        assert "clip_marked" in seen and "device_revoked" in seen
        assert bob.owner_id not in page.content() and "bob-pi" not in page.content()
        page.screenshot(path=str(shots / "portal-access-log.png"), full_page=True)

        other.goto(f"{base}/erase")  # Bob erases everything: typed confirmation, then his passkey again
        other.fill("#typed", "erase")
        other.click("#erase")
        deadline = time.monotonic() + 10
        while "to confirm" not in (other.text_content("#status") or "") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "to confirm" in (other.text_content("#status") or "")
        assert store.registry.owner(bob.owner_id).erased_at is None  # type: ignore[union-attr]
        other.fill("#typed", "Erase Everything")  # as a phone keyboard capitalises it (issue 25 case 5)
        other.click("#erase")
        other.wait_for_url(f"{base}/erased", timeout=15_000)
        assert other.goto(f"{base}/").url == f"{base}/signin"  # his session went with everything else
        assert page.goto(f"{base}/").url == f"{base}/" and len(rows(page)) == 2  # Alice's are untouched
        browser.close()

    assert len(store.clips.of_owner(alice.owner_id)) == 2 and store.clips.of_owner(bob.owner_id) == []
    assert store.registry.owner(bob.owner_id).erased_at is not None  # type: ignore[union-attr]
    assert store.portal.passkeys_of(bob.owner_id) == [] and len(store.portal.passkeys_of(alice.owner_id)) == 1
    events = [(e["event"], e["owner_id"]) for e in store.audit.chain()]
    assert ("portal_not_found", alice.owner_id) in events
    # Bob's 404s were recorded too; his erasure redacted them with the rest of his events.
    assert {e for e, owner in events if owner == bob.owner_id} == {"redacted", "owner_erased"}
    assert events.count(("portal_signed_in", alice.owner_id)) == 2


def test_an_invite_works_once_and_not_after_it_expires_and_sessions_end_idle_or_at_their_limit(
        store: Store, tmp_path: Path) -> None:
    from earmark.cloud.store.portal import Passkey
    from tests.integration.test_cloud_cli import cloud, ok

    alice = enrolled_device(store, "Alice").owner_id
    (tmp_path / "cloud.toml").write_text('[portal]\npublic_url = "https://portal.example.org"\n')
    link = ok(cloud("owner", "invite", "--owner", alice, "--config", tmp_path / "cloud.toml",
                    data_dir=store.data_dir, url=store.database_url)).strip()
    assert link.startswith("https://portal.example.org/invite/")
    token = link.rsplit("/", 1)[1]
    assert token not in str(store.db.query("SELECT * FROM portal_invites"))  # only its hash is kept
    passkey = Passkey("credential-1", alice, b"public key", 0)
    assert store.portal.invited_owner(token) == alice
    assert store.portal.register(token, passkey) and store.portal.invited_owner(token) is None
    assert not store.portal.register(token, replace(passkey, credential_id="credential-2"))  # used up
    expired = store.portal.invite(alice, -1)
    assert store.portal.invited_owner(expired) is None and not store.portal.register(expired, passkey)
    unknown = cloud("owner", "invite", "--owner", "5c1e7f6e-0000-4000-8000-000000000000",
                    data_dir=store.data_dir, url=store.database_url)
    assert unknown.returncode == 2 and "no owner" in unknown.stderr

    cookie, session = store.portal.sign_in(passkey, 1, "127.0.0.1")
    assert store.portal.session(cookie, idle_s=60, max_s=3600) == session
    assert store.portal.session(cookie, idle_s=60, max_s=0) is None  # past its absolute limit: ended
    assert store.portal.session(cookie, idle_s=60, max_s=3600) is None  # and gone
    cookie, _ = store.portal.sign_in(passkey, 2, "127.0.0.1")
    time.sleep(0.05)
    assert store.portal.session(cookie, idle_s=0.01, max_s=3600) is None  # idle too long
    events = [e["event"] for e in store.audit.chain() if e["owner_id"] == alice]
    assert events.count("portal_invite_made") == 2 and events.count("portal_signed_out") == 2


def test_a_mark_is_its_owners_alone_and_goes_with_its_clip_by_delete_purge_or_erasure(store: Store) -> None:
    from earmark.cloud.owner.erasure import delete_clip, erase_owner
    from earmark.cloud.owner.retention import purge_owner

    alice, alice_clips = with_clips(store, "Alice", 3)
    bob, bob_clips = with_clips(store, "Bob", 1)
    assert store.clips.mark(alice.owner_id, alice_clips[0], "not_meant")
    assert store.clips.mark(alice.owner_id, alice_clips[1], "not_meant")
    assert not store.clips.mark(bob.owner_id, alice_clips[2], "not_meant")  # not his: nothing marked
    assert store.clips.marks(bob.owner_id, alice_clips) == {}
    assert store.clips.marks(alice.owner_id, alice_clips + bob_clips) == {
        alice_clips[0]: "not_meant", alice_clips[1]: "not_meant"}
    assert store.clips.mark(alice.owner_id, alice_clips[1], None)  # taken off again
    assert store.clips.marks(alice.owner_id, alice_clips) == {alice_clips[0]: "not_meant"}
    # What the operator sees for tuning the wake decision (`status`): numbers per wake word, no owner.
    assert [dict(r) for r in store.db.gateway("wake_marks")] == [{"wake_word": "alexa", "clips": 4, "marked": 1}]

    delete_clip(store, alice.owner_id, alice_clips[0])  # the marked clip goes, and its mark with it
    assert store.clips.mark(alice.owner_id, alice_clips[2], "not_meant")
    assert purge_owner(store, alice.owner_id, "2026-11-01T11:30:00.000Z", 1) == 2  # retention: both left
    assert store.clips.mark(bob.owner_id, bob_clips[0], "not_meant")
    assert store.presence.record(bob.device_id, b'{"state": "online"}')
    erase_owner(store, bob.owner_id)
    assert tamper(store, "SELECT clip_id FROM clip_marks") == []
    assert tamper(store, "SELECT device_id FROM device_presence") == []
    events = [(e["event"], e["owner_id"]) for e in store.audit.chain()]
    assert events.count(("clip_marked", alice.owner_id)) == 3 and ("clip_mark_cleared", alice.owner_id) in events


@pytest.mark.parametrize("payload, online, status", [
    (b'{"state": "online", "mic": "open", "spool_depth": 2}', True, {"state": "online", "mic": "open",
                                                                     "spool_depth": 2}),
    (b"offline", False, {}),  # the will, or a clean stop
    (b"", False, {}),  # a cleared retained message
    (b"not json", True, {}),  # connected, saying something odd: online, nothing shown
    (b"[1, 2]", True, {}),
    (b'{"pad": "' + b"x" * 5000 + b'"}', True, {}),  # too big to keep
])
def test_a_status_payload_says_whether_the_device_is_online(payload: bytes, online: bool,
                                                            status: dict[str, object]) -> None:
    from earmark.cloud.store.presence import parse_status

    assert parse_status(payload) == (online, status)


def test_presence_is_kept_only_for_a_known_live_device_under_its_owner(store: Store) -> None:
    alice = enrolled_device(store, "Alice")
    assert not store.presence.record("stranger-pi", b'{"state": "online"}')
    assert store.presence.record(alice.device_id, b'{"state": "online", "muted": true}')
    assert store.presence.of_owner(alice.owner_id)[alice.device_id].status == {"state": "online", "muted": True}
    assert store.presence.record(alice.device_id, b"offline")
    assert not store.presence.of_owner(alice.owner_id)[alice.device_id].online
    store.registry.revoke_device(alice.device_id)
    assert not store.presence.record(alice.device_id, b'{"state": "online"}')  # revoked: not kept
    assert not store.presence.of_owner(alice.owner_id)[alice.device_id].online
