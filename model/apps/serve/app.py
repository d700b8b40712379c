"""The routes (GET /, POST /classify, GET /health, GET /labels) around a loaded
Classifier, and `serve`, which runs them under uvicorn."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.requests import ClientDisconnect

from yt8m.cli_util import top_k_problem
from yt8m.errors import RejectedInput

from ..inference import Classifier
from .batcher import Batcher, _Job
from .guard import HTTPProblem, ServeSettings, authorized, probe_limits, resolve_token, upload_folder
from .upload import FIELD, receive_upload


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


@dataclass
class _ClassifyRoute:
    """POST /classify: what every request is checked against and handed to."""
    settings: ServeSettings
    batcher: Batcher
    classifier: Classifier
    upload_dir: str

    async def __call__(self, request: Request, segments: bool, top_k: int | None):
        top_k = self.settings.top_k if top_k is None else top_k
        refused = self._refusal(segments, top_k)
        if refused is not None:
            return refused
        try:
            path, name = await receive_upload(request, self.upload_dir,
                                              self.settings.max_upload_bytes,
                                              self.settings.body_timeout_s)
        except HTTPProblem as e:
            return _problem(e.status, e.message, e.headers)
        except ClientDisconnect:  # the client went away mid-upload; its file is already gone
            return _problem(400, "client disconnected during the upload")
        try:
            header = await asyncio.to_thread(probe_limits, path, name, self.settings)
            job = self.batcher.submit(path, name, top_k, segments, header.pixels)
        except HTTPProblem as e:
            if os.path.exists(path):
                os.remove(path)
            return _problem(e.status, e.message, e.headers)
        return await self._answer(job)

    def _refusal(self, segments: bool, top_k: int) -> JSONResponse | None:
        """What is refused before the body is read: cheap, and nothing is stored."""
        loaded = self.classifier.loaded
        if why := top_k_problem(top_k, "top_k"):
            return _problem(400, why)
        if segments and loaded.video_level:
            return _problem(422, f"segments need a frame-level model; this one is the "
                                 f"video-level {loaded.config.name!r}")
        if self.batcher.full():
            return _problem(503, "the server is busy: too many clips are waiting; try again "
                                 "shortly", {"Retry-After": "5"})
        return None

    async def _answer(self, job: _Job):
        timeout_s = self.settings.timeout_s
        try:
            got = await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except asyncio.TimeoutError:
            job.cancel.set()  # its work stops within one backbone batch; the next clips go on
            job.future.cancel()
            return _problem(504, f"no answer within {timeout_s:g} s; try a shorter clip "
                                 "or start the server with a larger --timeout-s")
        except Exception as e:  # noqa: BLE001 - unexpected: say what, keep serving
            return _problem(500, f"classification failed: {type(e).__name__}: {e}")
        if isinstance(got, RejectedInput):
            return _problem(422, f"{job.name}: {got.reason}")
        return got.to_json()


def _health(classifier: Classifier, batcher: Batcher, upload_dir: str) -> dict:
    loaded, stats = classifier.loaded, batcher.stats
    # The model folder's name only: a path would tell clients about this machine.
    model_name = os.path.basename(os.path.dirname(loaded.path)) or "model"
    return {"status": "ok", "model": model_name, "architecture": loaded.config.name,
            "classes": len(loaded.vocabulary), "vocabulary": loaded.vocabulary.name,
            "random_weights": classifier.random_weights,
            "uploads_in_flight": len(os.listdir(upload_dir)),
            "queued": batcher.queued(), "pixels_in_flight": batcher.pixels_in_flight,
            "batches": stats.batches,
            "cancelled": stats.cancelled, "frames_after_cancel": stats.frames_after_cancel,
            "backbone_batch": classifier.extractor.batch_size}


def _labels(vocabulary) -> dict:
    return {"vocabulary": vocabulary.name,
            "labels": [{"id": i, "name": vocabulary.name_of(i)} for i in range(len(vocabulary))]}


def create_app(classifier: Classifier, settings: ServeSettings | None = None):
    """The FastAPI app around a loaded Classifier (model + extractor)."""
    settings = settings or ServeSettings()
    token = resolve_token(settings)
    batcher = Batcher(classifier, settings.max_batch, settings.batch_wait_s, settings.max_queue,
                      settings.max_pixels_in_flight)
    # The decoder allocates no frame over the limit either: a stream whose frames grow
    # past it mid-way fails before the memory is taken.
    classifier.extractor.config = dataclasses.replace(classifier.extractor.config,
                                                      max_pixels=settings.max_pixels)
    upload_dir, own_dir = upload_folder(settings.temp_dir)
    loaded = classifier.loaded

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            if own_dir:
                shutil.rmtree(upload_dir, ignore_errors=True)

    app = FastAPI(title="YouTube-8M video classifier", lifespan=lifespan,
                  description="POST a video to /classify (multipart field `video`).")
    app.state.upload_dir, app.state.batcher = upload_dir, batcher

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        # The page itself is open (it holds nothing); everything else needs the token.
        if token is None or request.url.path == "/" or authorized(
                request.headers.get("authorization"), token):
            return await call_next(request)
        return _problem(401, "this server needs a token: send `Authorization: Bearer TOKEN`",
                        {"WWW-Authenticate": "Bearer"})

    page = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return _health(classifier, batcher, upload_dir)

    @app.get("/labels")
    async def labels() -> dict:
        return _labels(loaded.vocabulary)

    route = _ClassifyRoute(settings, batcher, classifier, upload_dir)

    @app.post("/classify", openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [FIELD], "properties": {
            FIELD: {"type": "string", "format": "binary"}}}}}}})
    async def classify(request: Request, segments: bool = False, top_k: int | None = None):
        return await route(request, segments, top_k)

    return app


def serve(classifier: Classifier, settings: ServeSettings) -> None:
    """Run the app under uvicorn until interrupted."""
    import uvicorn

    app = create_app(classifier, settings)
    guarded = "; requests need the token (Authorization: Bearer ...)" \
        if resolve_token(settings) else ""
    print(f"serving {classifier.loaded.path} on http://{settings.host}:{settings.port} "
          f"(GET / in a browser, POST /classify, GET /health, GET /labels; uploads in "
          f"{app.state.upload_dir}){guarded}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port,
                log_level="warning" if settings.quiet else "info",
                limit_concurrency=settings.max_connections,
                timeout_keep_alive=settings.idle_timeout_s)
