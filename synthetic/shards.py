"""Shard sets of synthetic features: real HDF5 shards (ShardWriter) whose recorded
representation says the features come from no real backbone."""
from __future__ import annotations

import os

from yt8m.representation import Representation
from yt8m.store import FRAME, ShardMeta, ShardWriter
from yt8m.vocabulary import Vocabulary

SYNTHETIC = Representation(rgb_backbone="synthetic", audio_backbone="synthetic",
                           rgb_pca="none", audio_pca="none", source="synthetic")


def shard_writer(out_dir: str, num_classes: int, kind: str = FRAME,
                 representation: Representation = SYNTHETIC, videos_per_shard: int = 64,
                 names: list[str] | None = None) -> ShardWriter:
    """A ShardWriter into `out_dir`, its vocabulary (`names`, else class00, class01, ...)
    saved beside the shards."""
    vocab = Vocabulary.from_names(names or [f"class{c:02d}" for c in range(num_classes)])
    os.makedirs(out_dir, exist_ok=True)
    vocab.save(out_dir)
    return ShardWriter(out_dir, ShardMeta(kind, representation, vocab.ref),
                       videos_per_shard=videos_per_shard)
