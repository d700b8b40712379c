"""Features -> labels, in three layers (each imports only the ones below it; checked by
import-linter in the test command):

- `architectures`: one architecture per module (`nextvlad`, `mix_nextvlad`, `netvlad`,
  `dbof`, `frame_mean`, `video_level`), shared pieces in `layers`, and `config`: the
  table from a model's name to its builder and defaults.
- `training`: the data (`sources`: shards or TFRecords behind one interface; `data`:
  videos -> batches), `train`, `finetune`, `evaluate`, `metrics`, and `checkpoint` for
  model folders.
- `apps`: what users run, the only layer that uses extraction: the commands (`cli`,
  `inference_cli`), `inference` (classify, predict), `serve`, `pretrained` (the
  published model: download and conversion, `paddle_nextvlad`), and `api` for notebooks.
"""
