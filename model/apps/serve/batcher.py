"""Concurrent requests gathered into batches that run on one worker thread (the backbones
and the model serve one batch at a time); what a request may hold while it waits."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from extract.extractor import Cancellation
from yt8m.errors import RejectedInput

from ..inference import Classifier, ClipResult
from .guard import HTTPProblem, ServeSettings


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
        try:
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
        except asyncio.CancelledError:  # stopping while gathering: the jobs taken end here
            for job in jobs:
                _discard(job)
                job.future.cancel()
            raise
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
