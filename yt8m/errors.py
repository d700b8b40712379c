"""Exceptions that map to the command line's exit codes (docs/reference.md, "Exit codes")."""

EXIT_OK = 0
EXIT_USAGE = 2  # bad usage or configuration: nothing (more) was done
EXIT_PARTIAL = 3  # the job finished, but some inputs were rejected


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
