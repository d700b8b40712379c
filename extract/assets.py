"""The published files `extract` needs, and where it looks for them.

Weights (`pt_inception-2015-12-05-6726825d.pth`, `vggish-10086976.pth`) live in
`--weights-dir`, else the cache (yt8m.assets.cache_dir()). PCA parameters live in
`--pca-dir` (default pca_params/): the contents of `yt8m_pca.tgz` and
`vggish_pca_params.npz` (or the PyTorch port's `vggish_pca_params-970ea276.pth`).
The reference files of the golden checks live in the cache's `reference/` folder.
`extract_assets` is this stage's part of the one list `download` works through.
"""
from __future__ import annotations

import os

from yt8m.assets import DEFAULT_PCA_DIR, GOLDEN, Asset, cache_dir, find_asset, missing_message
from yt8m.errors import UsageError
from yt8m.inventory import Placed
from yt8m.pca_files import FITTED_MARKER

from .inception import INCEPTION_2015_12_05
from .pca import PCA_ASSETS
from .vggish import VGGISH_AUDIOSET

WEIGHTS = (INCEPTION_2015_12_05.asset, VGGISH_AUDIOSET.asset)

# The YouTube-8M starter code's test data (feature_extractor/feature_extractor_test.py),
# pinned to the commit that added it: two of the three files were removed from the
# repository's branches the next day. The full SHA-256 and size of each file at that
# commit prove it (no structure check needed).
STARTER_COMMIT = "4619056162f466293d99e0c59512f8d0f3427fe2"
_TESTDATA = ("https://raw.githubusercontent.com/google/youtube-8m/"
             f"{STARTER_COMMIT}/feature_extractor/testdata")
REFERENCE_DATA = (
    Asset("sports1m_frame.pkl", f"{_TESTDATA}/sports1m_frame.pkl",
          sha256="e91e9829d372067782c7a64c25cabc5a4c9d3b20f175081a48eecf8dbf7fb962",
          size=74816, purpose=GOLDEN,
          description="the published visual PCA check: a pool_3 vector before and after the "
                      "starter code's PCA"),
    Asset("AO7u7fwGzJQ_at_second_0.jpg", f"{_TESTDATA}/AO7u7fwGzJQ_at_second_0.jpg",
          sha256="288c6a64a58cb95c7f31f603a154bf9d2d5c77228e3cbfd7b57458013eedbbc9",
          size=20468, purpose=GOLDEN,
          description="the Inception check: a frame of YouTube video AO7u7fwGzJQ"),
    Asset("AO7u7fwGzJQ_at_second_0_feats.json",
          f"{_TESTDATA}/AO7u7fwGzJQ_at_second_0_feats.json",
          sha256="e0db1e5cc18d97309ddc043a6d469fd8dbb38abcd0a9fe86ebc225522af56239",
          size=24103, purpose=GOLDEN,
          description="the Inception check: the starter code's pool_3 features of that frame"),
)


def reference_dir() -> str:
    return os.path.join(cache_dir(), "reference")


def _fitted_here(pca_dir: str) -> str | None:
    """Never overwrite a user's fitted parameters, nor label them as published."""
    if not os.path.exists(os.path.join(pca_dir, FITTED_MARKER)):
        return None
    return (f"{pca_dir} holds PCA parameters fitted with fit-pca ({FITTED_MARKER}), not the "
            "published ones: pass --pca-dir with another folder for the published files, or "
            f"move the fitted files out of {pca_dir}")


def extract_assets(weights_dir: str | None = None,
                   pca_dir: str = DEFAULT_PCA_DIR) -> list[Placed]:
    """Every published file of this stage and the folder it belongs in."""
    return ([Placed(a, weights_dir or cache_dir()) for a in WEIGHTS]
            + [Placed(a, pca_dir, refuse=_fitted_here) for a in PCA_ASSETS]
            + [Placed(a, reference_dir()) for a in REFERENCE_DATA])


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
