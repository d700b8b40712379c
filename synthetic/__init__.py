"""Synthetic inputs in the project's real formats, shared by the tests and the benchmarks:
random PCA parameters in the published layout (`pca`), the writer of synthetic-feature
shard sets (`shards`) and PaddlePaddle NeXtVLAD checkpoints of random values (`paddle`).

Values are random; names, shapes, dtypes and file formats are the real ones, so the
code under test or under measurement runs its real path. Not part of the installed
product (setup.cfg packages only yt8m, extract and model).
"""
