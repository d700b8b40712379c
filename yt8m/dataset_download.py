"""Official YouTube-8M TFRecords from the public mirrors (`download --dataset PARTITION`).

Works like the dataset's own download.py (served at http://data.yt8m.org/download.py):

- a partition is `VERSION/KIND/SPLIT`, e.g. `2/frame/train`, `3/frame/validate`,
  `2/video/train`;
- its download plan, `http://data.yt8m.org/VERSION/download_plans/KIND_SPLIT.json`,
  is `{"files": {"trainAB.tfrecord": "<md5 hex>", ...}}`;
- each file is at `http://MIRROR.data.yt8m.org/PARTITION/NAME` (MIRROR: us, eu, asia)
  and is saved under its official numbered name: the two trailing letters of
  `trainAB` index the 62 x 62 grid of [a-zA-Z0-9] pairs, so `trainaa` -> `train0000`;
- the 1/N fraction `shard=X,Y` keeps the files whose md5(file name) mod Y == X - 1.

Resumable: the plan is kept next to the files, a file is downloaded to a hidden
`.partial` name (continued with an HTTP Range request when the mirror allows),
checked against the plan's MD5 and only then renamed; verified names are listed in
`<plan>.done` so a rerun does not hash them again.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass

from .assets import file_digest
from .atomic import replacing
from .errors import UsageError
from .report import Report
from .transfer import TransferFailed, open_url, transfer

PLAN_BASE = "http://data.yt8m.org"
MIRROR_BASE = "http://{mirror}.data.yt8m.org"
MIRRORS = ("us", "eu", "asia")
KINDS = ("frame", "video", "frame_level", "video_level")
SPLITS = ("train", "validate", "test")
_LETTERS = ([chr(c) for c in range(ord("a"), ord("z") + 1)]
            + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
            + [chr(c) for c in range(ord("0"), ord("9") + 1)])
_PAIR_INDEX = {a + b: i for i, (a, b) in enumerate(itertools.product(_LETTERS, repeat=2))}


@dataclass(frozen=True)
class Partition:
    version: str
    kind: str
    split: str

    def __str__(self) -> str:
        return f"{self.version}/{self.kind}/{self.split}"

    def plan_url(self, base_url: str | None = None) -> str:
        return f"{base_url or PLAN_BASE}/{self.version}/download_plans/{self.kind}_{self.split}.json"

    def file_url(self, name: str, mirror: str, base_url: str | None = None) -> str:
        return f"{base_url or MIRROR_BASE.format(mirror=mirror)}/{self}/{name}"

    @property
    def plan_filename(self) -> str:
        return f"{self.version}_{self.kind}_{self.split}_download_plan.json"


def parse_partition(text: str) -> Partition:
    parts = text.strip("/").split("/")
    if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in KINDS or parts[2] not in SPLITS:
        raise UsageError(f"--dataset {text!r}: expected VERSION/KIND/SPLIT with KIND one of "
                         f"{', '.join(KINDS)} and SPLIT one of {', '.join(SPLITS)}, for example "
                         "2/frame/train, 3/frame/validate or 2/video/train.")
    return Partition(*parts)


def parse_dataset_shard(text: str | None) -> tuple[int, int] | None:
    """`X,Y` as in the official download.py (1-based: 1,100 is the first hundredth) or
    `I/N` as everywhere else in this toolkit (0-based) -> (0-based index, count)."""
    if text is None:
        return None
    sep = "," if "," in text else "/"
    try:
        i, n = (int(x) for x in text.split(sep))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected X,Y (1 <= X <= Y, as the official "
                         "download.py) or I/N (0 <= I < N)") from None
    if sep == ",":
        i -= 1
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {text!r}: out of range (X,Y needs 1 <= X <= Y; I/N needs 0 <= I < N)")
    return i, n


def official_file_name(name: str) -> str:
    """`trainAB.tfrecord` (mirror name) -> `train0093.tfrecord`; other names unchanged."""
    stem, dot, ext = name.partition(".")
    if len(stem) > 2 and stem[-2:] in _PAIR_INDEX:
        return f"{stem[:-2]}{_PAIR_INDEX[stem[-2:]]:04d}{dot}{ext}"
    return name


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """The official deterministic split: md5(file name) mod N == I (0-based I)."""
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.md5(name.encode("utf-8")).hexdigest(), 16) % count == index


def md5_of(path: str) -> str:
    return file_digest(path, "md5")  # the mirrors publish MD5 sums


def load_plan(partition: Partition, out_dir: str, base_url: str | None = None) -> dict[str, str]:
    """{mirror file name: md5}; fetched once and kept in out_dir for resuming."""
    path = os.path.join(out_dir, partition.plan_filename)
    if not os.path.exists(path):
        url = partition.plan_url(base_url)
        try:
            with open_url(url) as response:
                body = response.read()
        except TransferFailed as e:
            raise UsageError(f"cannot get the file list of partition {partition}: {e}. Check "
                             "the partition name (e.g. 2/frame/train) and the network.") from None
        with replacing(path, "wb") as f:
            f.write(body)
    try:
        with open(path, encoding="utf-8") as f:
            files = json.load(f)["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
        return {str(k): str(v).lower() for k, v in files.items()}
    except (ValueError, KeyError, TypeError) as e:
        os.remove(path)
        raise UsageError(f"the download plan of {partition} is not valid JSON with a 'files' "
                         f"object ({e}); it was deleted, run again to fetch it anew.") from None


def _fetch(url: str, target: str, md5: str, quiet: bool) -> None:
    """Download url to target via a .partial file (continued if present); verify MD5."""
    partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial")
    transfer(url, partial, quiet)
    _verify_and_keep(partial, target, md5)


def _verify_and_keep(partial: str, target: str, md5: str) -> None:
    actual = md5_of(partial)
    if md5 and actual != md5:
        os.remove(partial)
        raise TransferFailed(f"MD5 mismatch: the download has {actual}, the plan says {md5}; "
                      "it was deleted, run again to retry")
    os.replace(partial, target)


def download_partition(partition: str, out_dir: str, shard: tuple[int, int] | None = None,
                       mirror: str = "us", quiet: bool = False,
                       base_url: str | None = None) -> Report:
    """Fetch a partition's files (the `shard` = (index, count) fraction, 0-based) into
    out_dir, verified by MD5. Returns the report (rejected files, exit code).

    `base_url` replaces both http://data.yt8m.org and the mirror host (tests, private
    mirrors). Raises UsageError when the partition or its file list cannot be had."""
    from .cli_util import progress

    if isinstance(shard, str):  # "X,Y" or "I/N" straight from a command line
        shard = parse_dataset_shard(shard)
    part = parse_partition(partition)
    if mirror not in MIRRORS:
        raise UsageError(f"--mirror {mirror!r}: choose one of {', '.join(MIRRORS)}")
    os.makedirs(out_dir, exist_ok=True)
    plan = load_plan(part, out_dir, base_url)
    done_path = os.path.join(out_dir, part.plan_filename + ".done")
    done = set(open(done_path, encoding="utf-8").read().split()) if os.path.exists(done_path) else set()
    report = Report("download")
    names = sorted(n for n in plan if in_shard(n, shard))
    skipped = 0
    for name in progress(names, desc=f"{part}", quiet=quiet, unit="file"):
        url = part.file_url(name, mirror, base_url)
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
            report.reject(url, "unsafe file name in the download plan; skipped")
            continue
        target = os.path.join(out_dir, official_file_name(name))
        if os.path.exists(target) and (name in done or md5_of(target) == plan[name]):
            skipped += 1
            report.done += 1
            continue
        try:
            _fetch(url, target, plan[name], quiet)
        except TransferFailed as e:
            report.reject(url, str(e))
            continue
        with open(done_path, "a", encoding="utf-8") as f:
            f.write(name + "\n")
        report.done += 1
    print(f"{part}: {report.done} of {len(names)} file(s) in {out_dir}"
          + (f" ({skipped} already there)" if skipped else "")
          + (f", 1/{shard[1]} of the {len(plan)} files (part {shard[0]})" if shard else ""),
          file=sys.stderr)
    return report


def default_out_dir(partition: str) -> str:
    """data/yt8m/2/frame/train for 2/frame/train."""
    return os.path.join("data", "yt8m", *str(parse_partition(partition)).split("/"))


def run_download(args) -> int:
    """`download --dataset P [--shard X,Y|I/N] [--mirror M] [--out DIR] [--quiet]` -> exit code."""
    out = args.out or default_out_dir(args.dataset)
    report = download_partition(args.dataset, out, parse_dataset_shard(args.part),
                                mirror=args.mirror, quiet=args.quiet)
    report.write(out)
    return report.exit_code
