"""The extraction engine: many videos in, one VideoRecord (or a rejection) per video out.

`Extractor(config).extract_paths(paths)` is the one code path from video files
to quantized features; the extract command and the classify/serve commands all
call it, and it keeps its backbones loaded between calls.

How the work overlaps: `workers` decoder threads each take the next video,
decode its frames in bounded chunks (extract/decode/; small ones first, so
inference starts early), resize them to 299x299 on CPU runs (on a GPU the resize
runs on the device), then decode and frame its audio, and pass all that through
a small per-video queue. The calling thread feeds frames of consecutive videos
into shared batches of `batch_size` for Inception, runs VGGish per video, and
yields videos in input order as soon as all their frames are embedded. Threads
rather than processes: FFmpeg's decoders (through PyAV or decord) and torch's
kernels release the GIL, so threads overlap as processes would, without copying
every frame between processes or loading torch once per worker. Memory is
bounded by (workers + 1) videos x (queue depth + 1) chunks of at most CHUNK_BYTES.
"""
from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from yt8m.errors import RejectedInput
from yt8m.record import VideoRecord
from yt8m.representation import Representation

from .config import CPU_BATCH, GPU_BATCH, ExtractConfig
from .decode import open_video, read_audio
from .features import (
    Backbones,
    audio_examples,
    inception_pool3,
    load_backbones,
    quantize_audio,
    quantize_rgb,
    silent_audio,
    vggish_fc2,
)
from .resize import INCEPTION_SIZE, resize_bilinear_tf1

QUEUE_CHUNKS = 2  # decoded chunks a worker may run ahead of inference, per video


# What a decoder thread tells the inference side about one video, in this order:
# Opened, Frames..., then Sound (the last event) -- or Rejected at any point (also the last).
@dataclass
class Opened:
    n_frames: int


@dataclass
class Frames:
    frames: torch.Tensor  # [k, H, W, 3] uint8, or [k, 299, 299, 3] float when resized already


@dataclass
class Sound:
    examples: torch.Tensor | None  # log-mel examples [T, 96, 64]; None without an audio track


@dataclass
class Rejected:
    error: RejectedInput


@dataclass
class Idle:
    """Not an event of the video: the decoder has nothing new yet (run a partial batch)."""


Event = Opened | Frames | Sound | Rejected | Idle


@dataclass
class Cancellation:
    """One video's stop switch, shared by a caller (a server request) and the extractor.

    Once set, the video's decoder stops at its next chunk, its queued frames are
    dropped and no new backbone batch includes it; `late_frames` counts the frames
    that still went through Inception after it was set (at most the one batch that
    was already running)."""

    requested: threading.Event = field(default_factory=threading.Event)
    late_frames: int = 0

    def set(self) -> None:
        self.requested.set()

    def is_set(self) -> bool:
        return self.requested.is_set()


def _cancelled_reason(name: str) -> RejectedInput:
    return RejectedInput(name, "cancelled (its request timed out)")


@dataclass
class RawFeatures:
    """A video's backbone outputs before PCA (float32), for fit-pca and tests."""

    name: str
    pool3: np.ndarray  # [T, 2048]
    fc2: np.ndarray | None  # [T, 128], None without an audio track


@dataclass
class _Video:
    index: int
    path: str
    name: str
    cancel: Cancellation = field(default_factory=Cancellation)
    n_frames: int = -1  # -1 until probed
    rejected: RejectedInput | None = None
    pool3: list = field(default_factory=list)  # embedded [k, 2048] pieces, in order
    embedded: int = 0
    fc2: torch.Tensor | None = None
    has_audio: bool = False
    audio_done: bool = False

    @property
    def done(self) -> bool:
        return self.rejected is not None or (self.audio_done and self.embedded == self.n_frames)

    def dropped(self) -> bool:
        """True when the video's work is to be skipped: rejected, or cancelled (then it is
        rejected as such and its embedded pieces freed)."""
        if self.rejected is None and self.cancel.is_set():
            self.rejected, self.pool3 = _cancelled_reason(self.name), []
        return self.rejected is not None


class Extractor:
    """Loads the backbones once; `extract_paths` may be called many times."""

    def __init__(self, config: ExtractConfig, backbones: Backbones | None = None):
        from yt8m.cli_util import resolve_device

        self.config = config
        self.device = resolve_device(config.device) if backbones is None else backbones.device
        self.backbones = backbones or load_backbones(config.weights_dir, config.random_weights,
                                                     config.pca_dir, self.device)
        # On CPU a batch of 8 is as fast per frame as 32 and peaks ~300 MB lower.
        self.batch_size = config.batch_size or (GPU_BATCH if self.device.type == "cuda" else CPU_BATCH)
        # While the decoder is behind, run what is at hand once it is a quarter batch
        # (smaller batches cost throughput, idling costs more).
        self.min_batch = max(1, self.batch_size // 4)
        # On CPU the resize runs in the decoder threads, in parallel with inference.
        self.resize_in_decoder = self.device.type != "cuda"

    @property
    def representation(self) -> Representation:
        return self.backbones.representation()

    @property
    def random_weights(self) -> bool:
        return self.backbones.random_weights

    # ------------------------------------------------------------------ public API

    def extract_paths(self, paths: Sequence[str], names: Sequence[str] | None = None,
                      cancels: Sequence[Cancellation] | None = None
                      ) -> Iterator[tuple[str, VideoRecord | RejectedInput]]:
        """(path, record) for each video in input order; record.id is its name (default:
        the path). A video that cannot be used gives (path, RejectedInput) instead.
        `cancels[i]` set: video i's work stops (see Cancellation); it is rejected as cancelled."""
        for video in self._embed(paths, names, cancels):
            if video.rejected is not None:
                yield video.path, video.rejected
                continue
            rgb = quantize_rgb(self.backbones, torch.cat(video.pool3))
            audio = (quantize_audio(self.backbones, video.fc2) if video.has_audio
                     else silent_audio(video.n_frames))
            yield video.path, VideoRecord(id=video.name, rgb=rgb, audio=audio,
                                          has_audio=video.has_audio)

    def raw_features(self, paths: Sequence[str], names: Sequence[str] | None = None
                     ) -> Iterator[tuple[str, RawFeatures | RejectedInput]]:
        """Like extract_paths, but the backbones' float outputs before PCA."""
        for video in self._embed(paths, names):
            if video.rejected is not None:
                yield video.path, video.rejected
                continue
            yield video.path, RawFeatures(
                video.name, torch.cat(video.pool3).cpu().numpy(),
                video.fc2.cpu().numpy() if video.has_audio else None)

    # ------------------------------------------------------------------ decoding side

    def _decode(self, path: str, name: str, cancelled: Callable[[], bool] = lambda: False
                ) -> Iterator[Event]:
        """The events of one video (see Event)."""
        try:
            video = open_video(path, self.config.max_frames, name,
                               frame_threads=not self.resize_in_decoder,  # inference on a GPU
                               accept_truncated=self.config.accept_truncated,
                               max_pixels=self.config.max_pixels)
            n_frames = video.info.n_frames
            yield Opened(n_frames)
            for chunk in video.chunks(self.config.chunk_bytes):
                if cancelled():
                    raise _cancelled_reason(name)
                frames = torch.from_numpy(chunk)
                if self.resize_in_decoder:
                    # Two frames at a time: the float copy of a 1080p frame is 25 MB.
                    frames = torch.cat([resize_bilinear_tf1(frames[i:i + 2], INCEPTION_SIZE)
                                        for i in range(0, len(frames), 2)])
                del chunk
                yield Frames(frames)
            del video
            # Sound after the frames, so inference starts on them at once. It is decoded
            # as a stream, only the seconds the frames need (tens of MB at most).
            if cancelled():
                raise _cancelled_reason(name)
            wave = read_audio(path, n_frames, name)
            yield Sound(None if wave is None else audio_examples(wave, n_frames))
        except RejectedInput as e:
            yield Rejected(e)
        except Exception as e:  # noqa: BLE001 - one odd file must not stop the job
            yield Rejected(RejectedInput(name, f"cannot decode: {type(e).__name__}: {e}"))

    def _worker(self, path: str, name: str, out: queue.Queue, stop: threading.Event,
                cancelled: Callable[[], bool]) -> None:
        for event in self._decode(path, name, cancelled):
            while not stop.is_set():
                try:
                    out.put(event, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    def _events(self, paths: Sequence[str], names: Sequence[str],
                cancels: Sequence[Cancellation]) -> Iterator[tuple[int, Iterator[Event]]]:
        """(index, event stream) per video in order, decoded ahead by the workers."""
        workers = self.config.workers

        def check(i: int) -> Callable[[], bool]:
            """Video i's cancellation test, for the decoder to ask between chunks."""
            return cancels[i].is_set

        if workers <= 0:
            for i, (p, n) in enumerate(zip(paths, names)):
                yield i, self._decode(p, n, check(i))
            return
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        inflight: collections.deque = collections.deque()

        def drain(q: queue.Queue) -> Iterator[Event]:
            while True:
                try:
                    event = q.get_nowait()
                except queue.Empty:
                    yield Idle()  # the consumer may run a partial batch meanwhile
                    event = q.get()
                yield event
                if isinstance(event, (Sound, Rejected)):
                    return

        try:
            nxt = 0
            for i in range(len(paths)):
                while nxt < len(paths) and len(inflight) < workers + 1:
                    q: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
                    pool.submit(self._worker, paths[nxt], names[nxt], q, stop, check(nxt))
                    inflight.append(q)
                    nxt += 1
                yield i, drain(inflight.popleft())
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ inference side

    def _embed(self, paths: Sequence[str], names: Sequence[str] | None,
               cancels: Sequence[Cancellation] | None = None) -> Iterator[_Video]:
        """Videos with their backbone outputs, in input order, as soon as each is complete.
        A cancelled video's queued frames and sound are dropped unembedded."""
        paths = list(paths)
        names = list(names) if names is not None else list(paths)
        cancels = list(cancels) if cancels is not None else [Cancellation() for _ in paths]
        pending: collections.deque[_Video] = collections.deque()
        batch = _InceptionBatch(self)
        for i, events in self._events(paths, names, cancels):
            video = _Video(i, paths[i], names[i], cancels[i])
            pending.append(video)
            for event in events:
                match event:
                    case Opened(n_frames):
                        video.n_frames = n_frames
                    case Frames(frames) if not video.dropped():
                        batch.add(video, frames)
                    case Sound(examples) if not video.dropped():
                        if examples is not None:
                            video.fc2 = vggish_fc2(self.backbones, examples, self.batch_size)
                            video.has_audio = True
                        video.audio_done = True
                    case Rejected(error):
                        video.rejected, video.pool3 = error, []
                    case Idle() if batch.frames >= self.min_batch:
                        batch.run()  # rather than wait for the decoder with frames at hand
                while pending and pending[0].done:
                    yield pending.popleft()
        batch.run()
        while pending:
            video = pending.popleft()
            assert video.done, video
            yield video


class _InceptionBatch:
    """Frames of consecutive videos gathered into Inception batches of `batch_size`."""

    def __init__(self, extractor: Extractor):
        self.extractor = extractor
        self.parts: list[tuple[_Video, torch.Tensor]] = []
        self.frames = 0

    def add(self, video: _Video, frames: torch.Tensor) -> None:
        x = self.extractor
        if not x.resize_in_decoder:  # on a GPU the resize runs on the device
            frames = resize_bilinear_tf1(frames.to(x.device, non_blocking=True), INCEPTION_SIZE)
        while len(frames):  # split so that a batch never exceeds batch_size frames
            take = min(len(frames), x.batch_size - self.frames)
            self.parts.append((video, frames[:take]))
            self.frames += take
            frames = frames[take:]
            if self.frames >= x.batch_size:
                self.run()

    def run(self) -> None:
        # No new batch includes a video cancelled meanwhile: its gathered frames are dropped.
        parts = [(video, f) for video, f in self.parts if not video.dropped()]
        self.parts, self.frames = [], 0
        if not parts:
            return
        pool3 = inception_pool3(self.extractor.backbones, torch.cat([f for _, f in parts]))
        at = 0
        for video, f in parts:
            if video.cancel.is_set():  # cancelled while its batch ran
                video.cancel.late_frames += len(f)
            video.pool3.append(pool3[at:at + len(f)])
            video.embedded += len(f)
            at += len(f)
