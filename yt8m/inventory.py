"""The `download` table: every published asset, what it is for, its state, its URL and
the folder and file name it belongs in, from the disk (`--check`) or after fetching.

Each asset is fetched on its own: one failure never stops the others. The outcome:
anything needed for real features or real labels missing -> exit 2 with one message;
only golden-check files missing -> a warning naming the checks that cannot run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from .assets import (
    DOWNLOAD_HINT,
    FEATURES,
    GOLDEN,
    LABELS,
    MIRROR_ENV,
    Asset,
    FetchFailed,
    destination,
    locate,
    obtain,
    verify,
)
from .errors import UsageError

# States (the table's third column).
PRESENT, FETCHED, MISSING, FAILED, SKIPPED = "present", "fetched", "missing", "failed", "skipped"
GOOD = (PRESENT, FETCHED, SKIPPED)


@dataclass(frozen=True)
class Placed:
    """An asset and the folder it belongs in. `refuse(folder)`: a reason not to touch the
    folder (e.g. it holds fitted PCA parameters), or None. `after(path)`: work on arrival
    (e.g. converting the published model), returning a note for the table; `note(path)`:
    the same note from the disk alone (for `--check`). `skip`: why it is left alone."""

    asset: Asset
    folder: str
    refuse: Callable[[str], str | None] | None = None
    after: Callable[[str], str] | None = None
    note: Callable[[str], str] | None = None
    skip: str = ""


@dataclass
class Row:
    placed: Placed
    state: str
    why: str = ""
    url: str = ""

    @property
    def ok(self) -> bool:
        return self.state in GOOD


def inspect(placed: Placed) -> Row:
    """The asset's state from what is on disk; no network, nothing changed."""
    a, folder = placed.asset, placed.folder
    refused = placed.refuse(folder) if placed.refuse else None
    if placed.skip or refused:
        return Row(placed, SKIPPED if placed.skip else FAILED, placed.skip or refused, a.url)
    found = locate(a, folder)
    if not found:
        return Row(placed, MISSING, "", a.url)
    bad = verify(a, found)
    if bad:
        return Row(placed, bad[0], f"{found}: {bad[1]}", a.url)
    notes = [] if a.members or os.path.basename(found) == a.filename \
        else [f"as {os.path.basename(found)}"]
    if placed.note:
        notes.append(placed.note(found))
    return Row(placed, PRESENT, "; ".join(n for n in notes if n), a.url)


def fetch_row(placed: Placed, mirror: str | None = None, quiet: bool = False,
              unreachable: set[str] | None = None) -> Row:
    """Fetch the asset unless a good copy is there; its row, never an exception for an
    asset that could not be had. `unreachable`: hosts that could not be reached during
    this run (not tried again: behind a firewall that drops packets, each try would wait
    for the whole timeout); hosts found unreachable are added."""
    a, folder = placed.asset, placed.folder
    url = a.url_from(mirror)
    host = urlsplit(url).netloc
    refused = placed.refuse(folder) if placed.refuse else None
    if placed.skip or refused:
        return Row(placed, SKIPPED if placed.skip else FAILED, placed.skip or refused, url)
    if unreachable is not None and host in unreachable and locate(a, folder) is None:
        return Row(placed, FAILED, f"not tried: {host} could not be reached for an earlier "
                                   "file of this run", url)
    try:
        path, fetched = obtain(a, folder, quiet, mirror)
    except FetchFailed as e:  # the URL is in its column
        if e.unreachable and unreachable is not None:
            unreachable.add(host)
        return Row(placed, e.state, e.reason.replace(f"cannot reach {url}: ", "")
                   .replace(f"{url}: ", "").replace(url, "the URL"), url)
    except OSError as e:  # the folder itself: not writable, disk full
        return Row(placed, FAILED, f"{folder}: {e.strerror or e}", url)
    note = ""
    if placed.after:
        try:
            note = placed.after(path)
        except UsageError as e:
            return Row(placed, FAILED, str(e).splitlines()[0], url)
    return Row(placed, FETCHED if fetched else PRESENT, note, url)


def table(rows: list[Row]) -> str:
    """One line per asset (state, purpose, destination, URL), and its reason below it."""
    head = ("state", "for", "belongs in", "url")
    cells = [(r.state, r.placed.asset.purpose, destination(r.placed.asset, r.placed.folder),
              r.url) for r in rows]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head[:3], widths)) + "  " + head[3]]
    for r, c in zip(rows, cells):
        lines.append("  ".join(x.ljust(w) for x, w in zip(c[:3], widths)) + "  " + c[3])
        if r.why:
            lines.append(f"    {r.why}")
    return "\n".join(lines)


def outcome(rows: list[Row], check_only: bool) -> str | None:
    """None when every asset needed for real features and labels is there; raises
    UsageError (exit 2) when one is not. Returns a warning naming the golden checks that
    cannot run, or None."""
    needed = [r for r in rows if not r.ok and r.placed.asset.purpose in (FEATURES, LABELS)]
    golden = [r for r in rows if not r.ok and r.placed.asset.purpose == GOLDEN]
    if needed:
        names = ", ".join(r.placed.asset.filename for r in needed)
        raise UsageError(
            f"missing for real features or labels: {names} (each listed above with its URL "
            "and the folder and file name it belongs in). "
            + ("Run `" + DOWNLOAD_HINT + "` on a machine with network access, or copy the "
               "files there by hand." if check_only else
               "Run the command again when the network is back (partial downloads continue), "
               f"pass --mirror URL (or set {MIRROR_ENV}) for a server holding the files by "
               "name, or download them by hand into those folders."))
    if golden:
        checks = sorted({r.placed.asset.description for r in golden})
        return ("warning: the golden checks that prove the chain against published values "
                "cannot run without " + ", ".join(r.placed.asset.filename for r in golden)
                + ": " + "; ".join(checks) + ".")
    return None


def run(placed: list[Placed], mirror: str | None = None, check_only: bool = False,
        quiet: bool = False) -> int:
    """`download` / `download --check`: every asset, then the table on stdout; 0, or
    UsageError (exit 2) when something needed for real features or labels is missing."""
    import sys

    unreachable: set[str] = set()
    rows = [inspect(p) if check_only else fetch_row(p, mirror, quiet, unreachable)
            for p in placed]
    print(table(rows), flush=True)
    warning = outcome(rows, check_only)
    if warning:
        print(warning, file=sys.stderr)
    return 0
