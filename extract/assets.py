"""The published files `extract` needs, and where it looks for them.

Weights (`pt_inception-2015-12-05-6726825d.pth`, `vggish-10086976.pth`) live in
`--weights-dir`, else the cache (yt8m.assets.cache_dir()). PCA parameters live in
`--pca-dir` (default pca_params/): the contents of `yt8m_pca.tgz` and
`vggish_pca_params.npz` (or the PyTorch port's `vggish_pca_params-970ea276.pth`).
"""
from __future__ import annotations

import os

from yt8m.assets import DEFAULT_PCA_DIR, Asset, cache_dir, fetch, find_asset, missing_message
from yt8m.errors import UsageError

from .inception import INCEPTION_2015_12_05
from .pca import AUDIO_NPZ, AUDIO_PTH, FITTED_MARKER, RGB_FILES
from .vggish import VGGISH_AUDIOSET

YT8M_PCA = Asset(
    filename="yt8m_pca.tgz",
    url="http://data.yt8m.org/yt8m_pca.tgz",
    description="YouTube-8M visual PCA (Inception pool_3 2048 -> 1024)",
    members=RGB_FILES,
)
VGGISH_PCA = Asset(
    filename=AUDIO_NPZ,
    url=f"https://storage.googleapis.com/audioset/{AUDIO_NPZ}",
    description="AudioSet VGGish PCA + whitening (128 -> 128)",
)
VGGISH_PCA_TORCH = Asset(  # accepted in place of VGGISH_PCA; not downloaded by default
    filename=AUDIO_PTH,
    url=f"https://github.com/harritaylor/torchvggish/releases/download/v0.1/{AUDIO_PTH}",
    sha256="970ea276",
    description="VGGish PCA parameters, PyTorch port",
)
WEIGHTS = (INCEPTION_2015_12_05.asset, VGGISH_AUDIOSET.asset)
PCA_ASSETS = (YT8M_PCA, VGGISH_PCA)

# Published test data with known values, so that a machine with the real assets can
# prove the chain (tests/test_published_assets.py). Small; no checksums are published.
_TESTDATA = "https://raw.githubusercontent.com/google/youtube-8m/master/feature_extractor/testdata"
REFERENCE_DATA = (
    Asset("sports1m_frame.pkl", f"{_TESTDATA}/sports1m_frame.pkl",
          description="YouTube-8M starter code: an Inception pool_3 vector before and after "
                      "the published PCA"),
    Asset("AO7u7fwGzJQ_at_second_0.jpg", f"{_TESTDATA}/AO7u7fwGzJQ_at_second_0.jpg",
          description="YouTube-8M starter code: a frame"),
    Asset("AO7u7fwGzJQ_at_second_0_feats.json", f"{_TESTDATA}/AO7u7fwGzJQ_at_second_0_feats.json",
          description="YouTube-8M starter code: that frame's pool_3 features"),
)


def reference_dir() -> str:
    return os.path.join(cache_dir(), "reference")


def weights_search_dirs(weights_dir: str | None) -> list[str]:
    """--weights-dir overrides the cache."""
    return [weights_dir] if weights_dir else [cache_dir()]


def resolve_weights(weights_dir: str | None,
                    random_weights: bool) -> tuple[str | None, str | None]:
    """(inception path, vggish path); (None, None) with --random-weights.

    Raises one UsageError naming every missing file and where to put it."""
    if random_weights:
        return None, None
    dirs = weights_search_dirs(weights_dir)
    found: list[str] = []
    missing: list[Asset] = []
    for asset in WEIGHTS:
        try:
            found.append(find_asset(asset, dirs))
        except UsageError:
            missing.append(asset)
    if missing:
        raise UsageError(missing_message(missing, dirs)
                         + "\n(--random-weights runs without them, for smoke tests only.)")
    return found[0], found[1]


def download_all(dest_dir: str | None = None, pca_dir: str = DEFAULT_PCA_DIR,
                 quiet: bool = False) -> list[str]:
    """Fetch weights into `dest_dir` (default: the cache), the published PCA files into
    `pca_dir` and the reference data into the cache (the vocabulary is fetched and checked
    by yt8m.vocabulary.download_official). Returns the paths written or found. Raises
    UsageError (exit 2) when offline."""
    dest_dir = dest_dir or cache_dir()
    paths = [fetch(asset, dest_dir, quiet=quiet) for asset in WEIGHTS]
    if os.path.exists(os.path.join(pca_dir, FITTED_MARKER)):
        # Never overwrite a user's fitted parameters, nor label them as published.
        raise UsageError(f"{pca_dir} holds PCA parameters fitted with fit-pca "
                         f"({FITTED_MARKER}); the weights were downloaded to {dest_dir}. To "
                         "download the published PCA parameters, pass --pca-dir with another "
                         f"folder, or move the fitted files out of {pca_dir}.")
    for asset in PCA_ASSETS:
        paths.append(fetch(asset, pca_dir, quiet=quiet))
    paths += [fetch(asset, reference_dir(), quiet=quiet) for asset in REFERENCE_DATA]
    return paths
