"""Exceptions that map to the command line's exit codes (docs/reference.md, "Exit codes"),
and the one record of an input a job could not use (Problem)."""
from __future__ import annotations

from dataclasses import dataclass, replace

EXIT_OK = 0
EXIT_USAGE = 2  # bad usage or configuration: nothing (more) was done
EXIT_PARTIAL = 3  # the job finished, but some inputs were rejected

REJECTED = "rejected"  # the input itself cannot be used (not a video, a bad label row, ...)
DAMAGED = "damaged"  # stored data that fails its checks (a checksum, a TFRecord's framing)


@dataclass(frozen=True, order=True)
class Problem:
    """One input a job could not use, as its report lists it (yt8m/report.py): every
    kind of bad input (a rejected video, a damaged stored video, a corrupt record, a
    file that is not a shard) is turned into one of these, and only these are reported.
    Problems sort by where, then reason (reports list a set of them in that order)."""

    where: str  # the input: a path, "shard: video id", "file (byte N)", a URL
    reason: str
    kind: str = REJECTED  # REJECTED or DAMAGED
    detail: str = ""  # the whole sentence, what to do included, where the reader gave one

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    def in_full(self) -> "Problem":
        """This problem with its whole sentence (`detail`, where there is one) as the reason."""
        return replace(self, reason=self.detail, detail="") if self.detail else self


class UsageError(Exception):
    """An expected failure the user can fix: missing weights, bad flag, wrong model.

    The message is shown as is (no traceback), so it says what to do.
    """


class ShardError(UsageError):
    """A file named like a shard that is not a valid, complete shard."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    @property
    def problem(self) -> Problem:
        return Problem(self.path, self.reason)


class NoUsableData(UsageError):
    """A data set, or a whole pass over it, without one usable video: every input met was
    damaged (`damaged`, each as its Problem). Training, evaluation and verify end there and
    report the damage (exit 3); a command that does not report it stops with its message
    (exit 2)."""

    def __init__(self, what: str, damaged: list[Problem]):
        super().__init__(f"{what}: no usable video; every input read ({len(damaged)}) is "
                         "damaged, so nothing can be learned or measured from it")
        self.damaged = damaged


class DiskFull(UsageError):
    """A shard could not be written for lack of space; what was finished is kept."""

    def __init__(self, folder: str, free: int, needed: int):
        super().__init__(
            f"{folder}: not enough free space for the next shard ({free / 2**20:.1f} MB free, "
            f"about {needed / 2**20:.1f} MB needed). The shards already finished are kept and "
            "a rerun resumes after them: free some space (or pass another --out) and run again.")
        self.folder, self.free, self.needed = folder, free, needed


class DamagedVideo(ShardError):
    """One video whose stored bytes no longer match the checksum written with them."""

    why = "its frames do not match their CRC32C checksum"

    def __init__(self, path: str, video_id: str):
        super().__init__(path, f"video {video_id!r} is damaged: {self.why} (a disk or copy "
                               "error); re-extract or re-import it")
        self.video_id = video_id

    @property
    def problem(self) -> Problem:
        return Problem(f"{self.path}: {self.video_id}", self.why, DAMAGED, self.reason)


class UnreadableVideo(DamagedVideo):
    """One video that could not be read because its shard changed (replaced, truncated,
    deleted) after it was opened; reported and skipped like a damaged one."""

    def __init__(self, path: str, video_id: str, why: str):
        ShardError.__init__(self, path, f"video {video_id!r} could not be read: {why}")
        self.video_id, self.why = video_id, why


class RejectedInput(Exception):
    """One input (a video, a record, a label row) that cannot be used; the job goes on."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason

    @property
    def problem(self) -> Problem:
        return Problem(self.name, self.reason)
