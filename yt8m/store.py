"""The shard store (docs/reference.md, "Shards"), by job:

- yt8m/record.py: VideoRecord, the one video everything passes around, and its checksum;
- yt8m/shard_meta.py: ShardMeta, how a data set was made, in every shard's attributes;
- yt8m/shard_writer.py: ShardWriter, the HDF5 layout written and published whole;
- yt8m/shard_reader.py: ShardReader, one shard read lazily and checked;
- yt8m/shard_folder.py: a folder of shards (listing, resuming, rewriting, ShardSet);
- yt8m/shard_check.py: what a shard file must be before anything in it is read;
- yt8m/atomic.py: publishing a file under its final name (temporary names, sweeping).

This module re-exports their public names for code that imports them from here.
"""
from .record import VideoRecord, video_checksum
from .shard_check import FRAME, VIDEO
from .shard_folder import ShardSet, done_ids, open_shards, remove_videos, shard_paths, stored_sources
from .shard_meta import ShardMeta
from .shard_reader import ShardReader
from .shard_writer import SUFFIX, ShardWriter, free_bytes, prefixed_shards, shard_bytes_needed

__all__ = ["FRAME", "SUFFIX", "VIDEO", "ShardMeta", "ShardReader", "ShardSet", "ShardWriter",
           "VideoRecord", "done_ids", "free_bytes", "open_shards", "prefixed_shards",
           "remove_videos", "shard_bytes_needed", "shard_paths", "stored_sources", "video_checksum"]
