"""The FastAPI application of ``momentlens serve``: one page, a JSON API, CAM media.

Routes: ``GET /`` the page (``static/index.html``, plain HTML/JS/CSS), ``POST
/api/predict`` (multipart ``file``) every run's top-k, CAM media URLs and timeline,
``GET /api/models``, ``GET /healthz``, ``GET /media/{request}/{name}``, and FastAPI's
``/openapi.json`` and ``/docs``.

Load and disk (module :mod:`momentlens.serve.upload` for the upload itself):

* the runs are loaded once, by the caller, and shared by all requests;
* at most ``workers`` uploads are scored at once (an asyncio semaphore; scoring runs in
  a thread); at most ``queue`` more wait; beyond that the answer is 503 with
  ``Retry-After`` before any byte of the body is read;
* each request gets a private folder (:func:`tempfile.mkdtemp`, 0700) under the
  server's own; the upload is deleted right after scoring and its media stay there
  under random names until they are ``media_ttl_s`` old or more than
  ``max_media_dirs`` requests are newer; the server's folder goes at shutdown.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route functions'
# annotations (``Request``, imported lazily) at run time.
import asyncio
import logging
import re
import shutil
import tempfile
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from momentlens.engine.predictor import Classifier
from momentlens.serve.score import Settings, describe_run, score_upload
from momentlens.serve.upload import FIELD, UPLOAD_FILE, UploadError, probe, receive

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_MEDIA = re.compile(r"^[A-Za-z0-9_-]{8,64}\.(gif|png|mp4)$")
_TYPES = {"gif": "image/gif", "png": "image/png", "mp4": "video/mp4"}
RETRY_AFTER_S = 5

_OPENAPI_UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": [FIELD],
               "properties": {FIELD: {"type": "string", "format": "binary"}}}}}}}


class Workspace:
    """The server's private folder and one folder per request (module doc)."""

    def __init__(self, ttl_s: float, max_dirs: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="momentlens-serve-"))
        self.ttl_s, self.max_dirs = ttl_s, max_dirs

    def new(self) -> Path:
        self.prune()
        return Path(tempfile.mkdtemp(dir=self.root, prefix=""))

    def prune(self) -> None:
        """Remove request folders past their time, then the oldest beyond the count."""
        dirs = sorted((p for p in self.root.iterdir() if p.is_dir()),
                      key=lambda p: p.stat().st_mtime)
        now = time.time()
        old = [p for p in dirs if now - p.stat().st_mtime > self.ttl_s]
        extra = dirs[:max(0, len(dirs) - self.max_dirs)]
        for p in {*old, *extra}:
            shutil.rmtree(p, ignore_errors=True)

    def media(self, request_id: str, name: str) -> Path | None:
        """The file ``name`` of request ``request_id``, or ``None`` (never a path
        outside that request's folder: both parts must be plain random tokens)."""
        if not _TOKEN.match(request_id) or not _MEDIA.match(name):
            return None
        path = self.root / request_id / name
        return path if path.is_file() else None

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Gate:
    """At most ``workers`` requests scored at once and ``queue`` waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        self.limit, self.pending = workers + queue, 0
        self.slots = asyncio.Semaphore(workers)

    def admit(self) -> bool:
        if self.pending >= self.limit:
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        self.pending -= 1


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _internal_error(request: Any, exc: Exception) -> Any:
    """A bug, not a bad upload: logged with its traceback, answered as one JSON line."""
    log.error("internal error on %s", request.url.path, exc_info=exc)
    return _error(500, f"internal error: {type(exc).__name__}")


def _with_urls(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    for run in result["runs"]:
        run["media"] = {k: f"/media/{request_id}/{v}" for k, v in run["media"].items()}
    return result


async def _predict(request: Any, runs: dict[str, Classifier], settings: Settings,
                   space: Workspace, gate: Gate) -> Any:
    from starlette.concurrency import run_in_threadpool

    if not gate.admit():
        return _error(503, f"busy: {gate.pending} uploads in progress; try again shortly",
                      {"Retry-After": str(RETRY_AFTER_S)})
    folder = space.new()
    video = folder / UPLOAD_FILE
    ok = False
    try:
        name, _ = await receive(request, video, settings.max_bytes)
        async with gate.slots:
            duration = await run_in_threadpool(probe, video, name, settings.max_seconds)
            result = await run_in_threadpool(score_upload, runs, video, folder, name,
                                             duration, settings)
        ok = True
        return _with_urls(result, folder.name)
    except UploadError as exc:
        return _error(exc.status, exc.message)
    finally:
        video.unlink(missing_ok=True)
        gate.leave()
        if not ok:
            shutil.rmtree(folder, ignore_errors=True)


def create_app(runs: dict[str, Classifier], settings: Settings | None = None) -> Any:
    """The FastAPI app serving ``runs`` (``{name: loaded Classifier}``, loaded once)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse

    settings = settings or Settings()
    space = Workspace(settings.media_ttl_s, settings.max_media_dirs)
    page = resources.files("momentlens.serve").joinpath("static/index.html").read_text("utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.gate = Gate(settings.workers, settings.queue)
        yield
        space.close()

    app = FastAPI(title="momentlens", lifespan=lifespan,
                  description="Classify a video with trained momentlens runs side by side.")
    app.state.workspace = space
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        return {"runs": [describe_run(n, c) for n, c in runs.items()],
                "limits": {"max_upload_mb": settings.max_upload_mb,
                           "max_seconds": settings.max_seconds, "workers": settings.workers,
                           "window_s": settings.window_s, "stride_s": settings.stride_s}}

    @app.post("/api/predict", openapi_extra=_OPENAPI_UPLOAD)
    async def predict(request: Request) -> Any:
        """Upload a video as multipart field ``file``; every run's top-k (as
        ``momentlens predict --json``), CAM media URLs and, for a video longer than one
        window, the timeline. Errors: ``{"error": "one line"}`` with a 4xx status."""
        return await _predict(request, runs, settings, space, app.state.gate)

    @app.get("/media/{request_id}/{name}", include_in_schema=False)
    async def media(request_id: str, name: str) -> Any:
        path = space.media(request_id, name)
        if path is None:
            return _error(404, "no such media")
        return FileResponse(path, media_type=_TYPES[path.suffix[1:]])

    return app
