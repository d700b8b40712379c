"""Import / export throughput of official-format TFRecords, against a raw read of the same files.

    python bench/import.py [--videos 320] [--files 4] [--workers 1 2]

Makes frame-level TFRecord files in the official schema (random quantized frames,
60-300 frames per video), then measures in one run, on the same files:
  raw read        reading the files (1 MiB reads; page cache warm, as for the rest)
  framing         TFRecordReader: framing + both CRC32C checks, no parsing
  parse           per-record parsers on records in memory: our wire reader (fast path
                  and general path) and the `protobuf` package (upb) with the
                  tf.train.SequenceExample descriptors built at run time
  import          import-yt8m end to end (read, verify, parse, write HDF5 shards),
                  for each --workers value
  export          export-tfrecord from the imported shards
Prints MB/s and ratios to the raw read (MB = 1e6 bytes of TFRecord file).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from diskio import drop_cache, read_through  # noqa: E402  (bench/, the script's folder)
from yt8m import official, protowire  # noqa: E402
from yt8m.exporter import export_tfrecords  # noqa: E402
from yt8m.importer import import_tfrecords  # noqa: E402
from yt8m.store import VideoRecord  # noqa: E402
from yt8m.tfrecord import TFRecordReader, write_tfrecord  # noqa: E402


def make_files(folder: str, videos: int, files: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    per_file = -(-videos // files)
    for f in range(files):
        records = []
        for i in range(per_file):
            t = int(rng.integers(60, 301))
            v = VideoRecord(id=f"{f:02d}{i:04d}", labels=np.sort(rng.choice(3862, 3, replace=False)),
                            rgb=rng.integers(0, 256, (t, 1024), dtype=np.uint8),
                            audio=rng.integers(0, 256, (t, 128), dtype=np.uint8))
            records.append(official.encode_frame_record(v))
        path = os.path.join(folder, f"train{f:04d}.tfrecord")
        write_tfrecord(path, records)
        paths.append(path)
    return paths


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def framing(paths: list[str]) -> None:
    for p in paths:
        for _ in TFRecordReader(p):
            pass


def read_verify_parse(paths: list[str]) -> None:
    """Everything import-yt8m does except writing the shard."""
    for p in paths:
        for _, data in TFRecordReader(p):
            official.parse_frame_record(data, 3862)


def protobuf_sequence_example():
    """tf.train.SequenceExample as a protobuf class, from descriptors built here (no TF)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fp = descriptor_pb2.FileDescriptorProto(name="bench_example.proto", package="tensorflow",
                                            syntax="proto3")

    def message(name, fields, nested=()):
        m = fp.message_type.add(name=name)
        for n, number, ftype, label, type_name in fields:
            f = m.field.add(name=n, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
        for entry_name, value_type in nested:
            e = m.nested_type.add(name=entry_name)
            e.options.map_entry = True
            e.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
            e.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                        type_name=value_type)
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, F.TYPE_BYTES, rep, None)])
    message("FloatList", [("value", 1, F.TYPE_FLOAT, rep, None)])
    message("Int64List", [("value", 1, F.TYPE_INT64, rep, None)])
    feature = message("Feature", [("bytes_list", 1, F.TYPE_MESSAGE, opt, ".tensorflow.BytesList"),
                                  ("float_list", 2, F.TYPE_MESSAGE, opt, ".tensorflow.FloatList"),
                                  ("int64_list", 3, F.TYPE_MESSAGE, opt, ".tensorflow.Int64List")])
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    message("Features", [("feature", 1, F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry")],
            [("FeatureEntry", ".tensorflow.Feature")])
    message("FeatureList", [("feature", 1, F.TYPE_MESSAGE, rep, ".tensorflow.Feature")])
    message("FeatureLists", [("feature_list", 1, F.TYPE_MESSAGE, rep,
                              ".tensorflow.FeatureLists.FeatureListEntry")],
            [("FeatureListEntry", ".tensorflow.FeatureList")])
    message("SequenceExample", [("context", 1, F.TYPE_MESSAGE, opt, ".tensorflow.Features"),
                                ("feature_lists", 2, F.TYPE_MESSAGE, opt, ".tensorflow.FeatureLists")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.SequenceExample"))


def parse_protobuf(cls, data: bytes):
    msg = cls()
    msg.ParseFromString(data)
    ctx = msg.context.feature
    vid = ctx["id"].bytes_list.value[0].decode()
    labels = np.array(ctx["labels"].int64_list.value, np.int32)
    lists = msg.feature_lists.feature_list
    rgb = np.frombuffer(b"".join(f.bytes_list.value[0] for f in lists["rgb"].feature), np.uint8)
    audio = np.frombuffer(b"".join(f.bytes_list.value[0] for f in lists["audio"].feature), np.uint8)
    return vid, labels, rgb.reshape(-1, 1024), audio.reshape(-1, 128)


def parse_general(data: bytes):
    context, lists = protowire.decode_sequence_example(data)
    rows = {}
    for key, width in (("rgb", 1024), ("audio", 128)):
        rows[key] = np.frombuffer(b"".join(v[0] for v in lists[key].features()), np.uint8).reshape(-1, width)
    return context["id"][0].decode(), context["labels"], rows["rgb"], rows["audio"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=320)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp folder)")
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="bench-import-", dir=args.dir)
    try:
        src = os.path.join(root, "tfrecords")
        os.makedirs(src)
        paths = make_files(src, args.videos, args.files)
        size = sum(os.path.getsize(p) for p in paths)
        mb = size / 1e6
        print(f"{len(paths)} files, {args.videos} videos, {mb:.1f} MB; CPUs: {os.cpu_count()}")
        read_through(paths)  # warm the page cache for every measurement alike
        results: list[tuple[str, float]] = []
        t_raw = best_of(lambda: read_through(paths))
        results.append(("raw read", mb / t_raw))
        results.append(("framing + CRC32C", mb / best_of(lambda: framing(paths))))
        results.append(("framing + CRC32C + parse (no shard write)",
                        mb / best_of(lambda: read_verify_parse(paths))))

        records = [d for _, d in TFRecordReader(paths[0])]
        rec_mb = sum(map(len, records)) / 1e6
        results.append(("parse: own wire reader (fast path)",
                        rec_mb / best_of(lambda: [official.parse_frame_record(r) for r in records])))
        results.append(("parse: own wire reader (general path)",
                        rec_mb / best_of(lambda: [parse_general(r) for r in records], 1)))
        try:
            cls = protobuf_sequence_example()
            check = parse_protobuf(cls, records[0])
            ours = official.parse_frame_record(records[0])
            assert check[0] == ours.id and (check[2] == ours.rgb).all() and (check[3] == ours.audio).all()
            from google.protobuf.internal import api_implementation
            results.append((f"parse: protobuf {api_implementation.Type()} + numpy",
                            rec_mb / best_of(lambda: [parse_protobuf(cls, r) for r in records], 1)))
        except ImportError:
            print("(protobuf not installed: its parser is not measured)")

        for w in args.workers:
            def run(w=w):
                out = os.path.join(root, f"shards-w{w}")
                shutil.rmtree(out, ignore_errors=True)
                report = import_tfrecords(os.path.join(src, "*.tfrecord"), out, workers=w, quiet=True)
                assert report.exit_code == 0
            results.append((f"import-yt8m, --workers {w}", mb / best_of(run, 2)))

        # The same with the input evicted from the page cache before each run: what a
        # real import of files on disk sees.
        def cold(fn):
            def run():
                drop_cache(paths)
                t = time.perf_counter()
                fn()
                return time.perf_counter() - t
            return min(run() for _ in range(2))
        t_cold = cold(lambda: read_through(paths))
        results.append(("raw read, cold cache", mb / t_cold))
        for w in args.workers:
            def run_cold(w=w):
                out = os.path.join(root, f"shards-cold-w{w}")
                shutil.rmtree(out, ignore_errors=True)
                import_tfrecords(os.path.join(src, "*.tfrecord"), out, workers=w, quiet=True)
            results.append((f"import-yt8m, --workers {w}, cold cache", mb / cold(run_cold)))

        shards = os.path.join(root, f"shards-w{args.workers[0]}")

        def export():
            out = os.path.join(root, "exported")
            shutil.rmtree(out, ignore_errors=True)
            export_tfrecords(shards, out, quiet=True)
        results.append(("export-tfrecord", mb / best_of(export, 2)))

        raw, raw_cold = mb / t_raw, mb / t_cold
        print("\n| step | MB/s | ratio to raw read (warm) | ratio to raw read (cold) |\n|---|---|---|---|")
        for name, rate in results:
            print(f"| {name} | {rate:.0f} | {rate / raw:.3f} | {rate / raw_cold:.3f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
