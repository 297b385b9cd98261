"""Every page of the owners' portal, signed in and out, error pages included, at a phone's
size (390x844) and a desktop's (1280x800), in Debian's Chromium: axe-core finds no
violation, and no page is wider than its viewport (issue 25: the header alone was 655 px
wide on a phone, the recordings page 1,550 px; axe found a meta refresh, bare error pages,
unnamed landmarks and empty table headers). Screenshots of each go to $EARMARK_SCREENSHOTS
(docs/screenshots for the README) or the test's own folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from earmark.cloud.portal.guard import COOKIE
from earmark.cloud.store.store import Store
from tests.integration.test_portal import portal, with_clips  # noqa: F401 - the fixture
from tests.support.cloudkit import SimDevice
from tests.support.portalserver import session_for

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[2]
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}


def axe_source() -> str:
    found = os.environ.get("EARMARK_AXE") or next(iter(sorted((ROOT / ".cache").glob("axe-core-*/axe.min.js"))), "")
    if not found or not Path(found).is_file():
        pytest.fail("axe-core is missing: run ./deploy/setup.sh")
    return Path(found).read_text()


def signed_in_context(browser: Any, base: str, token: str, **options: Any) -> Any:
    """A browser context holding the session's cookie, as a sign-in would leave it (set from
    the page: Playwright cannot add a __Host- cookie itself)."""
    context = browser.new_context(**options)
    page = context.new_page()
    page.goto(f"{base}/signin")
    page.evaluate(f"document.cookie = '{COOKIE}={token}; Path=/; Secure; SameSite=Strict'")
    page.close()
    return context


def stale_form(page: Any) -> None:
    """A form sent with a CSRF token from before the last sign-in."""
    page.evaluate("""() => { const f = document.createElement('form'); f.method = 'post';
        f.action = '/clips/x/delete'; const i = document.createElement('input'); i.name = 'csrf';
        i.value = 'from-another-session'; f.appendChild(i); document.body.appendChild(f); f.submit(); }""")
    page.wait_for_load_state()


@pytest.fixture
def signed_in(portal: tuple[str, Store]) -> Iterator[tuple[str, Store, str, str]]:  # noqa: F811
    """(base URL, store, a session cookie for Alice, a fresh invite link for Bob)."""
    base, store = portal
    alice, _ = with_clips(store, "Alice", 3)
    long_name = "a-device-whose-name-runs-on-and-on-for-sixty-three-characters-x"  # (63: it must wrap)
    store.registry.add_device(alice.owner_id, SimDevice(long_name, alice.owner_id).public_key, long_name)
    token, _ = session_for(store, alice.owner_id)
    bob = store.registry.add_owner("Bob").owner_id
    yield base, store, token, f"{base}/invite/{store.portal.invite(bob, 900)}"


PAGES: dict[str, tuple[bool, Callable[[Any, str, str], None]]] = {
    # name: (signed in, how to get there)
    "signin": (False, lambda page, base, invite: page.goto(f"{base}/signin")),
    "invite": (False, lambda page, base, invite: page.goto(invite)),
    "invite-used": (False, lambda page, base, invite: page.goto(f"{base}/invite/no-such-link")),
    "not-found": (False, lambda page, base, invite: page.goto(f"{base}/no/such/page")),
    "recordings": (True, lambda page, base, invite: page.goto(f"{base}/")),
    "household-key": (True, lambda page, base, invite: page.goto(f"{base}/household")),
    "devices": (True, lambda page, base, invite: page.goto(f"{base}/devices")),
    "export": (True, lambda page, base, invite: page.goto(f"{base}/export")),
    "export-link-used": (True, lambda page, base, invite: page.goto(f"{base}/export/download/used")),
    "access-log": (True, lambda page, base, invite: page.goto(f"{base}/access")),
    "erase": (True, lambda page, base, invite: page.goto(f"{base}/erase")),
    "stale-form": (True, lambda page, base, invite: (page.goto(f"{base}/"), stale_form(page))),
    "erased": (False, lambda page, base, invite: page.goto(f"{base}/erased")),
}


def test_every_page_passes_axe_and_fits_its_viewport_at_both_sizes(signed_in: tuple[str, Store, str, str],
                                                                   tmp_path: Path) -> None:
    base, _, token, invite = signed_in
    axe = axe_source()
    shots = Path(os.environ.get("EARMARK_SCREENSHOTS", tmp_path))
    found: dict[str, Any] = {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for size, (width, height) in SIZES.items():
            for name, (needs_session, reach) in PAGES.items():
                options = {"viewport": {"width": width, "height": height}, "timezone_id": "Europe/Berlin",
                           "locale": "en-GB"}
                context = (signed_in_context(browser, base, token, **options) if needs_session
                           else browser.new_context(**options))
                page = context.new_page()
                reach(page, base, invite)
                page.wait_for_load_state("networkidle")
                page.evaluate(axe)  # (through the DevTools protocol: the page's CSP allows no inline script)
                violations = page.evaluate("""async () => (await axe.run()).violations.map(
                    v => `${v.id} (${v.impact}): ${v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', ')}`)""")
                wide = page.evaluate("document.documentElement.scrollWidth")
                if violations or wide > width:
                    found[f"{name} at {size}"] = {"violations": violations, "width": wide}
                page.screenshot(path=str(shots / f"portal-{name}-{size}.png"), full_page=True)
                context.close()
        browser.close()
    assert found == {}, json.dumps(found, indent=1)


def test_times_are_shown_in_the_readers_own_zone(signed_in: tuple[str, Store, str, str]) -> None:
    """Issue 25 case 2: times were UTC only, also with the browser in Europe/Berlin."""
    base, _, token, _ = signed_in
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = signed_in_context(browser, base, token, timezone_id="Europe/Berlin", locale="en-GB")
        page = context.new_page()
        for path in ("/", "/devices", "/access"):
            page.goto(f"{base}{path}")
            times = page.query_selector_all("time[datetime]")
            assert times, path
            for shown in times:
                text = shown.inner_text()
                assert "CET" in text or "CEST" in text or "GMT+1" in text or "GMT+2" in text, (path, text)
        # A filter's days are Berlin's: the range's start in winter time, its end in summer time.
        page.goto(f"{base}/")
        page.fill("input[name=since]", "2026-03-29")
        page.fill("input[name=until]", "2026-03-29")
        with page.expect_navigation():
            page.click("form.filters button")
        assert "since_tz=-60" in page.url and "until_tz=-120" in page.url, page.url
        browser.close()


def tab_to(page: Any, selector: str, most: int = 200) -> int:
    """Press Tab until `selector` has the focus; how many presses it took."""
    for presses in range(1, most + 1):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement === document.querySelector({json.dumps(selector)})"):
            return presses
    raise AssertionError(f"{selector} was not reached in {most} presses of Tab")


def test_an_owner_deletes_a_recording_and_downloads_an_export_with_the_keyboard_alone(
        signed_in: tuple[str, Store, str, str]) -> None:
    """Issue 25 case 4: keyboard-only flows; 207 Tab presses reached "Older"."""
    base, _, token, _ = signed_in
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = signed_in_context(browser, base, token, viewport={"width": 390, "height": 844},
                                    accept_downloads=True)
        page = context.new_page()
        page.goto(f"{base}/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"  # the first stop
        page.keyboard.press("Enter")
        assert page.evaluate("location.hash") == "#main"
        first = page.get_attribute("tbody tr", "id")
        asked: list[str] = []
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        presses = tab_to(page, f"#{first} button.danger")
        assert presses <= 20, presses  # past the filters and the bulk buttons, not 25 players
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.query_selector(f"#{first}") is None
        assert asked and asked[0].startswith("Delete the recording from alice-pi, ")  # it says which
        page.goto(f"{base}/export")
        tab_to(page, "#prepare")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        try:
            page.wait_for_selector("#download", timeout=30_000)  # the live region followed it, then the link came
        except playwright.TimeoutError:
            raise AssertionError(page.inner_text("main")) from None
        tab_to(page, "#download")
        with page.expect_download() as download:
            page.keyboard.press("Enter")
        assert download.value.suggested_filename.endswith(".zip")
        browser.close()


def test_an_owner_filters_ticks_deletes_and_chooses_auto_delete_in_the_browser(
        signed_in: tuple[str, Store, str, str]) -> None:
    """Issue 25 case 3, in Chromium: the filter form, ticking and deleting, auto-delete."""
    base, store, token, _ = signed_in
    owner = next(o.owner_id for o in store.registry.owners() if o.display_name == "Alice")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = signed_in_context(browser, base, token).new_page()
        page.goto(f"{base}/")
        page.select_option("select[name=device]", "alice-pi")
        with page.expect_navigation():
            page.click("fieldset button")
        assert "device=alice-pi" in page.url and len(page.query_selector_all("tbody tr")) == 3
        ticked = [row.get_attribute("id") for row in page.query_selector_all("tbody tr")[:2]]
        for row in ticked:
            page.check(f"#{row} input[type=checkbox]")
        asked: list[str] = []

        def refuse(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", refuse)
        with page.expect_navigation():
            page.click("#bulk button[formaction='/clips/mark']")  # "Not meant for me": asks nothing
        assert asked == [] and store.clips.marks(owner) == {row.removeprefix("clip-"): "not_meant" for row in ticked}
        assert len(page.query_selector_all("tbody tr.marked")) == 2
        page.remove_listener("dialog", refuse)
        for row in ticked:
            page.check(f"#{row} input[type=checkbox]")
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            page.click("#bulk button.danger")
        assert [r.get_attribute("id") for r in page.query_selector_all("tbody tr")] == [
            row for row in [f"clip-{c.clip_id}" for c in store.clips.of_owner(owner)] if row not in ticked]
        assert store.clips.count(owner) == 1
        page.check("input[name=days][value='540']")
        with page.expect_navigation():
            page.click("section.retention button")
        assert store.registry.retention(owner) == 540
        assert "as you chose" in page.inner_text("section.retention")
        browser.close()
