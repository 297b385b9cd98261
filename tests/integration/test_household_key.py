"""The household key in a real browser (issue 34): Debian's Chromium driven by Playwright,
Chromium's virtual authenticator with PRF standing in for each member's passkey. Alice makes
her household's key in the page (the server gets its public recipient and two wraps it cannot
open); a clip her device sealed to it plays in the page, decrypted there; a second member's
browser asks to join and is given the key by Alice's, once both compared its fingerprint, and
then opens the clip with its own passkey; a browser whose passkey cannot unwrap the key opens
it with the recovery code, for that session only; a wrong code is refused and changes nothing;
a household key kept as a file opens them too; removing the second member makes a new key
that they never get, and the clip sealed to it opens for Alice and not for them."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest
from pyrage import x25519

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.store.store import Store
from earmark.wire.envelope import AGE_MAGIC, decode_envelope
from tests.support.cloudkit import enrolled_device
from tests.support.portalserver import served

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (deploy/setup.sh)")


@pytest.fixture
def portal(store: Store) -> Iterator[tuple[str, Store]]:
    with served(store) as (url, _):
        yield url, store


def member(browser: Any, prf: bool = True) -> Any:
    """A browser context whose page has its own virtual passkey authenticator."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True, "hasPrf": prf}})
    return page


def register(page: Any, base: str, link: str) -> None:
    page.goto(link)
    page.click("#register")
    page.wait_for_url(f"{base}/", timeout=15_000)


def wait_js(page: Any, expression: str, timeout: float = 30) -> None:
    """Until `expression` is true in the page. (Playwright's wait_for_function polls with eval,
    which the portal's CSP refuses: polled from here instead.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true in {timeout} s: {expression}")
        time.sleep(0.1)


def play(page: Any) -> dict[str, Any]:
    """Ask the first player for its recording; wait until it has a duration (or the page says
    why not). Returns what the page decoded."""
    page.evaluate("document.querySelector('audio').load()")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = page.evaluate("(() => { const a = document.querySelector('audio'); return {ready: a.readyState, "
                              "duration: a.duration, bytes: a.dataset.decodedBytes, ms: a.dataset.decryptMs, "
                              "status: document.getElementById('status').textContent}; })()")
        if state["ready"] >= 1 and state["bytes"]:
            return state
        if page.is_visible("#unlock") or "This recording does not open" in state["status"]:
            return state
        time.sleep(0.1)
    raise AssertionError(f"the recording did not open: {state}")


def test_a_household_key_made_in_the_page_opens_sealed_clips_there_and_nowhere_else(
        portal: tuple[str, Store], tmp_path: Path) -> None:
    base, store = portal
    shots = Path(os.environ.get("EARMARK_SCREENSHOTS", tmp_path))
    alice = enrolled_device(store, "Alice")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = member(browser)
        register(page, base, f"{base}/invite/{store.portal.invite(alice.owner_id, 900)}")
        assert page.is_visible("a[href='/household']")
        page.goto(f"{base}/household")
        page.click("#make-key")
        page.wait_for_selector("#made:not([hidden])", timeout=30_000)
        code = page.text_content("#recovery-code")
        fingerprint = page.text_content("#fingerprint")
        page.screenshot(path=str(shots / "portal-household-key.png"), full_page=True)
        with page.expect_download() as saved:
            page.click("#save-key")
        key_path = tmp_path / "household-key.txt"
        saved.value.save_as(key_path)
        key_file = key_path.read_text()

        # The server holds the public recipient and wraps it cannot open, nothing else: the
        # household identity to her member key and to the code, her member key under her passkey.
        [recipient] = store.registry.household_recipients(alice.owner_id)
        wraps = store.household.wraps(alice.owner_id)
        [own] = store.household.joins(alice.owner_id)
        assert sorted(w.kind for w in wraps) == ["member", "recovery"] and own.confirmed_at
        assert all(w.wrapped.startswith(AGE_MAGIC) and b"AGE-SECRET-KEY" not in w.wrapped for w in wraps)
        assert b"fido2prf" in own.member_wrap and b"AGE-SECRET-KEY" not in own.member_wrap
        assert f"public key: {recipient}" in key_file and "AGE-SECRET-KEY-1" in key_file
        assert code is not None and len(code) == 35 and fingerprint

        # Her device, paired again, seals a 2 s clip to the key; the page opens and plays it.
        envelope = alice.clip(b"ALICE", seconds=2.0, sealed_to=(recipient,))
        assert Ingestor(store).handle(alice.topic, envelope).status == "stored"
        page.goto(f"{base}/")
        assert not page.is_visible(".notice")  # no "make your key" notice any more
        heard = play(page)
        assert heard["bytes"] == str(44 + 2 * 16000 * 2) and abs(heard["duration"] - 2.0) < 0.05, heard
        served_bytes = page.evaluate("fetch(document.querySelector('audio').dataset.src)"
                                     ".then(r => r.arrayBuffer()).then(b => new Uint8Array(b).slice(0, 21))"
                                     ".then(a => String.fromCharCode(...a))")
        assert served_bytes == "age-encryption.org/v1"  # what the server sends is the ciphertext

        # A second member, with a passkey of their own: their browser asks to join; Alice compares
        # the fingerprint and gives them the key from hers; then their passkey alone opens the clip.
        second = member(browser)
        register(second, base, f"{base}/invite/{store.portal.invite(alice.owner_id, 900)}")
        second.goto(f"{base}/household")
        second.click("#ask-join")
        second.wait_for_selector("#join-asked:not([hidden])", timeout=30_000)
        theirs = second.text_content("#join-fingerprint")
        page.goto(f"{base}/household")
        assert page.text_content(".joins .fingerprint") == theirs
        page.click("button.confirm-join")
        page.wait_for_selector(".joins li:has-text('Given')", timeout=30_000)
        [join] = [j for j in store.household.joins(alice.owner_id) if j.join_id != own.join_id]
        assert join.confirmed_at and any(w.kind == "member" and w.join_id == join.join_id
                                         for w in store.household.wraps(alice.owner_id))
        second.goto(f"{base}/")
        assert play(second)["bytes"] == str(44 + 2 * 16000 * 2)
        page.screenshot(path=str(shots / "portal-household-members.png"), full_page=True)

        # Another browser, whose passkey (no PRF) cannot unwrap the key: the recovery code opens
        # it, for that session; a wrong code does not.
        other = member(browser, prf=False)
        register(other, base, f"{base}/invite/{store.portal.invite(alice.owner_id, 900)}")
        assert play(other)["bytes"] is None and other.is_visible("#unlock")
        other.fill("#unlock input[name=code]", "WRONG-CODE0-00000-00000-00000-00000")
        other.click("#unlock button")
        wait_js(other, "document.getElementById('status').textContent.includes('does not open')")
        heard = play(other)
        assert other.is_visible("#unlock")
        other.fill("#unlock input[name=code]", code.lower())
        other.click("#unlock button")
        deadline = time.monotonic() + 30
        while not heard.get("bytes") and time.monotonic() < deadline:
            time.sleep(0.2)
            heard = other.evaluate("(() => { const a = document.querySelector('audio'); "
                                   "return {bytes: a.dataset.decodedBytes, duration: a.duration}; })()")
        assert heard["bytes"] == str(44 + 2 * 16000 * 2), heard
        other.screenshot(path=str(shots / "portal-sealed-recording.png"), full_page=True)

        # A household that keeps its key as a file (age-keygen's, or the one saved above) opens it so.
        third = member(browser, prf=False)
        register(third, base, f"{base}/invite/{store.portal.invite(alice.owner_id, 900)}")
        assert play(third)["bytes"] is None and third.is_visible("#unlock")
        third.screenshot(path=str(shots / "portal-unlock.png"), full_page=True)
        third.set_input_files("#unlock input[name=keyfile]", str(key_path))
        third.click("#unlock button")
        wait_js(third, "Boolean(document.querySelector('audio').dataset.decodedBytes)")

        # Alice removes the second member: a new key, which they never get; her devices, paired
        # again, seal to it; she hears the new clip and the old; they hear the old one only.
        page.goto(f"{base}/household")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f"button.remove-member[data-join='{join.join_id}']")
        page.wait_for_selector("#made:not([hidden])", timeout=30_000)
        [newer] = store.registry.household_recipients(alice.owner_id)
        assert newer != recipient and [j.join_id for j in store.household.joins(alice.owner_id)] == [own.join_id]
        later = alice.clip(b"ALICE", seconds=1.0, sealed_to=(newer,))
        assert Ingestor(store).handle(alice.topic, later).status == "stored"
        page.goto(f"{base}/")
        assert play(page)["bytes"] == str(44 + 16000 * 2)  # the newest clip, sealed to the new key
        second.goto(f"{base}/")
        refused = play(second)
        assert refused["bytes"] is None and "does not open with your household key" in refused["status"]

        # Alice keeps both keys as one file: it opens the old clip and the new one with age.
        page.goto(f"{base}/household")
        with page.expect_download() as saved:
            page.click("#export-key")
        both = tmp_path / "both-keys.txt"
        saved.value.save_as(both)
        identities = [x25519.Identity.from_str(line) for line in both.read_text().splitlines()
                      if line.startswith("AGE-SECRET-KEY-1")]
        assert len(identities) == 2
        for sealed in (envelope, later):
            assert pyrage.decrypt(bytes(decode_envelope(sealed).audio), identities).startswith(b"RIFF")
        browser.close()
    assert base64.b64encode(b"ALICE")  # (the clip's canary never appears in what the server keeps)
    assert all(b"ALICE" not in w.wrapped for w in wraps)
