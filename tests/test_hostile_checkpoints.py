"""Files built to hurt the reader: tiny files declaring huge arrays, keys nested a
million deep, cycles, codecs that expand, truncations. Each is written byte for byte,
read by a real `pipeline.py` child: exit 2 with a message naming the problem, no
traceback, no signal, and no more memory than converting a good file."""
from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch

from conftest import ROOT, run_measured
from paddle_reference import write_python2_pdparams
from synthetic.paddle import random_params, write_pdparams
from test_paddle_convert import SMALL, _vocab_file

MARGIN_MIB = 120  # over the good file's peak; every bomb here would cost gigabytes
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


def _run(argv: list[str], tmp_path) -> tuple[int, str, float]:
    """A child process: (exit status, negative for a signal; its stderr; its own peak RSS
    in MiB)."""
    got = run_measured(argv, timeout=600)
    return got.returncode, got.stderr, got.peak_rss_mb


def _convert(path: str, tmp_path) -> tuple[int, str, float]:
    return _run([os.path.join(ROOT, "pipeline.py"), "convert-checkpoint", "--from", "paddle",
                 path, "--out", str(tmp_path / "out"), "--vocabulary", _vocab_file(tmp_path, 7)],
                tmp_path)


@pytest.fixture(scope="module")
def good_peak(tmp_path_factory) -> float:
    """What converting a good file (the real layout, small sizes) costs."""
    tmp = tmp_path_factory.mktemp("good")
    rc, err, peak = _convert(write_pdparams(random_params(SMALL), str(tmp / "good.pdparams")), tmp)
    assert rc == 0, err
    return peak


class _Declared:
    """Pickles as NumPy pickles an array, but declaring any shape and dtype over any data."""

    def __init__(self, shape, dtype, data):
        self.shape, self.dtype, self.data = shape, dtype, data

    def __reduce__(self):
        return (_RECONSTRUCT, (np.ndarray, (0,), b"b"),
                (1, self.shape, np.dtype(self.dtype), False, self.data))


class _Call:
    """Pickles as a call of `func` (a global the pickle names) with `args`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _with(name: str, value) -> dict:
    params = random_params(SMALL)
    params[name] = value  # in place: the other entries stay before and after it
    return params


def _raw_entry(key: bytes, value: bytes) -> bytes:
    """A protocol 2 pickle {key: value}, key and value given as opcodes."""
    return b"\x80\x02}" + key + value + b"s."


def _binunicode(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def _bomb(case: str) -> bytes:
    if case == "ndarray-5e8":  # numpy.ndarray((5e8,)) called directly
        return _raw_entry(_binunicode("eigen_param"),
                          b"cnumpy\nndarray\nJ" + struct.pack("<i", 500_000_000) + b"\x85R")
    if case == "ndarray-1e9":
        return _raw_entry(_binunicode("eigen_param"),
                          b"cnumpy\nndarray\nJ" + struct.pack("<i", 1_000_000_000) + b"\x85R")
    if case == "nested-100k":  # a key: a tuple in a tuple ... 100k deep, MARK by MARK
        return _raw_entry(b"(" * 100_000 + b")" + b"t" * 100_000, b"K\x01")
    if case == "nested-1m":  # a million TUPLE1 on one object: the stack never grows
        return _raw_entry(b"K\x01" + b"\x85" * 1_000_000, b"K\x01")
    if case == "declares-more-bytes":  # BINBYTES of 4 GiB with 10 bytes behind it
        return b"\x80\x03}" + _binunicode("eigen_param") + b"B\xff\xff\xff\xff" + b"x" * 10
    if case == "hex-codec":  # 1 KB "encoded" with a codec that doubles it, 20 times: 1 GiB
        value = b"x" * 1024
        for _ in range(20):
            value = _Call(codecs.encode, value, "hex")
        return pickle.dumps({"eigen_param": value}, protocol=2)
    raise AssertionError(case)


def _pickled(case: str) -> bytes:
    """Real-layout files with one hostile entry."""
    if case in ("declared-5e8", "declared-1e9"):  # the array state declares n float32 over 16 bytes
        n = 500_000_000 if case == "declared-5e8" else 1_000_000_000
        return pickle.dumps(_with("hidden1_fc_weights", _Declared((n, 1), "<f4", b"\0" * 16)),
                            protocol=2)
    if case == "object-dtype":
        return pickle.dumps(_with("eigen_param", _Declared((500_000_000,), "O", [])), protocol=2)
    if case == "wrong-dtype":
        return pickle.dumps(_with("eigen_param", np.zeros(1024, np.complex64)), protocol=2)
    if case == "wrong-ndim":
        return pickle.dumps(_with("eigen_param", np.zeros((32, 32), np.float32)), protocol=2)
    if case == "memo-reuse":  # one 4 MiB buffer behind several arrays, written once
        shared = b"\0" * (4 << 20)
        params = random_params(SMALL)
        for i in range(4):
            params[f"batch_norm_{i}.w_0"] = _Declared((1 << 20,), "<f4", shared)
        return pickle.dumps(params, protocol=2)
    if case == "huge-name":
        params = random_params(SMALL)
        params["x" * (16 << 20)] = np.zeros(3, np.float32)
        return pickle.dumps(params, protocol=2)
    if case == "cycle":
        loop: list = []
        loop.append(loop)
        return pickle.dumps(_with("eigen_param", loop), protocol=2)
    if case == "truncated":
        data = pickle.dumps(random_params(SMALL), protocol=2)
        return data[:len(data) * 2 // 3]
    return _bomb(case)


EXPECTED = {
    "ndarray-5e8": "calls numpy.ndarray directly", "ndarray-1e9": "calls numpy.ndarray directly",
    "nested-100k": "nests objects more than 64 deep", "nested-1m": "nests objects more than 64 deep",
    "declares-more-bytes": "declares 4294967295 bytes where only 10 remain",
    "hex-codec": "codec other than latin1",
    "declared-5e8": "declares 500000000 elements of float32 (2000000000 bytes) but holds 16",
    "declared-1e9": "declares 1000000000 elements of float32 (4000000000 bytes) but holds 16",
    "object-dtype": "dtype 'O8', which is not a plain number type",
    "wrong-dtype": "dtype 'c8', which is not a plain number type",
    "wrong-ndim": "eigen_param has 2 dimensions, expected 1",
    "memo-reuse": "its arrays declare more bytes than the file holds",
    "huge-name": "unexpected xxxxxxxx", "cycle": "a cycle", "truncated": "truncated",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_hostile_pdparams_exit_2_with_bounded_memory(tmp_path, good_peak, case):
    path = tmp_path / f"{case}.pdparams"
    path.write_bytes(_pickled(case))
    rc, err, peak = _convert(str(path), tmp_path)
    assert rc == 2, f"exit {rc}: {err[-2000:]}"
    assert "Traceback" not in err and str(path) in err
    assert EXPECTED[case] in err, err
    assert len(err) < 3000  # a 16 MiB name is not echoed back
    assert peak < good_peak + MARGIN_MIB, f"{case}: {peak:.0f} MiB, a good file {good_peak:.0f} MiB"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_good_files_load_exactly_as_pickle_does(tmp_path, protocol):
    """Protocol 2 is what Paddle 1.x writes, 4 what paddle.save writes; Python 2 below."""
    from model.apps.paddle_nextvlad import load_pdparams

    params = random_params(SMALL)
    path = write_pdparams(params, str(tmp_path / "p.pdparams"), protocol=protocol)
    loaded = load_pdparams(path, layout=True)
    assert list(loaded) == list(params)
    for name, value in pickle.load(open(path, "rb")).items():  # our own file: trusted
        assert loaded[name].dtype == np.float32 and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)


def test_python2_file_converts_with_the_memory_of_any_good_file(tmp_path, good_peak):
    path = write_python2_pdparams(random_params(SMALL), str(tmp_path / "py2.pdparams"))
    rc, err, peak = _convert(path, tmp_path)
    assert rc == 0, err
    assert peak < good_peak + MARGIN_MIB


def test_download_conversion_refuses_the_same_bombs(mirror, tmp_path, monkeypatch):
    """`download` converts through the same loader: a bomb served over HTTP is refused."""
    import dataclasses

    from model.apps.paddle_nextvlad import PADDLE_NEXTVLAD
    from model.apps.pretrained import download_pretrained
    from test_paddle_convert import _vocab
    from yt8m.errors import UsageError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mirror.files["/NEXTVLAD.pdparams"] = _pickled("nested-1m")
    published = dataclasses.replace(PADDLE_NEXTVLAD, asset=dataclasses.replace(
        PADDLE_NEXTVLAD.asset, url=f"{mirror.url}/NEXTVLAD.pdparams"))
    with pytest.raises(UsageError, match="nests objects more than 64 deep"):
        download_pretrained(published=published, layout=SMALL, vocabulary=_vocab(7), quiet=True)


# --------------------------------------------------------------------------- torch files

_LOAD = ("import sys\nfrom yt8m.errors import UsageError\n"
         "from model.training.checkpoint import Checkpoint\nfrom extract.pca import load_audio_pca\n"
         "load = Checkpoint.load if sys.argv[1] == 'checkpoint' else load_audio_pca\n"
         "try:\n    load(sys.argv[2])\nexcept UsageError as e:\n"
         "    print(e, file=sys.stderr)\n    sys.exit(2)\n")


def _torch_file(path, obj=None, data_pkl: bytes | None = None) -> str:
    """torch.save's zip of `obj`, or of a placeholder whose data.pkl is replaced."""
    buf = io.BytesIO()
    torch.save(obj if data_pkl is None else {"a": 1}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            out.writestr(info, data_pkl if data_pkl and info.filename.endswith("/data.pkl") else data)
    return str(path)


def _load_cost(kind: str, path: str, tmp_path) -> tuple[int, str, float]:
    return _run(["-c", _LOAD, kind, path], tmp_path)


def test_checkpoint_nested_a_million_deep_is_refused_not_a_segfault(tmp_path):
    path = _torch_file(tmp_path / "checkpoint.pt", data_pkl=_bomb("nested-1m"))
    rc, err, _ = _load_cost("checkpoint", path, tmp_path)
    assert rc == 2 and "nests objects more than 64 deep" in err, (rc, err[-2000:])


def test_checkpoint_with_a_compressed_entry_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _torch_file(path, {"format": 1})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data/9", b"\0" * (1 << 20))  # deflates to a few hundred bytes
    rc, err, _ = _load_cost("checkpoint", str(path), tmp_path)
    assert rc == 2 and "is compressed or larger than the file" in err, (rc, err[-2000:])


def test_pca_pth_bombs_are_refused_with_bounded_memory(tmp_path):
    good = _torch_file(tmp_path / "good.pth", {"pca_eigen_vectors": np.eye(128),
                                               "pca_means": np.zeros((128, 1))})
    rc, err, good_peak = _load_cost("pca", good, tmp_path)
    assert rc == 0, err
    bombs = {  # _reconstruct declaring 5e8 elements: NumPy would allocate them uninitialized
        "reconstruct": _Call(_RECONSTRUCT, np.ndarray, (500_000_000,), b"b"),
        "declared": _Declared((500_000_000,), "<f8", b"\0" * 16),
        "ndarray": _Call(np.ndarray, (500_000_000,)),
        "object": _Declared((500_000_000,), "O", []),
    }
    expected = {"reconstruct": "in a way NumPy never writes", "declared": "but holds 16",
                "ndarray": "calls numpy.ndarray directly", "object": "not a plain number type"}
    for name, bomb in bombs.items():
        path = _torch_file(tmp_path / f"{name}.pth", {"pca_eigen_vectors": bomb,
                                                      "pca_means": np.zeros(128)})
        rc, err, peak = _load_cost("pca", path, tmp_path)
        assert rc == 2 and expected[name] in err, (name, rc, err[-2000:])
        assert peak < good_peak + MARGIN_MIB, f"{name}: {peak:.0f} MiB, good {good_peak:.0f} MiB"


def test_pca_pth_in_torch_legacy_format_still_loads(tmp_path):
    """The port's file predates torch's zip format; both are scanned and read."""
    from extract.pca import load_audio_pca

    vecs = np.random.default_rng(0).normal(size=(128, 128))
    for name, zipped in (("legacy.pth", False), ("zip.pth", True)):
        path = str(tmp_path / name)
        torch.save({"pca_eigen_vectors": vecs, "pca_means": np.ones((128, 1))}, path,
                   _use_new_zipfile_serialization=zipped)
        loaded = load_audio_pca(path)
        np.testing.assert_allclose(loaded.components, vecs.T.astype(np.float32))
        np.testing.assert_array_equal(loaded.means, np.ones(128))
