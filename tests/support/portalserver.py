"""The owners' portal served for a test as `earmark-cloud portal` serves it (uvicorn with the
portal's own server_config), on a free port of localhost, in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import uvicorn

from earmark.cloud.portal.app import create_app, server_config
from earmark.cloud.portal.state import PortalState
from earmark.cloud.settings import PortalSettings
from earmark.cloud.store.portal import Passkey
from earmark.cloud.store.store import Store
from tests.support.broker import free_port


@contextmanager
def served(store: Store, **settings: Any) -> Iterator[tuple[str, PortalState]]:
    """(the portal's base URL, its state) while it runs; `settings`: PortalSettings fields."""
    port = free_port()
    chosen = replace(PortalSettings(), public_url=f"http://localhost:{port}", port=port, **settings)
    app = create_app(store, chosen)
    server = uvicorn.Server(server_config(app, chosen, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the portal did not start"
    try:
        yield chosen.public_url, app.state.portal
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.portal.marks.close()


def session_for(store: Store, owner_id: str) -> tuple[str, str]:
    """A signed-in session for the owner, as a passkey sign-in leaves it (its passkey made
    through an invite of theirs): (cookie token, CSRF token)."""
    passkey = Passkey(f"soft-{owner_id[:8]}", owner_id, b"key", 0)
    assert store.portal.register(store.portal.invite(owner_id, 900), passkey)
    token, session = store.portal.sign_in(passkey, 1, "127.0.0.1")
    return token, session.csrf
