"""The `extract --labels CSV` file: which labels each video has (README, "Labels").

    video,labels
    holiday/beach.mp4,Beach;Sea
    /abs/path/cat.mkv,3;17

`video` is a path relative to --videos (or absolute, inside --videos); `labels`
holds `;`-separated label names or integer ids. With a vocabulary (the
YouTube-8M vocabulary.csv format) every label must exist in it; without one, the
label names found define the vocabulary (ids in sorted name order; integer ids
then make no sense and are rejected). Every bad row is collected and reported
at once, before any video is decoded.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from yt8m.errors import UsageError
from yt8m.vocabulary import Vocabulary

MAX_LISTED = 50  # bad rows shown in the message; the rest are counted


@dataclass
class Labels:
    vocabulary: Vocabulary
    by_video: dict[str, np.ndarray]  # video id (path relative to --videos) -> int32 ids

    def of(self, video_id: str) -> np.ndarray:
        return self.by_video.get(video_id, np.zeros(0, dtype=np.int32))


def _video_id(raw: str, videos_dir: str) -> str | None:
    """Normalise a CSV path to the id extract gives (relative to videos_dir, '/'-separated)."""
    root = os.path.abspath(videos_dir)
    path = raw if os.path.isabs(raw) else os.path.join(root, raw)
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel.startswith(os.pardir):
        return None
    return rel.replace(os.sep, "/")


def read_labels(csv_path: str, videos_dir: str, vocabulary: Vocabulary | None = None,
                known_ids: set[str] | None = None) -> Labels:
    """Parse and check the whole file; UsageError (exit 2) listing every bad row.

    known_ids: the videos found under videos_dir (ids); rows naming other files are bad.
    """
    rows = _read_rows(csv_path)
    problems: list[str] = []
    parsed: list[tuple[int, str, list[str]]] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            problems.append(f"line {line}: expected 2 columns (video,labels), found {len(row)}")
            continue
        raw, text = row[0].strip(), row[1].strip()
        vid = _video_id(raw, videos_dir) if raw else None
        names = [t.strip() for t in text.split(";") if t.strip()]
        if not raw:
            problems.append(f"line {line}: empty video path")
        elif vid is None:
            problems.append(f"line {line}: {raw}: not inside --videos {videos_dir}")
        elif known_ids is not None and vid not in known_ids:
            problems.append(f"line {line}: {raw}: no such video under {videos_dir}")
        elif vid in seen:
            problems.append(f"line {line}: {raw}: listed twice (first on line {seen[vid]})")
        elif not names:
            problems.append(f"line {line}: {raw}: no labels")
        else:
            seen[vid] = line
            parsed.append((line, vid, names))

    if vocabulary is None:
        numeric = [(line, n) for line, _, names in parsed for n in names
                   if n.lstrip("-").isdigit()]
        problems += [f"line {line}: label {n!r} is an integer id, but without --vocabulary "
                     "there are no ids; give names, or pass --vocabulary" for line, n in numeric]
        vocabulary = Vocabulary.from_names({n for _, _, names in parsed for n in names})

    by_video: dict[str, np.ndarray] = {}
    for line, vid, names in parsed:
        ids = [vocabulary.id_of(n) for n in names]
        unknown = [n for n, i in zip(names, ids) if i is None]
        if unknown:
            problems.append(f"line {line}: unknown label(s) {', '.join(map(repr, unknown))} "
                            f"(not in vocabulary {vocabulary.name}, {len(vocabulary)} classes)")
            continue
        by_video[vid] = np.array(sorted(set(ids)), dtype=np.int32)

    if problems:
        raise _bad_rows(csv_path, problems)
    return Labels(vocabulary, by_video)


def _read_rows(csv_path: str) -> list[list[str]]:
    """The file's rows, its header checked."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise UsageError(f"cannot read --labels {csv_path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--labels {csv_path}: not a UTF-8 text file") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["video", "labels"]:
        raise UsageError(f"--labels {csv_path}: the first line must be the header "
                         "`video,labels` (then one line per video: path,label;label;...)")
    return rows


def _bad_rows(csv_path: str, problems: list[str]) -> UsageError:
    """Every bad row in line order (the first MAX_LISTED), in one error."""
    problems = sorted(problems, key=lambda p: int(p.split(":")[0].split()[1]))
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return UsageError(f"--labels {csv_path}: {len(problems)} bad row(s); nothing was "
                      "extracted. Fix these rows and run again:\n  " + "\n  ".join(shown) + more)
