"""Download all your data: the same fail-closed export as `earmark-cloud export` (encrypted to
the owner's age recipient when they registered one), built in the background in a process of
its own at a lower priority, on a Store of its own, then offered through a link shown once
that works once, for DOWNLOAD_S; the file is deleted once sent, and forgotten at expiry,
erasure and restart."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import shutil
import subprocess
import time
from multiprocessing.connection import Connection
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from earmark.cloud.owner.export import export_owner
from earmark.cloud.owner.signing import known_keys
from earmark.cloud.owner.statement import DataRequest
from earmark.cloud.portal.guard import Call, OwnerRoute
from earmark.cloud.portal.state import DOWNLOAD_S, Export, PortalState
from earmark.cloud.settings import S3Settings
from earmark.cloud.store.portal import token_sha256
from earmark.cloud.store.store import Store
from earmark.wire.errors import EarmarkError

log = logging.getLogger(__name__)


EXPORT_NICE = 10  # the export's process yields the cores to the pages it would otherwise slow


def build(state: PortalState, owner_id: str, job: Export) -> None:
    """The export, in a process of its own at a lower priority (its zip, hashing and age
    encryption must not take the pages' turn at the interpreter or the cores), with a Store
    of its own; this thread follows its progress. The page shows how far it got."""
    store = state.store
    context = multiprocessing.get_context("spawn")
    progress, sender = context.Pipe(duplex=False)
    worker = context.Process(target=_build_in_child, name=f"export-{owner_id[:8]}", daemon=True, args=(
        sender, store.data_dir, store.master_key_path, store.database_url, store.blob_store, store.s3, owner_id,
        job.folder, state.data_request))
    worker.start()
    sender.close()
    answer: tuple[str, object] = ("error", "the export stopped without an answer; nothing was sent")
    try:
        while True:
            try:
                message = progress.recv()
            except EOFError:
                break
            if message[0] == "progress":
                job.done, job.total = message[1]
            else:
                answer = message
                break
    finally:
        worker.join(timeout=30)
    if answer[0] == "done":
        job.ready_at, job.path = time.monotonic(), Path(str(answer[1]))
    else:
        job.error = str(answer[1])


def _build_in_child(sender: Connection, data_dir: Path, master_key_path: Path, database_url: str, blob_store: str,
                    s3: S3Settings | None, owner_id: str, folder: Path, request: DataRequest) -> None:
    """In the export's own process: build it, and say how far it got and how it ended."""
    with contextlib.suppress(OSError):
        os.nice(EXPORT_NICE)
    with contextlib.suppress(OSError):  # and the disk: the idle I/O class (util-linux's ionice, where there is one)
        subprocess.run(["ionice", "-c", "3", "-p", str(os.getpid())], check=False, capture_output=True)
    try:
        with Store(data_dir, master_key_path, database_url=database_url, blob_store=blob_store, s3=s3) as store:
            result = export_owner(store, owner_id, folder, progress=lambda done, total: sender.send(
                ("progress", (done, total))), request=request)
            owner = store.registry.owner(owner_id)
            if owner is None or owner.erased_at:  # erased while it was being built: it goes too
                shutil.rmtree(folder, ignore_errors=True)
                sender.send(("error", "the owner was erased"))
                return
            sender.send(("done", str(result.path)))
    except EarmarkError as exc:
        sender.send(("error", str(exc)))
    except Exception as exc:  # the page says it failed; the log says why
        log.exception("a portal export failed")
        sender.send(("error", f"the export failed ({type(exc).__name__}); nothing was sent"))
    finally:
        sender.close()


def export(call: Call) -> Response:
    store, owner_id = call.state.store, call.owner_id
    job = call.state.exports.get(owner_id)
    token = ""
    if job is not None and job.path is not None and not job.token_sha256:
        token = secrets.token_urlsafe(32)  # shown once, on the page that announces it
        job.token_sha256 = token_sha256(token)
    return call.page("export.html", job=job, token=token, minutes=DOWNLOAD_S // 60,
                     encrypted=bool(store.registry.recipient(owner_id)), keys=known_keys(store))


def status(call: Call) -> Response:
    """How far the export got, for the page's live region (portal.js polls it)."""
    job = call.state.exports.get(call.owner_id)
    return JSONResponse({"running": bool(job and job.running), "done": job.done if job else 0,
                         "total": job.total if job else 0})


# An export's own events: they do not make the export it announces stale.
EXPORT_EVENTS = ("export_completed", "export_aborted", "portal_export_downloaded")


def start(call: Call) -> Response:
    owner_id = call.owner_id
    mark = call.state.store.audit.owner_mark(owner_id, EXPORT_EVENTS)
    call.state.exports.start(owner_id, lambda job: build(call.state, owner_id, job), mark)
    return RedirectResponse("/export", 303)


def download(call: Call) -> Response:
    exports = call.state.exports
    job = exports.get(call.owner_id)
    given = token_sha256(call.param("token"))
    if (job is None or job.path is None or not job.token_sha256
            or not secrets.compare_digest(given, job.token_sha256)):  # the owner's own link, used or old: no audit
        return call.message(404, "This link does not work any more",
                            "A download link works once, for a limited time, and only for the export it came with. "
                            "Prepare your export again for a new one.", back="/export", back_label="Your export")
    exports.take(call.owner_id)  # single use: gone once this response is sent
    call.state.store.audit.record("portal_export_downloaded", owner_id=call.owner_id, detail={"file": job.path.name})
    return FileResponse(job.path, filename=job.path.name, media_type="application/octet-stream",
                        background=BackgroundTask(shutil.rmtree, job.folder, ignore_errors=True))


def routes(state: PortalState) -> list[Route]:
    return [
        OwnerRoute(state, "/export", export),
        OwnerRoute(state, "/export", start, ("POST",)),
        OwnerRoute(state, "/export/status", status, page=False),
        OwnerRoute(state, "/export/download/{token}", download, page=False),
    ]
