"""Asset fetching against a real HTTP server on 127.0.0.1, and the missing-file messages."""
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading

import numpy as np
import pytest

from extract import assets as extract_assets
from yt8m import assets
from yt8m.assets import Asset, cache_dir, fetch, find_asset
from yt8m.errors import UsageError

PAYLOAD = os.urandom(300_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "weights-0123.pth").write_bytes(PAYLOAD)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("mean.npy", "eigenvals.npy", "eigenvecs.npy"):
            data = io.BytesIO()
            np.save(data, np.arange(4, dtype=np.float32))
            info = tarfile.TarInfo(f"yt8m_pca/{name}")  # members sit in a folder
            info.size = data.getbuffer().nbytes
            data.seek(0)
            tar.addfile(info, data)
        readme = b"not wanted"
        info = tarfile.TarInfo("README")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    (root / "yt8m_pca.tgz").write_bytes(buf.getvalue())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(d):
    return [p for p in os.listdir(d) if "partial" in p]


def test_fetch_good_file_verifies_sha256_prefix(server, tmp_path):
    prefix = hashlib.sha256(PAYLOAD).hexdigest()[:8]
    asset = Asset("weights-0123.pth", f"{server}/weights-0123.pth", sha256=prefix,
                  size=len(PAYLOAD))
    path = fetch(asset, str(tmp_path / "cache"), quiet=True)
    assert path == str(tmp_path / "cache" / "weights-0123.pth")
    assert open(path, "rb").read() == PAYLOAD and not leftovers(tmp_path / "cache")
    assert find_asset(asset, [str(tmp_path / "nowhere"), str(tmp_path / "cache")]) == path
    # A second fetch finds the verified file and does not download again.
    os.utime(path, (1, 1))
    assert fetch(asset, str(tmp_path / "cache"), quiet=True) == path
    assert os.stat(path).st_mtime == 1


def test_fetch_checksum_mismatch_deletes_and_explains(server, tmp_path):
    asset = Asset("weights-0123.pth", f"{server}/weights-0123.pth", sha256="00000000")
    with pytest.raises(UsageError, match="corrupt") as e:
        fetch(asset, str(tmp_path), quiet=True)
    assert "00000000" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_fetch_404_is_a_usage_error(server, tmp_path):
    asset = Asset("gone.pth", f"{server}/gone.pth")
    with pytest.raises(UsageError, match="HTTP 404") as e:
        fetch(asset, str(tmp_path), quiet=True)
    assert "gone.pth" in str(e.value) and "python pipeline.py download" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_fetch_connection_refused_is_an_offline_error(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    asset = Asset("w.pth", f"http://127.0.0.1:{port}/w.pth", description="test weights")
    with pytest.raises(UsageError, match="network unreachable") as e:
        fetch(asset, str(tmp_path), quiet=True)
    assert "w.pth" in str(e.value) and str(tmp_path) in str(e.value)
    assert os.listdir(tmp_path) == []


def test_fetch_unpacks_archive_members(server, tmp_path):
    asset = Asset("yt8m_pca.tgz", f"{server}/yt8m_pca.tgz",
                  members=("mean.npy", "eigenvals.npy", "eigenvecs.npy"))
    assert fetch(asset, str(tmp_path), quiet=True) == str(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["eigenvals.npy", "eigenvecs.npy", "mean.npy"]
    assert np.array_equal(np.load(tmp_path / "mean.npy"), np.arange(4, dtype=np.float32))
    assert find_asset(asset, [str(tmp_path)]) == str(tmp_path)


def test_archive_missing_a_member_is_refused(server, tmp_path):
    asset = Asset("yt8m_pca.tgz", f"{server}/yt8m_pca.tgz", members=("mean.npy", "other.npy"))
    with pytest.raises(UsageError, match="lacks other.npy"):
        fetch(asset, str(tmp_path), quiet=True)


def test_find_asset_names_files_dirs_and_command(tmp_path):
    with pytest.raises(UsageError) as e:
        find_asset(extract_assets.YT8M_PCA, [str(tmp_path)])
    msg = str(e.value)
    for text in ("mean.npy", "eigenvals.npy", "eigenvecs.npy", "yt8m_pca.tgz", str(tmp_path),
                 "python pipeline.py download", "http://data.yt8m.org/yt8m_pca.tgz"):
        assert text in msg


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == str(tmp_path / "yt8m-toolkit")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "yt8m-toolkit")


def test_resolve_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert extract_assets.resolve_weights(None, random_weights=True) == (None, None)
    with pytest.raises(UsageError) as e:
        extract_assets.resolve_weights(str(tmp_path), random_weights=False)
    for text in ("pt_inception-2015-12-05-6726825d.pth", "vggish-10086976.pth", str(tmp_path),
                 "--random-weights"):
        assert text in str(e.value)
    (tmp_path / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"x")
    (tmp_path / "vggish-10086976.pth").write_bytes(b"x")
    assert extract_assets.resolve_weights(str(tmp_path), False) == (
        str(tmp_path / "pt_inception-2015-12-05-6726825d.pth"),
        str(tmp_path / "vggish-10086976.pth"))
    # Without --weights-dir the cache is searched.
    with pytest.raises(UsageError, match="xdg"):
        extract_assets.resolve_weights(None, False)


def test_published_urls_and_checksums_are_declared():
    for asset in (*extract_assets.WEIGHTS, *extract_assets.PCA_ASSETS,
                  extract_assets.VGGISH_PCA_TORCH, assets.YT8M_VOCABULARY):
        assert asset.url.startswith(("http://", "https://")) and asset.url.endswith(asset.filename)
    # torch hub convention: the sha256 prefix is the last dash-separated part of the name.
    for asset in (*extract_assets.WEIGHTS, extract_assets.VGGISH_PCA_TORCH):
        assert asset.filename.rsplit("-", 1)[1].split(".")[0] == asset.sha256


def test_download_all_puts_weights_in_cache_and_pca_in_pca_dir(server, monkeypatch, tmp_path):
    weights = Asset("weights-0123.pth", f"{server}/weights-0123.pth",
                    sha256=hashlib.sha256(PAYLOAD).hexdigest()[:8])
    tgz = Asset("yt8m_pca.tgz", f"{server}/yt8m_pca.tgz",
                members=("mean.npy", "eigenvals.npy", "eigenvecs.npy"))
    monkeypatch.setattr(extract_assets, "WEIGHTS", (weights,))
    monkeypatch.setattr(extract_assets, "PCA_ASSETS", (tgz,))
    reference = Asset("weights-0123.pth", f"{server}/weights-0123.pth")
    monkeypatch.setattr(extract_assets, "REFERENCE_DATA", (reference,))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    paths = extract_assets.download_all(None, pca_dir=str(tmp_path / "pca"), quiet=True)
    assert paths == [str(tmp_path / "xdg" / "yt8m-toolkit" / "weights-0123.pth"),
                     str(tmp_path / "pca"),
                     str(tmp_path / "xdg" / "yt8m-toolkit" / "reference" / "weights-0123.pth")]
    assert sorted(os.listdir(tmp_path / "pca")) == ["eigenvals.npy", "eigenvecs.npy", "mean.npy"]


def test_download_refuses_to_overwrite_fitted_pca(monkeypatch, tmp_path):
    (tmp_path / "pca").mkdir()
    (tmp_path / "pca" / "FITTED.json").write_text("{}")
    monkeypatch.setattr(extract_assets, "WEIGHTS", ())  # nothing to fetch before the check
    with pytest.raises(UsageError, match="fitted"):
        extract_assets.download_all(str(tmp_path / "w"), pca_dir=str(tmp_path / "pca"), quiet=True)
    assert os.listdir(tmp_path / "pca") == ["FITTED.json"]
