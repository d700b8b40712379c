"""What `train` reads: its data sets, checked at start, and the batches of the loop.

Every loop over the data ends. At start, a data set (`--data` or `--val`) in which
no video can be read is refused at once (`check_usable`), without an epoch of
empty batches. During the run, the data source's `TrainingFeed` (`open_feed`) hands
out only batches with videos in them: an epoch of shards that yields none, or, from
TFRecords (one endless stream), a stretch of unusable inputs longer than two whole
passes over the data, raises `NoUsableData`, and the run ends with its report (exit 3).
"""
from __future__ import annotations

import torch

from model.architectures.config import ModelConfig
from yt8m.errors import NoUsableData, Problem, UsageError
from yt8m.store import VIDEO

from .config import TrainConfig
from .sources import DataSource, StreamPlan, TrainingFeed, open_source


def open_training_data(path: str, what: str) -> DataSource:
    """Shards, or official TFRecords read directly (a folder of *.tfrecord or a glob)."""
    data = open_source(path)  # UsageError when the folder is missing or holds no shards
    if len(data) == 0:
        raise UsageError(f"{path}: the shards hold no videos. Run `python pipeline.py extract` "
                         f"or `import-yt8m` first to make {what} data.")
    return data


def check_model_fits_data(config: ModelConfig, shards: DataSource) -> None:
    """UsageError unless the model reads the data's kind (frame- or video-level)."""
    video_data = shards.meta.kind == VIDEO
    if config.video_level != video_data:
        kind = "video-level" if video_data else "frame-level"
        choices = "logistic or moe" if video_data else \
            "nextvlad, mix-nextvlad, netvlad, dbof or mean-logistic"
        raise UsageError(f"--model {config.name} cannot train on {shards.data_dir}, which holds "
                         f"{kind} shards; use --model {choices}.")


def check_labelled(data: DataSource) -> None:
    """A vocabulary of no classes (shards extracted without --labels) would make a model
    with no outputs: refused before anything is built."""
    if len(data.vocabulary) == 0:
        raise UsageError(
            f"{data.data_dir}: these shards carry no labels (their vocabulary has no classes), "
            "so there is nothing to train towards. Extract the videos with `--labels CSV` "
            "(header video,labels; see `python pipeline.py extract --help`), or import labelled "
            "YouTube-8M TFRecords; unlabelled shards are input for predict and classify only.")


def open_data(tc: TrainConfig, mc: ModelConfig, resumed=None
              ) -> tuple[DataSource, DataSource | None]:
    """Training (and validation) data, checked against the model and the resumed run
    (a checkpoint.Checkpoint); sets the model's number of classes from the data."""
    shards = open_training_data(tc.data, "training")
    check_model_fits_data(mc, shards)
    check_labelled(shards)
    mc.num_classes = len(shards.vocabulary)
    if resumed is not None:
        problems = resumed.representation.differences(shards.meta.representation)
        if problems or resumed.vocabulary.fingerprint != shards.vocabulary.fingerprint:
            raise UsageError(f"cannot resume on {tc.data}: its shards differ from the run's training "
                             f"data ({'; '.join(problems) or 'vocabulary differs'}).")
    val = open_training_data(tc.val, "validation") if tc.val else None
    if val is not None:
        check_model_fits_data(mc, val)
        if val.meta.mismatch(shards.meta):
            raise UsageError(f"--val {tc.val} was made differently from --data {tc.data}: "
                             + "; ".join(val.meta.mismatch(shards.meta)))
    return shards, val


def check_usable(data: DataSource, what: str) -> None:
    """NoUsableData (listing every damaged input) unless some video of `data` reads; stops
    at the first that does, so a sound data set costs one read."""
    damaged: list[Problem] = []
    for got in data.read():
        if not isinstance(got, Problem):
            return
        damaged.append(got)
    raise NoUsableData(f"{what} {data.data_dir}", damaged)


def open_feed(data: DataSource, tc: TrainConfig, ddp, device: torch.device, step: int,
              per_epoch: int, damaged: set[Problem] | None = None) -> TrainingFeed:
    """The batches of a run for this process (`ddp`: its rank among how many), from its
    current step on; the damaged inputs met are collected in `damaged`."""
    plan = StreamPlan(tc.batch_size, tc.seed, step, per_epoch, tc.max_frames, tc.shuffle_buffer,
                      ddp.rank, ddp.world_size, tc.workers, device)
    return data.training_feed(plan, damaged)
