"""Label vocabularies in the YouTube-8M `vocabulary.csv` format.

The official file has 3862 rows with columns Index, TrainVideoCount,
KnowledgeGraphId, Name, WikiUrl, Vertical1-3, WikiDescription. A vocabulary made
from a user's own label names is written in the same format (unknown columns
left empty), so one reader serves both. Shards and models refer to a vocabulary
by name and SHA-256 of its canonical content.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field

from .assets import LABELS, Asset, cache_dir, fetch
from .atomic import replacing
from .errors import UsageError

COLUMNS = ["Index", "TrainVideoCount", "KnowledgeGraphId", "Name", "WikiUrl",
           "Vertical1", "Vertical2", "Vertical3", "WikiDescription"]
FILENAME = "vocabulary.csv"
YT8M_NAME = "youtube-8m-2018"
YT8M_NUM_CLASSES = 3862


@dataclass(frozen=True)
class VocabularyRef:
    """What shards and checkpoints record: enough to refuse a mismatch."""

    name: str
    fingerprint: str
    num_classes: int


@dataclass
class Vocabulary:
    names: list[str]  # index i -> display name
    name: str = "custom"
    rows: list[dict[str, str]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, label: str) -> int | None:
        """A label given as a name or as an integer id -> its id, or None if unknown."""
        label = label.strip()
        if label in self._index:
            return self._index[label]
        if label.lstrip("-").isdigit():
            i = int(label)
            return i if 0 <= i < len(self.names) else None
        return None

    def name_of(self, i: int) -> str:
        return self.names[i] if 0 <= i < len(self.names) and self.names[i] else f"label {i}"

    @classmethod
    def from_names(cls, names: set[str] | list[str], name: str = "custom") -> "Vocabulary":
        """A vocabulary defined by the label names found: ids in sorted name order."""
        return cls(sorted(set(names)), name=name)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for i, n in enumerate(self.names):
            row = dict(self.rows[i]) if i < len(self.rows) else {}
            row.update(Index=str(i), Name=n)
            writer.writerow({c: row.get(c, "") for c in COLUMNS})
        return out.getvalue()

    @property
    def fingerprint(self) -> str:
        """What identifies the vocabulary in shards and models: the SHA-256 of its ids and
        names, or for the official one its name (fixed by Google; so that data imported
        before vocabulary.csv was downloaded still matches it)."""
        if self.name == YT8M_NAME:
            return YT8M_NAME
        # Names and indices define the labels; descriptions don't change them.
        canonical = "\n".join(f"{i}\t{n}" for i, n in enumerate(self.names))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def ref(self) -> VocabularyRef:
        return VocabularyRef(self.name, self.fingerprint, len(self.names))

    def save(self, directory: str) -> str:
        path = os.path.join(directory, FILENAME)
        with replacing(path) as f:
            f.write(self.to_csv())
        return path

    @classmethod
    def load(cls, path: str, name: str | None = None) -> "Vocabulary":
        """Read a `vocabulary.csv` (official or ours); Index may have gaps."""
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "Index" not in reader.fieldnames \
                        or "Name" not in reader.fieldnames:
                    raise UsageError(f"{path}: not a vocabulary file (needs the columns "
                                     f"Index and Name, as YouTube-8M's vocabulary.csv)")
                rows = list(reader)
        except OSError as e:
            raise UsageError(f"cannot read vocabulary {path}: {e.strerror}") from e
        by_index: dict[int, dict[str, str]] = {}
        for line, row in enumerate(rows, start=2):
            try:
                by_index[int(row["Index"])] = row
            except (TypeError, ValueError):
                raise UsageError(f"{path}, line {line}: Index {row.get('Index')!r} "
                                 "is not an integer") from None
        size = max(by_index) + 1 if by_index else 0
        names = [by_index[i]["Name"] if i in by_index else "" for i in range(size)]
        full = [by_index.get(i, {}) for i in range(size)]
        if name is None:
            official = size == YT8M_NUM_CLASSES and any(r.get("KnowledgeGraphId") for r in rows)
            name = YT8M_NAME if official else "custom"
        return cls(names, name=name, rows=full)

    @classmethod
    def official_unnamed(cls) -> "Vocabulary":
        """The official 3862 classes when vocabulary.csv is not at hand: ids, no names."""
        return cls([""] * YT8M_NUM_CLASSES, name=YT8M_NAME)

    @classmethod
    def official(cls, search_dirs: list[str] | None = None) -> "Vocabulary":
        """The official vocabulary with names when a `vocabulary.csv` of it is in one of
        `search_dirs` (default: the download cache), else `official_unnamed()`."""
        for d in search_dirs if search_dirs is not None else [cache_dir()]:
            path = os.path.join(d, FILENAME)
            if os.path.isfile(path):
                vocab = cls.load(path)
                if vocab.name == YT8M_NAME:
                    return vocab
        return cls.official_unnamed()


def _official_vocabulary(path: str) -> None:
    """The structure check of the downloaded file: the official 3862 classes, named."""
    vocab = Vocabulary.load(path)
    if vocab.name != YT8M_NAME:
        raise UsageError(f"{len(vocab)} classes and no KnowledgeGraphId column; the official "
                         f"file has {YT8M_NUM_CLASSES}")


# The official vocabulary, shared by import-yt8m, training and classification. Served by
# Google's site (no Git history to pin); no checksum is published: checked by structure.
YT8M_VOCABULARY = Asset(
    filename=FILENAME,
    url="https://research.google.com/youtube8m/csv/2/vocabulary.csv",
    description="YouTube-8M 2018 vocabulary, 3862 classes: the labels' names",
    purpose=LABELS,
    check=_official_vocabulary,
)


def download_official(dest_dir: str | None = None, quiet: bool = False,
                      mirror: str | None = None) -> str:
    """Fetch YouTube-8M's vocabulary.csv (YT8M_VOCABULARY) into dest_dir (default: the
    cache), checked to be the 3862-class official one (FetchFailed if not)."""
    return fetch(YT8M_VOCABULARY, dest_dir or cache_dir(), quiet, mirror)
