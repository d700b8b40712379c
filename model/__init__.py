"""Features -> labels: NeXtVLAD and baselines, training, evaluation.

One architecture per module (`nextvlad`, `netvlad`, `dbof`, `frame_mean`,
`video_level`, `mix_nextvlad`), shared pieces in `layers`, `config.build_model`
to pick one, `sources` for the data (shards or TFRecords behind one interface),
`data` for videos -> batches, `train` / `evaluate` / `metrics`, `checkpoint` for run
folders. `cli` registers the pipeline.py subcommands and
imports nothing heavy.
"""
