"""Published files the toolkit needs (weights, PCA parameters, vocabulary): where
they come from, how to check them, where they live on disk.

An `Asset` is data: file name, URL, checksum. `find_asset` looks for it on disk
and, when it is missing, raises a `UsageError` that says which file to put where;
`fetch` downloads it (progress bar, temp file + atomic rename, checksum check).
Assets keep their published file names so users can drop files in by hand.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Iterable

from .errors import UsageError

APP_NAME = "yt8m-toolkit"
DEFAULT_PCA_DIR = "pca_params"  # --pca-dir: the published or fitted PCA parameters
DOWNLOAD_HINT = "python pipeline.py download"
TIMEOUT_S = 60.0  # seconds without a byte before a download counts as lost
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Asset:
    """One published file.

    `sha256` may be the full hex digest or a prefix of it (torch hub's
    convention puts the first 8 hex digits in the file name, e.g. `-6726825d`);
    empty means "no published checksum" (the file is then only size-checked).
    `members` lists what a .tgz/.tar holds: `fetch` unpacks those next to it.
    """

    filename: str
    url: str
    sha256: str = ""
    size: int | None = None
    description: str = ""
    members: tuple[str, ...] = field(default_factory=tuple)

    @property
    def provides(self) -> tuple[str, ...]:
        """The file names a user must have on disk: the archive's members, or the file."""
        return self.members or (self.filename,)


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


def checksum_ok(asset: Asset, path: str) -> bool:
    if asset.size is not None and os.path.getsize(path) != asset.size:
        return False
    return not asset.sha256 or sha256_of(path).startswith(asset.sha256.lower())


def missing_message(assets: Iterable[Asset], search_dirs: Iterable[str]) -> str:
    """One paragraph: which files are missing, where to put them, how to fetch them."""
    assets = list(assets)
    dirs = [d for d in search_dirs if d]
    lines = ["Missing file(s): " + ", ".join(n for a in assets for n in a.provides) + "."]
    lines.append("Looked in: " + ", ".join(dirs) + "." if dirs else "No folder to look in.")
    for a in assets:
        what = f" ({a.description})" if a.description else ""
        from_archive = f" (unpacked from {a.filename})" if a.members else ""
        lines.append(f"  {', '.join(a.provides)}{from_archive}{what}: {a.url}")
    lines.append(f"Run `{DOWNLOAD_HINT}` on a machine with internet access, or download "
                 f"the file(s) above by hand and put them in {dirs[0] if dirs else 'that folder'} "
                 "under exactly those names.")
    return "\n".join(lines)


def find_asset(asset: Asset, search_dirs: Iterable[str]) -> str:
    """Path of `asset` in the first folder that holds it (for an archive: the folder
    holding all its members). Raises UsageError naming the files and folders."""
    search_dirs = [d for d in search_dirs if d]
    for d in search_dirs:
        if all(os.path.isfile(os.path.join(d, name)) for name in asset.provides):
            return d if asset.members else os.path.join(d, asset.filename)
    raise UsageError(missing_message([asset], search_dirs))


class TransferFailed(Exception):
    """A download could not finish; `status` is the HTTP status when the server answered."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.status = status


def open_url(url: str, headers: dict[str, str] | None = None):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                      timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise TransferFailed(f"{url} answered HTTP {e.code} {e.reason}", e.code) from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        raise TransferFailed(f"cannot reach {url}: network unreachable "
                             f"({getattr(e, 'reason', e)})") from None


def transfer(url: str, partial: str, quiet: bool = False, size_hint: int | None = None) -> None:
    """Download `url` into `partial`, continuing what is already there with an HTTP Range
    request (starting over when the server ignores it). On a lost connection the part is
    kept, so the next call continues it. Verification is the caller's."""
    from .cli_util import progress

    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    try:
        response = open_url(url, {"Range": f"bytes={have}-"} if have else None)
    except TransferFailed as e:
        if e.status == 416 and have:  # nothing after `have`: the part is whole already
            return
        raise
    with response:
        resumed = have > 0 and response.status == 206 \
            and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        start = have if resumed else 0
        total = (expected + start) if expected is not None else size_hint
        got = 0
        with open(partial, "ab" if resumed else "wb") as out, \
                progress(total=total, desc=os.path.basename(url), quiet=quiet, unit="B") as bar:
            bar.update(start)
            try:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
            except (OSError, socket.timeout, ValueError, http.client.HTTPException) as e:
                raise TransferFailed(f"connection lost after {start + got} bytes ({e}); the "
                                     "part is kept and a rerun continues it") from None
    if expected is not None and got < expected:
        raise TransferFailed(f"connection closed after {start + got} of {start + expected} "
                             "bytes; the part is kept and a rerun continues it")


def fetch(asset: Asset, dest_dir: str, quiet: bool = False) -> str:
    """Download `asset` into `dest_dir` (unless already there and valid); return its path.

    For an archive with `members`, unpacks them into `dest_dir` and returns the folder.
    Downloads to a hidden `.partial` file, continued by the next call after an
    interruption, and renames it into place only after the checksum passed, so an
    interrupted or corrupt download never looks like a good file.
    """
    os.makedirs(dest_dir, exist_ok=True)
    target = os.path.join(dest_dir, asset.filename)
    if asset.members:
        if all(os.path.isfile(os.path.join(dest_dir, m)) for m in asset.members):
            return dest_dir
    elif os.path.isfile(target) and checksum_ok(asset, target):
        return target
    partial = os.path.join(dest_dir, f".{asset.filename}.partial")
    try:
        transfer(asset.url, partial, quiet, asset.size)
    except TransferFailed as e:
        if e.status is None and os.path.exists(partial) and os.path.getsize(partial) == 0:
            os.remove(partial)
        if e.status is not None and os.path.exists(partial):
            os.remove(partial)
        raise UsageError(f"cannot download {asset.filename}: {e}.\n"
                         + missing_message([asset], [dest_dir])) from None
    if not checksum_ok(asset, partial):
        got = sha256_of(partial)
        size = os.path.getsize(partial)
        os.remove(partial)
        raise UsageError(f"{asset.filename} downloaded from {asset.url} is corrupt: "
                         f"sha256 {got[:16]}... does not start with {asset.sha256} "
                         f"(size {size}). It was deleted; run "
                         f"`{DOWNLOAD_HINT}` again, or fetch it by hand into {dest_dir}.")
    if asset.members:
        try:
            _unpack(asset, partial, dest_dir)
        finally:
            os.remove(partial)
        return dest_dir
    os.replace(partial, target)
    return target


def _unpack(asset: Asset, archive: str, dest_dir: str) -> None:
    """Extract exactly `asset.members` (by base name, wherever they sit in the archive)."""
    wanted = set(asset.members)
    found: set[str] = set()
    try:
        with tarfile.open(archive) as tar:
            for info in tar.getmembers():
                name = os.path.basename(info.name)
                if info.isfile() and name in wanted and name not in found:
                    src = tar.extractfile(info)
                    assert src is not None
                    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial",
                                               dir=dest_dir)
                    with os.fdopen(fd, "wb") as out, src:
                        shutil.copyfileobj(src, out)
                    os.replace(tmp, os.path.join(dest_dir, name))
                    found.add(name)
    except tarfile.TarError as e:
        raise UsageError(f"{asset.filename} from {asset.url} is not a readable archive "
                         f"({e}); run `{DOWNLOAD_HINT}` again.") from None
    if found != wanted:
        raise UsageError(f"{asset.filename} from {asset.url} lacks "
                         f"{', '.join(sorted(wanted - found))}; it may have changed upstream.")


# The official vocabulary, shared by import-yt8m, training and classification.
YT8M_VOCABULARY = Asset(
    filename="vocabulary.csv",
    url="https://research.google.com/youtube8m/csv/2/vocabulary.csv",
    description="YouTube-8M 2018 vocabulary, 3862 classes",
)


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
