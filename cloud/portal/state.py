"""What the portal's requests share, owned by one object (`PortalState`) and each part
guarded by its own lock, since handlers run on a thread pool and exports are built on
threads of their own: the passkey ceremonies in flight, the exports being built or waiting
for their one download, and the sign-in rate limit.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse

from earmark.cloud.broker.marks import MarksSender
from earmark.cloud.owner.statement import DataRequest
from earmark.cloud.settings import DataRequestSettings, PortalSettings
from earmark.cloud.store.blobs import PORTAL_EXPORTS, portal_export_dir
from earmark.cloud.store.store import Store

HERE = Path(__file__).resolve().parent  # (an editable install links files, not folders)
CEREMONY_S = 120  # a passkey prompt's challenge lives this long
SIGN_IN_LIMIT = (10, 60.0)  # ceremonies per client per this many seconds
DOWNLOAD_S = 600  # an export waits this long for its one download


@dataclass
class Ceremony:
    challenge: bytes
    started: float
    owner_id: str | None  # registration or erasure: whose
    token: str | None  # registration: the invite


class Ceremonies:
    """Passkey prompts in flight, each answerable once, for CEREMONY_S."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Ceremony] = {}

    def start(self, challenge: bytes, owner_id: str | None = None, token: str | None = None) -> str:
        now = time.monotonic()
        key = secrets.token_urlsafe(16)
        with self._lock:
            for old in [k for k, c in self._open.items() if now - c.started > CEREMONY_S]:
                del self._open[old]
            self._open[key] = Ceremony(challenge, now, owner_id, token)
        return key

    def take(self, key: object) -> Ceremony | None:
        with self._lock:
            ceremony = self._open.pop(str(key), None)
        return ceremony if ceremony is not None and time.monotonic() - ceremony.started <= CEREMONY_S else None


@dataclass
class Export:
    """One owner's export being built in the background, then waiting to be downloaded once.
    The builder thread sets done, total, path and error; pages only read them."""

    folder: Path
    done: int = 0
    total: int = 0
    path: Path | None = None
    error: str = ""
    token_sha256: str = ""
    ready_at: float = 0.0
    mark: int = 0  # the owner's audit mark when it was started: the data it holds (AuditLog.owner_mark)

    @property
    def running(self) -> bool:
        return self.path is None and not self.error

    @property
    def expired(self) -> bool:
        return self.path is not None and time.monotonic() - self.ready_at > DOWNLOAD_S


class Exports:
    """Each owner's export, at most one, in a folder named for the owner (so `erase`, in any
    process, removes it: store/blobs.py, portal_export_dir): nothing of anybody's waits on
    disk past its link's expiry (swept every SWEEP_S, visits or not), an erasure or a restart."""

    SWEEP_S = 30.0

    def __init__(self, data_dir: Path) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Export] = {}
        self.data_dir = data_dir
        self.folder = data_dir / PORTAL_EXPORTS
        shutil.rmtree(self.folder, ignore_errors=True)  # a restart forgets every undelivered export
        self._stop = threading.Event()
        threading.Thread(target=self._sweeper, daemon=True, name="portal-export-sweep").start()

    def _sweeper(self) -> None:
        while not self._stop.wait(self.SWEEP_S):
            self.sweep()

    def close(self) -> None:
        self._stop.set()
        for owner in list(self._jobs):
            self.forget(owner)

    def get(self, owner_id: str) -> Export | None:
        self.sweep()
        with self._lock:
            return self._jobs.get(owner_id)

    def start(self, owner_id: str, build: Callable[[Export], None], mark: int) -> Export:
        """The owner's export: the one running, the one built already if nothing of theirs
        changed since (`mark`, AuditLog.owner_mark; its download link is made anew), or else a
        new one built by `build` on a thread of its own. One per owner at a time."""
        with self._lock:
            job = self._jobs.get(owner_id)
            if job is not None and job.running:
                return job
            if job is not None and job.path is not None and not job.expired and job.mark == mark:
                job.token_sha256 = ""  # the page shows a new link for it; the one shown before stops working
                return job
            folder = portal_export_dir(self.data_dir, owner_id)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700, parents=True)
            self.folder.chmod(0o700)
            job = self._jobs[owner_id] = Export(folder, mark=mark)
        threading.Thread(target=build, args=(job,), daemon=True, name=f"export-{owner_id[:8]}").start()
        return job

    def take(self, owner_id: str) -> Export | None:
        """The owner's export, no longer kept (its download is on its way, or it is forgotten)."""
        with self._lock:
            return self._jobs.pop(owner_id, None)

    def forget(self, owner_id: str) -> None:
        job = self.take(owner_id)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def sweep(self) -> None:
        """Forget exports past their link's life, and those whose folder went (an erasure)."""
        with self._lock:
            expired = [owner for owner, job in self._jobs.items()
                       if job.expired or (not job.running and not job.folder.exists())]
        for owner in expired:
            self.forget(owner)


class RateLimit:
    """At most `count` attempts per client per `window` seconds (in this process)."""

    def __init__(self, count: int, window: float) -> None:
        self.count, self.window = count, window
        self._lock = threading.Lock()
        self._attempts: defaultdict[str, deque[float]] = defaultdict(deque)

    def exceeded(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = self._attempts[client]
            while recent and now - recent[0] > self.window:
                recent.popleft()
            recent.append(now)
            return len(recent) > self.count


def when(stamp: str | None) -> Markup:
    """A stored UTC time for a page: in UTC as written, and (portal.js) in the reader's own
    time zone, named, once the page has loaded."""
    if not stamp:
        return Markup("")
    shown = f"{stamp[:16].replace('T', ' ')} UTC"
    return Markup('<time datetime="{}" data-local>{}</time>').format(stamp, shown)


class PortalState:
    """The store, the settings, the templates and the shared parts above."""

    def __init__(self, store: Store, settings: PortalSettings, broker_reload: str = "",
                 retention_days: int = 0, data_request: DataRequestSettings | None = None) -> None:
        self.store, self.settings, self.broker_reload = store, settings, broker_reload
        # What exports say beside the copy, and the service's retention (cloud.toml), which `purge` enforces
        self.data_request = DataRequest(data_request or DataRequestSettings(), retention_days)
        url = urlsplit(settings.public_url)
        self.origin = f"{url.scheme}://{url.netloc}"
        self.rp_id = url.hostname or "localhost"
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())
        self.templates.globals["when"] = when
        self.ceremonies = Ceremonies()
        self.exports = Exports(store.data_dir)
        self.marks = MarksSender(store)  # the household's marks to their devices (broker/marks.py)
        self.sign_in_limit = RateLimit(*SIGN_IN_LIMIT)
        self.trusted_proxies = frozenset(a.strip() for a in settings.trusted_proxies.split(",") if a.strip())

    def page(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(name).render(**values), status_code=status)
