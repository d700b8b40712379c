"""`python pipeline.py serve`: the classifier over HTTP (FastAPI on uvicorn).

    GET  /           a page to try it in a browser: pick or drop a clip, see its labels
                     (and a timeline of 5-second segments); self-contained, works offline
    POST /classify   multipart/form-data with the field `video` -> the clip's object of
                     `classify --json`: {"video", "labels": [{"id", "name", "score"}],
                     "random_weights"}; query `segments=1` adds "segments", `top_k=N`
                     sets the number of labels (default: the server's --top-k)
    GET  /health     {"status": "ok", model, classes, random_weights, uploads_in_flight}
    GET  /labels     the model's vocabulary

    curl -F video=@clip.mp4 http://127.0.0.1:8000/classify

The model and the backbones are loaded once. Uploads are streamed to a file in
this server's own temporary folder (decoders want a file), counting bytes as
they arrive, so an oversized body is refused (413) without being stored. A
`Batcher` gathers concurrent requests (up to `max_batch`, waiting at most
`batch_wait_s` after the first) and runs extraction + model for the whole batch
in one worker thread, so the event loop keeps accepting requests meanwhile.
Every upload file is removed by whoever holds it last: the request handler
until the job is queued, the worker after that; the folder goes at shutdown.

Errors: 400 malformed request (not multipart, no `video` field, empty body or
file), 413 too large, 422 not a decodable video (with the decoder's reason),
504 no answer within `timeout_s`.

Modules: `guard` (settings, limits, the header probe, the token, temporary files; light,
the source of serve's flags), `upload` (the multipart body streamed to a file),
`batcher` (requests gathered into batches on one worker thread; cancellation and the
pixel budget), `app` (the routes, and `serve`, which runs them under uvicorn).
"""
