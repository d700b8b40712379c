"""What a data set records about how it was made, in every shard's attributes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .representation import FORMAT_VERSION, Representation
from .shard_check import FORMAT
from .vocabulary import VocabularyRef


@dataclass(frozen=True)
class ShardMeta:
    """What every shard of one data set records, and what readers compare."""

    kind: str  # FRAME or VIDEO
    representation: Representation
    vocabulary: VocabularyRef
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def to_attrs(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "representation": self.representation.to_json(),
            "vocabulary_name": self.vocabulary.name,
            "vocabulary_sha256": self.vocabulary.fingerprint,
            "num_classes": self.vocabulary.num_classes,
            "extra": json.dumps(self.extra, sort_keys=True),
        }

    @classmethod
    def from_attrs(cls, attrs: Any) -> "ShardMeta":
        return cls(
            kind=str(attrs["kind"]),
            representation=Representation.from_json(str(attrs["representation"])),
            vocabulary=VocabularyRef(str(attrs["vocabulary_name"]),
                                     str(attrs["vocabulary_sha256"]),
                                     int(attrs["num_classes"])),
            extra=json.loads(str(attrs.get("extra", "{}"))),
        )

    def mismatch(self, other: "ShardMeta") -> list[str]:
        """Why data described by `other` cannot be mixed with or fed to this one."""
        problems = []
        if self.kind != other.kind:
            problems.append(f"kind: {self.kind}-level vs {other.kind}-level")
        problems += self.representation.differences(other.representation)
        if self.vocabulary.fingerprint != other.vocabulary.fingerprint:
            problems.append(f"vocabulary: {self.vocabulary.name} ({self.vocabulary.num_classes} "
                            f"classes, {self.vocabulary.fingerprint[:12]}) vs {other.vocabulary.name} "
                            f"({other.vocabulary.num_classes} classes, "
                            f"{other.vocabulary.fingerprint[:12]})")
        return problems
