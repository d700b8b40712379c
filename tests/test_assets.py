"""Published assets: fetching against a real HTTP server on 127.0.0.1 (tests/http_mirror.py),
the `download` table (offline, --check, --mirror), and the missing-file messages."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, run_pipeline
from extract import assets as extract_assets
from extract import pca as extract_pca
from model.apps.pretrained import pretrained_dir, published_assets
from synthetic.paddle import random_params, write_pdparams
from test_dataset_download import official_vocabulary_csv
from test_paddle_convert import SMALL, _vocab
from yt8m import assets, vocabulary
from yt8m.assets import Asset, FetchFailed, cache_dir, fetch, find_asset
from yt8m.errors import UsageError
from yt8m.inventory import Placed, run

PAYLOAD = os.urandom(300_000)
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "no_proxy": "", "NO_PROXY": "", "YT8M_MIRROR": ""}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(d) -> list[str]:
    return [p for p in os.listdir(d) if "partial" in p]


def pca_tgz(rows: int = 1024) -> bytes:
    """yt8m_pca.tgz in the published layout (members in a folder, an unwanted README)."""
    arrays = {"mean.npy": np.zeros((2048, 1), np.float32),
              "eigenvals.npy": np.ones((2048, 1), np.float32),
              "eigenvecs.npy": np.zeros((rows, 2048), np.float32)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, a in [*arrays.items(), ("README", None)]:
            data = io.BytesIO()
            np.save(data, a) if a is not None else data.write(b"not wanted")
            info = tarfile.TarInfo(f"yt8m_pca/{name}")
            info.size = data.getbuffer().nbytes
            data.seek(0)
            tar.addfile(info, data)
    return buf.getvalue()


def vggish_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, pca_eigen_vectors=np.eye(128), pca_means=np.zeros((128, 1)))
    return buf.getvalue()


def stand_ins(tmp_path) -> dict[str, bytes]:
    """A body for every published file name: right structure, not the published bytes."""
    model = write_pdparams(random_params(SMALL), str(tmp_path / "model.pdparams"))
    bodies = {a.filename: os.urandom(5000) for a in (*extract_assets.WEIGHTS,
                                                      *extract_assets.REFERENCE_DATA)}
    bodies.update({"yt8m_pca.tgz": pca_tgz(), "vggish_pca_params.npz": vggish_npz(),
                   "vocabulary.csv": official_vocabulary_csv(),
                   "NEXTVLAD.pdparams": open(model, "rb").read()})
    return bodies


def placed_for(tmp_path, bodies: dict[str, bytes], model: bool = True):
    """The published list, with each published checksum swapped for its stand-in's and the
    model's layout for a small one: what `download` runs, at test scale."""
    placed = published_assets(str(tmp_path / "w"), str(tmp_path / "pca"), str(tmp_path / "v"),
                              model=model, layout=SMALL, vocabulary=_vocab(SMALL.num_classes))
    out = []
    for p in placed:
        a = p.asset
        if a.sha256:
            a = dataclasses.replace(a, sha256=sha(bodies[a.filename]), size=None)
        out.append(dataclasses.replace(p, asset=a))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "yt8m-toolkit"


# ------------------------------------------------------------------ fetch

def test_fetch_good_file_verifies_sha256_prefix(mirror, tmp_path):
    mirror.files["/weights-0123.pth"] = PAYLOAD
    asset = Asset("weights-0123.pth", f"{mirror.url}/weights-0123.pth", sha256=sha(PAYLOAD)[:8],
                  size=len(PAYLOAD))
    path = fetch(asset, str(tmp_path / "cache"), quiet=True)
    assert path == str(tmp_path / "cache" / "weights-0123.pth")
    assert open(path, "rb").read() == PAYLOAD and not leftovers(tmp_path / "cache")
    assert find_asset(asset, [str(tmp_path / "nowhere"), str(tmp_path / "cache")]) == path
    # A second fetch finds the verified file and does not download again.
    os.utime(path, (1, 1))
    assert fetch(asset, str(tmp_path / "cache"), quiet=True) == path
    assert os.stat(path).st_mtime == 1 and len(mirror.requests) == 1


def test_fetch_checksum_mismatch_deletes_and_explains(mirror, tmp_path):
    mirror.files["/w.pth"] = PAYLOAD
    asset = Asset("w.pth", f"{mirror.url}/w.pth", sha256="00000000")
    with pytest.raises(FetchFailed, match="00000000") as e:
        fetch(asset, str(tmp_path), quiet=True)
    assert e.value.state == "bad checksum"
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".lock")] == []


def test_fetch_404_is_a_usage_error(mirror, tmp_path):
    asset = Asset("gone.pth", f"{mirror.url}/gone.pth")
    with pytest.raises(UsageError, match="HTTP 404") as e:
        fetch(asset, str(tmp_path), quiet=True)
    assert "gone.pth" in str(e.value) and "python pipeline.py download" in str(e.value)
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".lock")] == []


def test_fetch_connection_refused_is_an_offline_error(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    asset = Asset("w.pth", f"http://127.0.0.1:{port}/w.pth", description="test weights")
    with pytest.raises(UsageError, match="network unreachable") as e:
        fetch(asset, str(tmp_path), quiet=True)
    assert "w.pth" in str(e.value) and str(tmp_path) in str(e.value)
    assert leftovers(tmp_path) == []


def test_fetch_unpacks_archive_members_and_checks_them(mirror, tmp_path):
    mirror.files["/yt8m_pca.tgz"] = pca_tgz()
    asset = dataclasses.replace(extract_pca.YT8M_PCA, url=f"{mirror.url}/yt8m_pca.tgz")
    assert fetch(asset, str(tmp_path), quiet=True) == str(tmp_path)
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith(".")) == \
        ["eigenvals.npy", "eigenvecs.npy", "mean.npy"]
    assert np.load(tmp_path / "eigenvecs.npy").shape == (1024, 2048)
    assert find_asset(asset, [str(tmp_path)]) == str(tmp_path)
    # Members of the wrong shape are refused and removed, not kept.
    mirror.files["/yt8m_pca.tgz"] = pca_tgz(rows=10)
    with pytest.raises(FetchFailed, match="eigenvecs.npy") as e:
        fetch(asset, str(tmp_path / "other"), quiet=True)
    assert e.value.state == "bad structure"
    assert not [n for n in os.listdir(tmp_path / "other") if n.endswith(".npy")]


def test_an_archive_whose_compressed_stream_is_damaged_is_refused_not_a_traceback(mirror, tmp_path):
    """No checksum is published for yt8m_pca.tgz: a damaged one shows when it is unpacked,
    where gzip's inflater raises zlib.error (no OSError)."""
    import gzip
    import zlib

    good = pca_tgz()
    for at in range(len(good) // 2, len(good)):  # the first flip that breaks the inflater
        damaged = good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            break
        except (OSError, EOFError):
            continue
    else:
        pytest.fail("no byte flip gave zlib.error")
    mirror.files["/yt8m_pca.tgz"] = damaged
    asset = dataclasses.replace(extract_pca.YT8M_PCA, url=f"{mirror.url}/yt8m_pca.tgz")
    with pytest.raises(FetchFailed, match="not a readable archive") as e:
        fetch(asset, str(tmp_path), quiet=True)
    assert e.value.state == "bad structure"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".npy")]


def test_a_206_answer_without_its_range_is_a_failed_fetch_not_a_traceback(mirror, tmp_path):
    mirror.files["/w.pth"] = b"x" * 5000
    mirror.bad_partial.add("/w.pth")
    with pytest.raises(FetchFailed) as e:
        fetch(Asset("w.pth", f"{mirror.url}/w.pth"), str(tmp_path), quiet=True)
    assert e.value.state == "failed" and "No such file" not in str(e.value), str(e.value)
    assert leftovers(tmp_path) == []


def test_archive_missing_a_member_is_refused(mirror, tmp_path):
    mirror.files["/yt8m_pca.tgz"] = pca_tgz()
    asset = Asset("yt8m_pca.tgz", f"{mirror.url}/yt8m_pca.tgz", members=("mean.npy", "other.npy"))
    with pytest.raises(UsageError, match="lacks other.npy"):
        fetch(asset, str(tmp_path), quiet=True)
    assert not (tmp_path / "mean.npy").exists()


def test_bad_file_on_disk_is_fetched_anew_not_reused(mirror, tmp_path):
    """A file that fails its checksum or structure is never taken for the published one."""
    mirror.files["/vocabulary.csv"] = official_vocabulary_csv()
    vocab = dataclasses.replace(vocabulary.YT8M_VOCABULARY, url=f"{mirror.url}/vocabulary.csv")
    (tmp_path / "vocabulary.csv").write_bytes(official_vocabulary_csv(10))  # a wrong file
    path, fetched = assets.obtain(vocab, str(tmp_path), quiet=True)
    assert fetched and open(path, "rb").read() == official_vocabulary_csv()
    mirror.files["/w.pth"] = PAYLOAD
    weights = Asset("w.pth", f"{mirror.url}/w.pth", sha256=sha(PAYLOAD)[:8])
    (tmp_path / "w.pth").write_bytes(PAYLOAD[:-1] + b"x")  # same size, other bytes
    assert assets.obtain(weights, str(tmp_path), quiet=True) == (str(tmp_path / "w.pth"), True)
    assert (tmp_path / "w.pth").read_bytes() == PAYLOAD


def test_published_model_that_fails_its_layout_is_fetched_anew(mirror, cache, tmp_path):
    from model.apps.pretrained import download_pretrained

    body = stand_ins(tmp_path)["NEXTVLAD.pdparams"]
    mirror.files["/NEXTVLAD.pdparams"] = body
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "NEXTVLAD.pdparams").write_bytes(body[: len(body) // 2])  # a cut copy
    folder = download_pretrained(str(tmp_path / "w"), quiet=True, layout=SMALL,
                                 vocabulary=_vocab(SMALL.num_classes), mirror=mirror.url)
    assert folder == pretrained_dir() and os.path.isfile(os.path.join(folder, "checkpoint.pt"))
    assert (tmp_path / "w" / "NEXTVLAD.pdparams").read_bytes() == body
    assert mirror.requests == [("/NEXTVLAD.pdparams", None)]


# ------------------------------------------------------------------ sizes and resuming

def test_cut_connection_resumes_where_it_stopped(mirror, tmp_path):
    mirror.files["/w.pth"] = PAYLOAD
    mirror.cut_after["/w.pth"] = 100_000
    asset = Asset("w.pth", f"{mirror.url}/w.pth", sha256=sha(PAYLOAD)[:8])
    with pytest.raises(FetchFailed, match="kept"):
        fetch(asset, str(tmp_path), quiet=True)
    assert leftovers(tmp_path) == [".partial-w.pth"]
    assert fetch(asset, str(tmp_path), quiet=True) == str(tmp_path / "w.pth")
    assert mirror.requests[-1] == ("/w.pth", "bytes=100000-")
    assert (tmp_path / "w.pth").read_bytes() == PAYLOAD and leftovers(tmp_path) == []


def test_a_part_longer_than_the_file_is_discarded_not_renamed(mirror, tmp_path):
    """The part of another, longer body (e.g. two writers appending) is never completed."""
    mirror.files["/w.pth"] = PAYLOAD
    (tmp_path / ".partial-w.pth").write_bytes(os.urandom(len(PAYLOAD) + 5000))
    asset = Asset("w.pth", f"{mirror.url}/w.pth")  # no checksum: only sizes can tell
    assert fetch(asset, str(tmp_path), quiet=True) == str(tmp_path / "w.pth")
    assert (tmp_path / "w.pth").read_bytes() == PAYLOAD
    assert mirror.requests == [("/w.pth", f"bytes={len(PAYLOAD) + 5000}-"), ("/w.pth", None)]


def test_two_downloads_at_once_give_one_correct_file(mirror, tmp_path):
    """Two `download` processes: the second waits for the first's download of the same
    file, then finds it in place; one request, one correct file, no traceback."""
    body = official_vocabulary_csv()
    mirror.files["/vocabulary.csv"] = body
    release = mirror.hold["/vocabulary.csv"] = threading.Event()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, os.path.join(ROOT, "pipeline.py"), "download", "--no-model",
           "--mirror", mirror.url, "--pca-dir", str(tmp_path / "pca"),
           "--vocabulary-dir", str(tmp_path / "v")]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while ("/vocabulary.csv", None) not in mirror.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    waited = second.stderr.readline() if second.stderr else ""
    while "waiting" not in waited and second.poll() is None:
        waited = second.stderr.readline()
    release.set()
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert "vocabulary.csv: another download of it is running; waiting" in waited
    for (_, stderr), p in zip(outs, (first, second)):
        assert p.returncode == 2 and "Traceback" not in stderr, stderr
    states = sorted(re.search(r"^(\w+) .*vocabulary\.csv", out, re.M).group(1)
                    for out, _ in outs)
    assert states == ["fetched", "present"]
    assert (tmp_path / "v" / "vocabulary.csv").read_bytes() == body
    assert mirror.requests.count(("/vocabulary.csv", None)) == 1
    assert leftovers(tmp_path / "v") == []


# ------------------------------------------------------------------ the download table

def test_every_url_is_immutable():
    """Files in a Git repository are pinned to a commit; release assets stay as published."""
    for p in published_assets():
        url = p.asset.url
        assert url.endswith("/" + p.asset.filename), url
        raw = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/([^/]+)/", url)
        if raw:
            assert re.fullmatch(r"[0-9a-f]{40}", raw.group(1)), f"{url} follows a branch"
        elif "github.com" in url:
            assert re.match(r"https://github\.com/[^/]+/[^/]+/releases/download/", url), url
        assert not re.search(r"/(master|main|HEAD|latest)/", url), url
    # A mirror holds the files by name: the names must not collide.
    assert len({p.asset.filename for p in published_assets()}) == len(published_assets())


def test_offline_download_names_every_asset_url_and_destination(tmp_path, cache):
    result = run_pipeline("download", "--weights-dir", str(tmp_path / "w"), "--pca-dir",
                          str(tmp_path / "pca"), "--vocabulary-dir", str(tmp_path / "v"),
                          "--quiet", env=dict(OFFLINE, XDG_CACHE_HOME=str(tmp_path / "xdg")),
                          timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    placed = published_assets(str(tmp_path / "w"), str(tmp_path / "pca"), str(tmp_path / "v"))
    assert len(placed) == 9
    for p in placed:
        line = next(ln for ln in result.stdout.splitlines() if p.asset.url in ln)
        assert line.startswith("failed") and p.asset.purpose in line
        assert assets.destination(p.asset, p.folder) in line
    assert str(tmp_path / "xdg" / "yt8m-toolkit" / "reference") in result.stdout
    assert "missing for real features or labels" in result.stderr


def test_download_from_a_mirror_completes(mirror, cache, tmp_path, capsys):
    bodies = stand_ins(tmp_path)
    mirror.files.update({f"/files/{n}": b for n, b in bodies.items()})
    mirror.cut_after["/files/vggish-10086976.pth"] = 1000  # the first run loses it mid-file
    placed = placed_for(tmp_path, bodies)
    with pytest.raises(UsageError, match="vggish-10086976.pth"):
        run(placed, f"{mirror.url}/files/", quiet=True)
    first = capsys.readouterr().out
    assert re.search(r"^failed .*vggish-10086976\.pth", first, re.M)
    assert re.search(r"^fetched .*vocabulary\.csv", first, re.M)  # the cut did not stop it
    assert run(placed, f"{mirror.url}/files", quiet=True) == 0
    table = capsys.readouterr().out
    assert ("/files/vggish-10086976.pth", "bytes=1000-") in mirror.requests
    assert re.search(r"^fetched .*vggish-10086976\.pth", table, re.M)
    assert len(re.findall(r"^present ", table, re.M)) == 8
    assert f"converted into {pretrained_dir()}" in table
    assert (tmp_path / "w" / "vggish-10086976.pth").read_bytes() == bodies["vggish-10086976.pth"]
    for a in extract_assets.REFERENCE_DATA:
        assert (cache / "reference" / a.filename).read_bytes() == bodies[a.filename]


def test_wrong_files_and_404_are_named_and_do_not_stop_the_others(mirror, cache, tmp_path,
                                                                  capsys):
    bodies = stand_ins(tmp_path)
    mirror.files.update({f"/{n}": b for n, b in bodies.items()})
    mirror.files["/vocabulary.csv"] = official_vocabulary_csv(10)  # wrong structure
    mirror.files["/vggish-10086976.pth"] = b"x" * 5000  # wrong checksum
    del mirror.files["/yt8m_pca.tgz"]  # 404
    with pytest.raises(UsageError) as e:
        run(placed_for(tmp_path, bodies), mirror.url, quiet=True)
    table = capsys.readouterr().out
    assert re.search(r"^bad structure .*vocabulary\.csv.*\n    .*3862", table, re.M)
    assert re.search(r"^bad checksum .*vggish-10086976\.pth", table, re.M)
    assert re.search(r"^failed .*yt8m_pca\.tgz.*\n    the URL answered HTTP 404", table, re.M)
    assert len(re.findall(r"^fetched ", table, re.M)) == 6
    for name in ("vocabulary.csv", "vggish-10086976.pth", "yt8m_pca.tgz"):
        assert name in str(e.value)
    assert not (tmp_path / "v" / "vocabulary.csv").exists()
    assert not (tmp_path / "w" / "vggish-10086976.pth").exists()
    assert leftovers(tmp_path / "v") == leftovers(tmp_path / "w") == []


def test_only_golden_files_missing_is_a_warning(mirror, cache, tmp_path, capsys):
    bodies = stand_ins(tmp_path)
    mirror.files.update({f"/{n}": b for n, b in bodies.items()})
    del mirror.files["/sports1m_frame.pkl"]
    assert run(placed_for(tmp_path, bodies, model=False), mirror.url, quiet=True) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^failed +golden checks .*sports1m_frame\.pkl", out, re.M)
    assert re.search(r"^skipped +real labels .*NEXTVLAD\.pdparams", out, re.M)
    assert "sports1m_frame.pkl" in err and "the published visual PCA check" in err


def test_check_reports_exactly_what_is_on_disk(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "vggish-10086976.pth").write_bytes(b"not the weights")
    (tmp_path / "pca").mkdir()
    with tarfile.open(fileobj=io.BytesIO(pca_tgz())) as tar:
        for m in tar.getmembers():
            if m.name.endswith(".npy"):
                (tmp_path / "pca" / os.path.basename(m.name)).write_bytes(
                    tar.extractfile(m).read())
    (tmp_path / "pca" / "vggish_pca_params.npz").write_bytes(b"garbage")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocabulary.csv").write_bytes(official_vocabulary_csv())
    before = {p: os.path.getmtime(p) for p in tmp_path.rglob("*")}  # --check writes nothing
    result = run_pipeline("download", "--check", "--weights-dir", str(tmp_path / "w"),
                          "--pca-dir", str(tmp_path / "pca"), "--vocabulary-dir",
                          str(tmp_path / "v"),
                          env=dict(OFFLINE, XDG_CACHE_HOME=str(tmp_path / "xdg")), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    states = {m.group(2): m.group(1) for m in re.finditer(
        r"^(missing|present|bad checksum|bad structure|failed) +\S+ \S+ +(\S+)",
        result.stdout, re.M)}
    w, pca, v = (str(tmp_path / d) for d in ("w", "pca", "v"))
    assert states == {
        f"{w}/pt_inception-2015-12-05-6726825d.pth": "missing",
        f"{w}/vggish-10086976.pth": "bad checksum",
        f"{pca}/{{mean.npy,eigenvals.npy,eigenvecs.npy}}": "present",
        f"{pca}/vggish_pca_params.npz": "bad structure",
        **{str(tmp_path / "xdg" / "yt8m-toolkit" / "reference" / a.filename): "missing"
           for a in extract_assets.REFERENCE_DATA},
        f"{v}/vocabulary.csv": "present",
        f"{w}/NEXTVLAD.pdparams": "missing"}, result.stdout
    assert before == {p: os.path.getmtime(p) for p in tmp_path.rglob("*")}
    assert "Run `python pipeline.py download` on a machine with network access" in result.stderr


def test_an_unreachable_host_is_tried_once_per_run(tmp_path, capsys):
    """Behind a firewall that drops packets each try waits for the whole timeout: a host
    that could not be reached is not tried again for the next files of the run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    placed = [Placed(Asset(n, f"http://{host}/{n}"), str(tmp_path)) for n in ("a.bin", "b.bin")]
    with pytest.raises(UsageError, match="a.bin, b.bin"):
        run(placed, quiet=True)
    out = capsys.readouterr().out
    assert "    network unreachable" in out
    assert f"    not tried: {host} could not be reached for an earlier file" in out


def test_fitted_pca_is_never_overwritten(tmp_path, cache, capsys):
    (tmp_path / "pca").mkdir()
    (tmp_path / "pca" / "FITTED.json").write_text("{}")
    with pytest.raises(UsageError, match="vggish_pca_params.npz"):
        run(placed_for(tmp_path, stand_ins(tmp_path)), "http://127.0.0.1:9", quiet=True)
    assert re.search(r"^failed .*yt8m_pca\.tgz.*\n    .*fitted with fit-pca", capsys.readouterr().out,
                     re.M)
    assert os.listdir(tmp_path / "pca") == ["FITTED.json"]


def test_mirror_must_be_a_url_and_dataset_regions_stay(tmp_path):
    result = run_pipeline("download", "--mirror", "eu", "--check", env=OFFLINE)
    assert result.returncode == 2 and "server holding the files by name" in result.stderr


# ------------------------------------------------------------------ messages and docs

def test_find_asset_names_files_dirs_and_command(tmp_path):
    with pytest.raises(UsageError) as e:
        find_asset(extract_pca.YT8M_PCA, [str(tmp_path)])
    msg = str(e.value)
    for text in ("mean.npy", "eigenvals.npy", "eigenvecs.npy", "yt8m_pca.tgz", str(tmp_path),
                 "python pipeline.py download", extract_pca.YT8M_PCA.url):
        assert text in msg


def test_missing_pca_message_comes_from_the_asset_list(tmp_path):
    from extract.pca import load_pca

    with pytest.raises(UsageError) as e:
        load_pca(str(tmp_path))
    for a in extract_pca.PCA_ASSETS:
        assert a.url in str(e.value) and a.filename in str(e.value)
    assert "vggish_pca_params-970ea276.pth" in str(e.value) and "fit-pca" in str(e.value)


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
    for a in extract_assets.WEIGHTS:
        assert a.filename in str(e.value) and a.url in str(e.value)
    assert str(tmp_path) in str(e.value) and "--random-weights" in str(e.value)
    (tmp_path / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"x")
    (tmp_path / "vggish-10086976.pth").write_bytes(b"x")
    assert extract_assets.resolve_weights(str(tmp_path), False) == (
        str(tmp_path / "pt_inception-2015-12-05-6726825d.pth"),
        str(tmp_path / "vggish-10086976.pth"))
    with pytest.raises(UsageError, match="xdg"):  # without --weights-dir: the cache
        extract_assets.resolve_weights(None, False)


def test_torch_hub_checksums_match_the_file_names():
    for asset in (*extract_assets.WEIGHTS, extract_pca.VGGISH_PCA_TORCH):
        assert asset.filename.rsplit("-", 1)[1].split(".")[0] == asset.sha256


def test_readme_and_reference_list_every_asset_as_the_table_does():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    rows = [ln for ln in readme.splitlines() if ln.startswith("| `")]
    for p in published_assets():
        row = next((r for r in rows if p.asset.url in r), None)
        assert row is not None, f"README has no row for {p.asset.url}"
        assert p.asset.purpose in row
        for name in p.asset.provides:
            assert f"`{name}`" in row
    reference = open(os.path.join(ROOT, "docs", "reference.md"), encoding="utf-8").read()
    assert "download --check" in reference and assets.MIRROR_ENV in reference
