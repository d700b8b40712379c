"""Small pieces every command uses: progress bars, flags, job splitting, devices."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, TypeVar

from .errors import UsageError

T = TypeVar("T")

# The folders of the zero-argument chain (`extract`, then `train`, then `classify`).
DEFAULT_FEATURES = "data/features"  # where extract and import-yt8m write shards, train reads them
LATEST_RUN = "runs/latest"  # what train points at its newest run; the default --model


def flag_field(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field whose help text (and choices, shown default, metavar) the
    command-line flags derive from (see `add_fields`)."""
    return field(default=default, metadata={"help": help, **meta})


def top_k_problem(top_k: int, name: str = "--top-k") -> str | None:
    """Why `top_k` labels a clip cannot be asked for (`name`: the flag or field), or None."""
    return f"{name} must be at least 1" if top_k < 1 else None


def progress(iterable: Iterable[T] | None = None, total: int | None = None,
             desc: str | None = None, quiet: bool = False, unit: str = "it") -> Any:
    """A tqdm bar on stderr, silent with --quiet or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto: CUDA when present (default), else CPU")


def add_part(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="process only the I-th (0-based) of N disjoint parts of the "
                             "input; RANK/WORLD_SIZE from torchrun mean the same")


@dataclass(frozen=True)
class JobPart:
    """Which of `count` disjoint parts of a job this process does."""

    index: int = 0
    count: int = 1

    def select(self, items: Sequence[T]) -> list[T]:
        """Every count-th item starting at index: parts are disjoint and cover all."""
        return list(items[self.index::self.count])

    @property
    def tag(self) -> str:
        """A file-name part that keeps parallel writers' shards apart."""
        return "" if self.count == 1 else f"-p{self.index}of{self.count}"


def parse_part(text: str | None, env: dict[str, str] | None = None) -> JobPart:
    """`--shard I/N`, else torchrun's RANK/WORLD_SIZE, else the whole job."""
    env = os.environ if env is None else env
    if text is None:
        if "RANK" in env and "WORLD_SIZE" in env:
            text = f"{env['RANK']}/{env['WORLD_SIZE']}"
        else:
            return JobPart()
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, for example 0/4 for the first "
                         "of four parts") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {text!r}: need 0 <= I < N (parts are numbered from 0)")
    return JobPart(i, n)


def resolve_device(name: str) -> Any:
    """'auto' | 'cpu' | 'cuda' -> torch.device; asking for CUDA without one is exit 2."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is visible to "
                         "PyTorch here. Use --device cpu (or auto).")
    return torch.device(name)


_TYPES = {"int": int, "float": float, "str": str}


def add_fields(parser: argparse.ArgumentParser, cls: type, names: Sequence[str],
               **flag_names: str) -> None:
    """One flag per dataclass field: `--field-name`, its default and help text taken from
    the field (help and choices live in the field's metadata), so the dataclass is the
    one source of every default. `flag_names` renames a flag (name="--model")."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    for name in names:
        f = fields[name]
        default = getattr(defaults, name)
        flag = flag_names.get(name, "--" + name.replace("_", "-"))
        text = f.metadata.get("help", "")
        if f.type == "bool":
            parser.add_argument(flag, dest=name, action="store_true", help=text)
            continue
        kind = _TYPES[f.type.replace(" | None", "").strip()]
        shown = f.metadata.get("default_help", default)
        metavar = f.metadata.get("metavar") or {int: "N", float: "X"}.get(kind, "VALUE")
        if f.metadata.get("choices"):
            metavar = None
        parser.add_argument(flag, dest=name, type=kind, default=default,
                            choices=f.metadata.get("choices"), metavar=metavar,
                            help=text if shown is None else f"{text} (default {shown})")


def fields_from_args(cls: type, args: argparse.Namespace, names: Sequence[str]) -> Any:
    """The dataclass built from the flags `add_fields` added."""
    return cls(**{name: getattr(args, name) for name in names})
