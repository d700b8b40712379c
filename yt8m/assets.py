"""Published files the toolkit needs (weights, PCA parameters, vocabulary, reference data):
where they come from, how to check them, where they live on disk.

An `Asset` is data: file name, URL, checksum, what it is for and how to check its
structure. `find_asset` looks for it on disk and, when it is missing, raises a
`UsageError` that says which file to put where; `fetch` downloads it (one process per
asset at a time, resumable, sizes checked against what the server declared, checksum
and structure checked before the file takes its name). A file on disk that fails its
checks is fetched anew, never reused. Assets keep their published file names so users
can drop files in by hand, or serve them from one folder as a mirror (`--mirror`).
"""
from __future__ import annotations

import hashlib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from .atomic import file_lock, replacing
from .errors import UsageError
from .transfer import TransferFailed, transfer

APP_NAME = "yt8m-toolkit"
DEFAULT_PCA_DIR = "pca_params"  # --pca-dir: the published or fitted PCA parameters
DOWNLOAD_HINT = "python pipeline.py download"
MIRROR_ENV = "YT8M_MIRROR"  # a server holding every asset by file name (as --mirror)

# What an asset is for (the `download` table's second column).
FEATURES = "real features"
LABELS = "real labels"
GOLDEN = "golden checks"


@dataclass(frozen=True)
class Asset:
    """One published file.

    `sha256` may be the full hex digest or a prefix of it (torch hub's
    convention puts the first 8 hex digits in the file name, e.g. `-6726825d`);
    empty means "no published checksum": `check` then proves the file by its structure.
    `members` lists what a .tgz/.tar holds: `fetch` unpacks those next to it, and
    `check` receives the folder. `accepted`: other names that serve in its place.
    `check(path)` raises (UsageError, ValueError, OSError) when the content is wrong.
    """

    filename: str
    url: str
    sha256: str = ""
    size: int | None = None
    description: str = ""
    members: tuple[str, ...] = field(default_factory=tuple)
    purpose: str = FEATURES
    accepted: tuple[str, ...] = field(default_factory=tuple)
    check: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    @property
    def provides(self) -> tuple[str, ...]:
        """The file names a user must have on disk: the archive's members, or the file."""
        return self.members or (self.filename,)

    def url_from(self, mirror: str | None = None) -> str:
        """The published URL, or the file's name on `mirror` (a server holding the files
        by name, e.g. `python -m http.server` in a folder of downloaded assets)."""
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url


def cache_dir() -> str:
    """$XDG_CACHE_HOME/yt8m-toolkit, or ~/.cache/yt8m-toolkit."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, APP_NAME)


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in blocks (weights and dataset files are large)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_of(path: str) -> str:
    return file_digest(path, "sha256")


# States of an asset on disk (see `problem`).
BAD_CHECKSUM = "bad checksum"
BAD_STRUCTURE = "bad structure"


def problem(asset: Asset, path: str, whole: bool = True,
            structure: bool = True) -> tuple[str, str] | None:
    """(state, why) when the file (for an archive: the folder it was unpacked into) at
    `path` is not the published one; None when it is. `whole`: `path` is the published
    file itself (the archive, not a stand-in), so its size and checksum apply;
    `structure`: run `asset.check` too."""
    if whole:
        size = os.path.getsize(path)
        if asset.size is not None and size != asset.size:
            return BAD_CHECKSUM, f"{size} bytes, the published file has {asset.size}"
        if asset.sha256:
            got = sha256_of(path)
            if not got.startswith(asset.sha256.lower()):
                return BAD_CHECKSUM, (f"sha256 {got[:16]}..., the published file's starts "
                                      f"with {asset.sha256[:16]}")
    if structure and asset.check is not None:
        try:
            asset.check(path)
        except (UsageError, ValueError, OSError, KeyError) as e:
            return BAD_STRUCTURE, str(e).splitlines()[0]
    return None


def verify(asset: Asset, found: str) -> tuple[str, str] | None:
    """`problem` of what `locate` found: an archive's folder, the file or a stand-in."""
    return problem(asset, found, whole=os.path.basename(found) == asset.filename
                   and not asset.members)


def destination(asset: Asset, folder: str) -> str:
    """Where `asset` belongs in `folder`, in words: the file, or the archive's members."""
    if asset.members:
        return f"{os.path.join(folder, '')}{{{','.join(asset.members)}}} (from {asset.filename})"
    return os.path.join(folder, asset.filename)


def missing_message(assets: Iterable[Asset], search_dirs: Iterable[str]) -> str:
    """One paragraph: which files are missing, where to put them, how to fetch them."""
    assets = list(assets)
    dirs = [d for d in search_dirs if d]
    lines = ["Missing file(s): " + ", ".join(n for a in assets for n in a.provides) + "."]
    lines.append("Looked in: " + ", ".join(dirs) + "." if dirs else "No folder to look in.")
    for a in assets:
        what = f" ({a.description})" if a.description else ""
        from_archive = f" (unpacked from {a.filename})" if a.members else ""
        also = f" (or {', '.join(a.accepted)})" if a.accepted else ""
        lines.append(f"  {', '.join(a.provides)}{also}{from_archive}{what}: {a.url}")
    lines.append(f"Run `{DOWNLOAD_HINT}` on a machine with internet access (`{DOWNLOAD_HINT} "
                 "--check` lists every file and its folder), or download the file(s) above by "
                 f"hand and put them in {dirs[0] if dirs else 'that folder'} under exactly "
                 "those names.")
    return "\n".join(lines)


def locate(asset: Asset, folder: str) -> str | None:
    """Path of `asset` in `folder` (for an archive: the folder, when all its members are
    there; else the file or an accepted stand-in), or None."""
    if asset.members:
        return folder if all(os.path.isfile(os.path.join(folder, m)) for m in asset.members) \
            else None
    for name in (asset.filename, *asset.accepted):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def find_asset(asset: Asset, search_dirs: Iterable[str]) -> str:
    """Path of `asset` in the first folder that holds it (for an archive: the folder
    holding all its members). Raises UsageError naming the files and folders."""
    search_dirs = [d for d in search_dirs if d]
    for d in search_dirs:
        found = locate(asset, d)
        if found:
            return found
    raise UsageError(missing_message([asset], search_dirs))


class FetchFailed(UsageError):
    """An asset that could not be had; `state` (failed, bad checksum, bad structure) and
    `reason` fill the `download` table, the message says what to do."""

    def __init__(self, asset: Asset, folder: str, state: str, reason: str,
                 unreachable: bool = False):
        super().__init__(f"cannot download {asset.filename} ({state}): {reason}.\n"
                         + missing_message([asset], [folder]))
        self.state, self.reason, self.unreachable = state, reason, unreachable


@contextmanager
def one_at_a_time(folder: str, name: str, quiet: bool = False) -> Iterator[None]:
    """Hold `folder/.name.lock`: one download of an asset at a time, across processes; a
    second `download` waits here, then finds the file in place."""
    def say(_: object) -> None:
        if not quiet:
            print(f"{name}: another download of it is running; waiting for it", file=sys.stderr)

    with file_lock(os.path.join(folder, f".{name}.lock"), say):
        yield


def fetch(asset: Asset, dest_dir: str, quiet: bool = False, mirror: str | None = None) -> str:
    """`asset`'s path in `dest_dir`, downloaded unless a valid copy is there already."""
    return obtain(asset, dest_dir, quiet, mirror)[0]


def obtain(asset: Asset, dest_dir: str, quiet: bool = False,
           mirror: str | None = None) -> tuple[str, bool]:
    """(path, fetched): `asset` in `dest_dir`, downloaded (True) unless a copy that passes
    its checks is there (False). A copy that fails them is removed and fetched anew.

    Downloads to a hidden `.partial-NAME` file, continued by the next call after an
    interruption, and gives it its name only after size, checksum and structure passed, so
    an interrupted or corrupt download never looks like a good file. Raises FetchFailed."""
    os.makedirs(dest_dir, exist_ok=True)
    with one_at_a_time(dest_dir, asset.filename, quiet):
        found = locate(asset, dest_dir)
        if found and verify(asset, found) is None:
            return found, False
        if found:  # present but wrong: never reused
            for name in asset.members or (os.path.basename(found),):
                os.remove(os.path.join(dest_dir, name))
        return _download(asset, dest_dir, quiet, asset.url_from(mirror)), True


def _download(asset: Asset, dest_dir: str, quiet: bool, url: str) -> str:
    # Hidden, and ending like the file: structure checks may go by the suffix.
    partial = os.path.join(dest_dir, f".partial-{asset.filename}")
    try:
        transfer(url, partial, quiet, asset.size)
    except TransferFailed as e:
        if os.path.exists(partial) and (e.discarded or e.status is not None
                                        or os.path.getsize(partial) == 0):
            os.remove(partial)
        raise FetchFailed(asset, dest_dir, "failed", str(e), e.unreachable) from None
    bad = problem(asset, partial, structure=not asset.members)
    if bad is not None:
        os.remove(partial)
        raise FetchFailed(asset, dest_dir, bad[0], f"{url}: {bad[1]}; the file was removed")
    if not asset.members:
        target = os.path.join(dest_dir, asset.filename)
        os.replace(partial, target)
        return target
    try:
        _unpack(asset, partial, dest_dir, url)
    finally:
        os.remove(partial)
    bad = problem(asset, dest_dir, whole=False)
    if bad is not None:
        for m in asset.members:
            os.remove(os.path.join(dest_dir, m))
        raise FetchFailed(asset, dest_dir, bad[0], f"{url}: {bad[1]}; the files were removed")
    return dest_dir


def _unpack(asset: Asset, archive: str, dest_dir: str, url: str) -> None:
    """Extract exactly `asset.members` (by base name, wherever they sit in the archive)."""
    import shutil
    import tarfile
    import zlib

    wanted = set(asset.members)
    found: set[str] = set()
    try:
        with tarfile.open(archive) as tar:
            for info in tar.getmembers():
                name = os.path.basename(info.name)
                if info.isfile() and name in wanted and name not in found:
                    src = tar.extractfile(info)
                    assert src is not None
                    with replacing(os.path.join(dest_dir, name), "wb") as out, src:
                        shutil.copyfileobj(src, out)
                    found.add(name)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # zlib: a damaged gzip stream
        raise FetchFailed(asset, dest_dir, BAD_STRUCTURE,
                          f"{url}: not a readable archive ({e}); removed") from None
    if found != wanted:
        for name in found:
            os.remove(os.path.join(dest_dir, name))
        raise FetchFailed(asset, dest_dir, BAD_STRUCTURE,
                          f"{url}: the archive lacks {', '.join(sorted(wanted - found))}")


@dataclass(frozen=True)
class Weights:
    """Pretrained weights as data, next to the model that loads them (torchvision-style):
    the file, what the model expects as input, and what the numbers mean."""

    asset: Asset
    name: str  # recorded in the shards' Representation (rgb_backbone / audio_backbone)
    preprocessing: str
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    def recorded_name(self, random_weights: bool) -> str:
        """What shards record for a backbone built from these weights, or randomly."""
        return f"{self.name}:random-init" if random_weights else self.name
