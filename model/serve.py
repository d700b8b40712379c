"""`python pipeline.py serve`: the classifier over HTTP (FastAPI on uvicorn).

    GET  /           a page to try it in a browser: pick or drop a clip, see its labels
                     (and a timeline of 5-second segments); self-contained, works offline
    POST /classify   multipart/form-data with the field `video` -> the clip's object of
                     `classify --json`: {"video", "labels": [{"id", "name", "score"}],
                     "random_weights"}; query `segments=1` adds "segments", `top_k=N`
                     sets the number of labels (default: the server's --top-k)
    GET  /health     {"status": "ok", model, classes, random_weights, uploads_in_flight}
    GET  /labels     the model's vocabulary

    curl -F video=@clip.mp4 http://127.0.0.1:8000/classify

The model and the backbones are loaded once. Uploads are streamed to a file in
this server's own temporary folder (decoders want a file), counting bytes as
they arrive, so an oversized body is refused (413) without being stored. A
`Batcher` gathers concurrent requests (up to `max_batch`, waiting at most
`batch_wait_s` after the first) and runs extraction + model for the whole batch
in one worker thread, so the event loop keeps accepting requests meanwhile.
Every upload file is removed by whoever holds it last: the request handler
until the job is queued, the worker after that; the folder goes at shutdown.

Errors: 400 malformed request (not multipart, no `video` field, empty body or
file), 413 too large, 422 not a decodable video (with the decoder's reason),
504 no answer within `timeout_s`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.requests import ClientDisconnect

from extract.extractor import Cancellation
from yt8m.cli_util import top_k_problem
from yt8m.errors import RejectedInput

from .inference import Classifier, ClipResult
from .serve_guard import (HTTPProblem, ServeSettings, authorized, probe_limits, resolve_token,
                          upload_folder)

FIELD = "video"

# --------------------------------------------------------------------------- batching

@dataclass
class _Job:
    path: str
    name: str
    future: asyncio.Future
    top_k: int
    segments: bool
    pixels: int = 0  # its frame size, counted against the server's pixel budget
    cancel: Cancellation = field(default_factory=Cancellation)  # set when it timed out


@dataclass
class BatcherStats:
    """Counters for /health (and the tests that check the work a timeout saves)."""

    batches: int = 0
    cancelled: int = 0  # requests whose work was cancelled (they timed out)
    frames_after_cancel: int = 0  # Inception frames that still ran for them after that


@dataclass
class Batcher:
    """Concurrent requests -> batches run in one worker thread; results resolve futures.

    Admission: at most `max_queue` requests wait, and the frame sizes of all requests in
    flight (waiting or running) add up to at most `max_pixels_in_flight` (a single clip
    is always admitted when nothing else is in flight); beyond either, 503."""

    classifier: Classifier
    max_batch: int = 8
    batch_wait_s: float = 0.01
    max_queue: int = 32
    max_pixels_in_flight: int = ServeSettings.max_pixels_in_flight
    stats: BatcherStats = field(default_factory=BatcherStats)
    pixels_in_flight: int = 0
    _queue: asyncio.Queue | None = field(default=None, repr=False)
    _task: asyncio.Task | None = field(default=None, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        # One thread: the backbones and the model are used by one batch at a time.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="classify")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue and not self._queue.empty():
            _discard(self._queue.get_nowait())
        if self._pool:
            self._pool.shutdown(wait=True)

    def full(self) -> bool:
        return self._queue is not None and self._queue.full()

    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def submit(self, path: str, name: str, top_k: int, segments: bool, pixels: int = 0) -> _Job:
        """Queue an upload (HTTPProblem 503 when the queue or the pixel budget is full);
        from now on the batcher removes its file."""
        job = _Job(path, name, asyncio.get_running_loop().create_future(), top_k, segments, pixels)
        if self.pixels_in_flight and self.pixels_in_flight + pixels > self.max_pixels_in_flight:
            _discard(job)
            raise HTTPProblem(503, "the server is busy: the clips in flight already hold its "
                                   "pixel budget (--max-pixels-in-flight); try again shortly",
                              {"Retry-After": "5"})
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            _discard(job)
            raise HTTPProblem(503, "the server is busy: too many clips are waiting; try again "
                                   "shortly", {"Retry-After": "5"}) from None
        self.pixels_in_flight += pixels
        return job

    def _finished(self, jobs: list[_Job]) -> None:
        """Jobs whose work is over (answered, failed or dropped): their pixels are free and
        a cancelled one's late work is counted."""
        for job in jobs:
            self.pixels_in_flight -= job.pixels
            if job.cancel.is_set():
                self.stats.cancelled += 1
                self.stats.frames_after_cancel += job.cancel.late_frames

    async def _next_batch(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        deadline = time.monotonic() + self.batch_wait_s
        while len(jobs) < self.max_batch:
            if not self._queue.empty():  # queued while the previous batch ran: take them now
                jobs.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return jobs

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            live = [job for job in jobs if not job.future.done() and not job.cancel.is_set()]
            dead = [job for job in jobs if job not in live]
            for job in dead:  # requests that timed out meanwhile: skip their work
                _discard(job)
            self._finished(dead)
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._pool, self._run, live)
            except Exception as e:  # noqa: BLE001 - an unexpected failure answers its requests
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            finally:
                self._finished(live)
            self.stats.batches += 1
            for job in live:
                if not job.future.done():
                    job.future.set_result(results.get(job.path,
                                                      RejectedInput(job.name, "no result")))

    def _run(self, jobs: list[_Job]) -> dict[str, ClipResult | RejectedInput]:
        """In the worker thread: extraction + model for the whole batch; files removed."""
        paths = [j.path for j in jobs]
        # One pass for the batch with the most any request asked for; each gets its share.
        options = dataclasses.replace(self.classifier.options, top_k=max(j.top_k for j in jobs),
                                      segments=any(j.segments for j in jobs))
        try:
            outputs = list(self.classifier.classify(paths, [j.name for j in jobs], options,
                                                    [j.cancel for j in jobs]))
            return {job.path: _trim(got, job) for job, (_, got) in zip(jobs, outputs)}
        finally:
            for job in jobs:
                _discard(job)


def _trim(got: ClipResult | RejectedInput, job: _Job) -> ClipResult | RejectedInput:
    if isinstance(got, RejectedInput):
        return got
    segments = None
    if job.segments and got.segments is not None:
        segments = [dict(s, labels=s["labels"][:job.top_k]) for s in got.segments]
    return dataclasses.replace(got, labels=got.labels[:job.top_k], segments=segments)


def _discard(job: _Job) -> None:
    try:
        os.remove(job.path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- upload parsing

_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


async def receive_upload(request: Request, upload_dir: str, max_bytes: int,
                         body_timeout_s: float = 30.0) -> tuple[str, str]:
    """Stream the multipart field `video` into a new file of upload_dir -> (path, filename).

    HTTPProblem for anything else than one non-empty `video` file under max_bytes;
    no file is left behind when it raises.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise HTTPProblem(400, f"send the clip as multipart/form-data in the field `{FIELD}`, "
                               f"e.g. curl -F {FIELD}=@clip.mp4 http://HOST:PORT/classify")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) == 0:
            raise HTTPProblem(400, f"empty request body: send a video in the field `{FIELD}`")
        if int(declared) > max_bytes:
            raise HTTPProblem(413, _too_large(max_bytes))

    upload = _Upload(upload_dir)
    parser = MultipartParser(params[b"boundary"], upload.callbacks())
    received = 0
    try:
        async for chunk in _timed(request.stream(), body_timeout_s):
            received += len(chunk)
            if received > max_bytes:
                raise HTTPProblem(413, _too_large(max_bytes))
            try:
                parser.write(chunk)
            except Exception as e:  # python-multipart raises its own parse errors
                raise HTTPProblem(400, f"malformed multipart body ({e}); send the clip with "
                                       f"curl -F {FIELD}=@clip.mp4 ...") from None
        if received == 0:
            raise HTTPProblem(400, f"empty request body: send a video in the field `{FIELD}`")
        if upload.path is None:
            got = ", ".join(f"`{p}`" for p in upload.parts) or "none"
            raise HTTPProblem(400, f"no field `{FIELD}` in the form (fields sent: {got}); "
                                   f"send the clip as {FIELD}=@clip.mp4")
        if upload.size == 0:
            raise HTTPProblem(400, f"the uploaded `{FIELD}` file ({upload.name}) is empty")
    except BaseException:  # includes a client that went away (CancelledError)
        upload.close()
        if upload.path is not None:
            os.remove(upload.path)
        raise
    upload.close()
    return upload.path, upload.name


@dataclass
class _Upload:
    """The multipart parser's callbacks: the first `video` part streamed into a new file."""

    upload_dir: str
    path: str | None = None
    name: str = "upload"
    size: int = 0
    parts: list[str] = field(default_factory=list)  # field names seen, for the error message
    _fd: int | None = None
    _writing: bool = False
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _field: bytes = b""
    _value: bytes = b""

    def callbacks(self) -> dict:
        return {"on_header_field": self._on_header_field, "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end, "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data, "on_part_end": self._on_part_end}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, disp = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._headers = {}
        part = disp.get(b"name", b"").decode("utf-8", "replace")
        self.parts.append(part)
        self._writing = part == FIELD and self.path is None
        if self._writing:
            filename = disp.get(b"filename", b"upload").decode("utf-8", "replace") or "upload"
            self.name = os.path.basename(filename.replace("\\", "/")) or "upload"
            m = _SAFE_SUFFIX.search(self.name)
            self._fd, self.path = tempfile.mkstemp(dir=self.upload_dir, prefix="upload-",
                                                   suffix=m.group(0) if m else "")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writing:
            self.size += end - start
            os.write(self._fd, data[start:end])

    def _on_part_end(self) -> None:
        self._writing = False


async def _timed(chunks, timeout_s: float):
    """The body's chunks, each awaited at most `timeout_s` (a slow client gets 408)."""
    iterator = chunks.__aiter__()
    while True:
        try:
            yield await asyncio.wait_for(iterator.__anext__(), timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise HTTPProblem(408, f"no part of the request body arrived for {timeout_s:g} s; "
                                   "send it at once") from None


def _too_large(max_bytes: int) -> str:
    return (f"request body larger than this server's limit of {max_bytes / (1 << 20):g} MB; "
            "send a shorter clip or start the server with a larger --max-upload-mb")


# --------------------------------------------------------------------------- the app

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
        v = loaded.vocabulary
        return {"vocabulary": v.name, "labels": [{"id": i, "name": v.name_of(i)}
                                                 for i in range(len(v))]}

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
