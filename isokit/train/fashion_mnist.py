"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist``: :func:`load_fashion_mnist`.

The package installs the four gzip-compressed IDX files under
``/usr/share/datasets/fashion-mnist`` (``dpkg -L dataset-fashion-mnist``): 60 000 training and
10 000 test images of 28×28 grey levels with labels 0–9. Nothing is downloaded. Every file is
checked (:func:`isokit.train.idx.read_idx`: magic number, sizes, bytes) and so is what it holds
(image shape, label range, matching counts); a missing file raises
:class:`DatasetUnavailableError` saying how to install the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from isokit.train.idx import IDXFormatError, read_idx

__all__ = [
    "DEFAULT_ROOT",
    "DatasetUnavailableError",
    "ImageSet",
    "fashion_mnist_data",
    "load_fashion_mnist",
]

#: Where the Debian package puts the files; ``ISOKIT_FASHION_MNIST`` or ``root=`` override it.
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
N_CLASSES = 10
INSTALL = "apt-get install dataset-fashion-mnist (Debian/Ubuntu; as root)"


class DatasetUnavailableError(FileNotFoundError):
    """A data set whose files are not on this machine."""


@dataclass(frozen=True, kw_only=True)
class ImageSet:
    """Images ``[N, C, H, W]`` (float32 in [0, 1]) and their labels ``[N]`` (int64)."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _root(root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    return Path(os.environ.get("ISOKIT_FASHION_MNIST", DEFAULT_ROOT))


def _check(images: np.ndarray, labels: np.ndarray, n: int | None, where: Path) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise IDXFormatError(
            f"{where}: images of shape {images.shape} ({images.dtype}); Fashion-MNIST images are "
            "(N, 28, 28) uint8"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise IDXFormatError(
            f"{where}: {labels.shape} labels for {images.shape[0]} images; they must match"
        )
    if n is not None and images.shape[0] != n:
        raise IDXFormatError(f"{where}: {images.shape[0]} images, the split has {n}")
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise IDXFormatError(f"{where}: label {int(labels.max())} outside 0..{N_CLASSES - 1}")


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad ``[N, C, 28, 28]`` images symmetrically to ``size × size``."""
    before = (size - 28) // 2
    after = size - 28 - before
    return torch.nn.functional.pad(x, (before, after, before, after))


def load_fashion_mnist(
    split: str = "train",
    *,
    root: str | Path | None = None,
    pad_to: int | None = None,
    channels: int = 1,
    limit: int | None = None,
) -> ImageSet:
    """The ``"train"`` or ``"test"`` split as an :class:`ImageSet`.

    Args:
        split: ``"train"`` (60 000) or ``"test"`` (10 000).
        root: the directory of the IDX files (default: ``$ISOKIT_FASHION_MNIST``, else the
            Debian package's :data:`DEFAULT_ROOT`).
        pad_to: zero-pad each image symmetrically to ``pad_to × pad_to`` (32 for CIFAR-style
            ResNets); ``None`` keeps 28×28.
        channels: replicate the grey channel this many times (3 for RGB models).
        limit: keep the first ``limit`` examples (the files' order).

    Raises:
        DatasetUnavailableError: a file is missing (the message says how to install it).
        IDXFormatError: a file is truncated, corrupt or holds something else.
        ValueError: a bad argument.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if pad_to is not None and (not isinstance(pad_to, int) or pad_to < 28):
        raise ValueError(f"pad_to must be an int ≥ 28 or None, got {pad_to!r}")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    base = _root(root)
    image_file, label_file, n = _FILES[split]
    paths = [base / image_file, base / label_file]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetUnavailableError(
            f"Fashion-MNIST is not installed: {', '.join(missing)} not found; install it with "
            f"{INSTALL}, or point ISOKIT_FASHION_MNIST at a directory holding the IDX files"
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    _check(images, labels, n if root is None else None, base)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if pad_to is not None:
        x = _pad(x, pad_to)
    if channels > 1:
        x = x.expand(-1, channels, -1, -1).contiguous()
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageSet(images=x, labels=y, name="fashion-mnist", split=split)


def fashion_mnist_data(
    *,
    seed: int = 0,
    pad_to: int | None = 32,
    channels: int = 1,
    standardize: bool = True,
    limit: int | None = None,
    test_limit: int | None = None,
    root: str | None = None,
):
    """Fashion-MNIST as :class:`isokit.train.TrainData`: 60 000 training and 10 000 held-out
    images, padded to 32×32 by default for CIFAR-style ResNets (``pad_to=None`` keeps 28×28).

    With ``standardize`` (the default) every pixel becomes ``(x − μ)/s`` with the mean μ and
    standard deviation s of the training images (0.286 and 0.353 on the full split), before the
    zero padding, so the border reads as the average pixel and the inputs have unit variance, as
    the initialization schemes assume. ``seed`` is unused (the files fix the data); ``limit``
    and ``test_limit`` keep the first examples of each split.
    """
    from isokit.train.data import DataError, Split, TrainData

    del seed
    if not isinstance(standardize, bool):
        raise DataError(f"standardize: must be true or false, got {standardize!r}")
    try:
        train = load_fashion_mnist("train", root=root, channels=channels, limit=limit)
        test = load_fashion_mnist("test", root=root, channels=channels, limit=test_limit)
        if pad_to is not None and (not isinstance(pad_to, int) or pad_to < 28):
            raise ValueError(f"pad_to must be an int ≥ 28 or None, got {pad_to!r}")
    except ValueError as exc:
        if isinstance(exc, IDXFormatError):
            raise
        raise DataError(str(exc)) from None
    mean, std = (float(train.images.mean()), float(train.images.std())) if standardize else (0, 1)

    def prepared(images: torch.Tensor) -> torch.Tensor:
        x = (images - mean) / std if standardize else images
        return x if pad_to is None else _pad(x, pad_to)

    return TrainData(
        name="fashion-mnist",
        task="classification",
        train=Split(inputs=prepared(train.images), targets=train.labels),
        test=Split(inputs=prepared(test.images), targets=test.labels),
        num_classes=N_CLASSES,
        info={
            "pad_to": pad_to,
            "channels": channels,
            "standardize": standardize,
            "mean": mean,
            "std": std,
            "limit": limit,
            "test_limit": test_limit,
        },
    )
