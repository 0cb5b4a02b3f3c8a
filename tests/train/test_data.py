"""The IDX reader and the Fashion-MNIST loader: real files when the Debian package is
installed, and files built here (well-formed, truncated, corrupt, wrong magic) everywhere."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from isokit.train import DatasetUnavailableError, IDXFormatError, load_fashion_mnist, read_idx
from isokit.train.fashion_mnist import DEFAULT_ROOT

REAL = (DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file()
needs_package = pytest.mark.skipif(
    not REAL,
    reason="dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX encoding of ``array``, written independently of the reader."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(dtype).tobytes()


def write(path: Path, data: bytes, *, compress: bool = True) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
@pytest.mark.parametrize("compress", [True, False])
def test_every_element_type_reads_back_exactly(tmp_path, code, compress):
    rng = np.random.default_rng(code)
    array = rng.integers(0, 100, size=(3, 4, 5)).astype(np.float64)
    if code in (0x0D, 0x0E):
        array = array / 7.0
    got = read_idx(write(tmp_path / "a.idx", idx_bytes(array, code), compress=compress))
    want = array.astype(np.dtype(got.dtype))
    assert got.shape == (3, 4, 5) and got.dtype.isnative
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
        (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX element type 0x07"),
        (lambda b: b[:-1], "truncated: shape"),
        (lambda b: b + b"\x00", "longer than its header says"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b"", "magic number missing"),
    ],
)
def test_malformed_files_are_refused_naming_the_problem(tmp_path, mangle, match):
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    path = write(tmp_path / "bad.gz", mangle(good))
    with pytest.raises(IDXFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_a_truncated_gzip_stream_is_refused(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IDXFormatError, match="gzip stream is truncated or corrupt"):
        read_idx(path)


def _fake_split(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    root.mkdir(exist_ok=True)
    write(root / "train-images-idx3-ubyte.gz", idx_bytes(images))
    write(root / "train-labels-idx1-ubyte.gz", idx_bytes(labels))
    return root


def test_the_loader_scales_pads_and_replicates(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    labels = np.array([0, 1, 9, 3, 4], dtype=np.uint8)
    data = load_fashion_mnist(
        root=_fake_split(tmp_path / "d", images, labels), pad_to=32, channels=3
    )
    assert data.images.shape == (5, 3, 32, 32) and data.images.dtype == torch.float32
    torch.testing.assert_close(
        data.images[:, 1, 2:30, 2:30], torch.from_numpy(images / 255.0).float()
    )
    assert float(data.images[:, :, :2].abs().sum()) == 0.0  # the padding is zero
    assert torch.equal(data.images[:, 0], data.images[:, 2])
    assert data.labels.tolist() == [0, 1, 9, 3, 4] and data.labels.dtype == torch.int64


def test_the_loader_refuses_wrong_contents_and_missing_files(tmp_path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    root = _fake_split(tmp_path / "n", images, np.zeros(2, dtype=np.uint8))
    with pytest.raises(IDXFormatError, match="2,\\) labels for 3 images"):
        load_fashion_mnist(root=root)
    root = _fake_split(tmp_path / "l", images, np.array([0, 1, 10], dtype=np.uint8))
    with pytest.raises(IDXFormatError, match="label 10 outside 0..9"):
        load_fashion_mnist(root=root)
    root = _fake_split(tmp_path / "s", np.zeros((3, 28, 27), dtype=np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(IDXFormatError, match="Fashion-MNIST images are"):
        load_fashion_mnist(root=root)
    with pytest.raises(DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "val"}, "split"), ({"pad_to": 20}, "pad_to"), ({"channels": 0}, "channels")],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_fashion_mnist(**kwargs)


@needs_package
def test_the_real_files_hold_balanced_classes_of_28_by_28_images():
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.labels.bincount().tolist() == [6000] * 10
    assert test.labels.bincount().tolist() == [1000] * 10
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) == 1.0
    assert len(load_fashion_mnist("test", limit=7)) == 7
