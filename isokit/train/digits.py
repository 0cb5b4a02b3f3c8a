"""scikit-learn's bundled handwritten digits as :class:`~isokit.train.TrainData`: a small real
classification set that needs no download (:func:`digits_data`).

``sklearn.datasets.load_digits`` ships 1797 grey 8×8 images of the digits 0–9 (about 180 per
class) with integer grey levels 0..16 inside the package. They are scaled to [0, 1] and split
into a training and a held-out part from ``seed``: stratified (each class contributes the same
fraction to the held-out part) or a plain permutation. scikit-learn is the optional ``digits``
extra (``pip install isokit[digits]``); without it :class:`DatasetUnavailableError` says so.

Example:
    >>> data = digits_data(seed=0)  # doctest: +SKIP
    >>> data.train.inputs.shape, data.test.inputs.shape, data.num_classes  # doctest: +SKIP
    (torch.Size([1347, 64]), torch.Size([450, 64]), 10)
"""

from __future__ import annotations

import math

import torch

from isokit.train.data import DataError, Split, TrainData
from isokit.train.fashion_mnist import DatasetUnavailableError

__all__ = ["LAYOUTS", "digits_data", "load_digits_arrays"]

#: ``flat``: inputs ``[N, 64]`` (for MLPs); ``image``: ``[N, 1, 8, 8]`` (for conv nets).
LAYOUTS: tuple[str, ...] = ("flat", "image")
N_CLASSES = 10
#: Grey levels of the bundled images run 0..16.
MAX_LEVEL = 16.0
#: The split's stream of SeedSequence([seed, stream]), apart from the trainer's streams.
_SPLIT_STREAM = 200
INSTALL = "pip install isokit[digits]  (or: pip install scikit-learn)"


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1797 images ``[N, 64]`` (float64 grey levels 0..16) and labels ``[N]`` (int64).

    Raises:
        DatasetUnavailableError: scikit-learn is not installed (the message says how).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetUnavailableError(
            f"the digits data set comes with scikit-learn, which is not installed ({exc}); "
            f"install it with {INSTALL}"
        ) from None
    bunch = load_digits()
    images = torch.as_tensor(bunch.data, dtype=torch.float64)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return images, labels


def _check(seed: object, test_fraction: object, layout: object, stratify: object) -> float:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed: must be an int >= 0, got {seed!r}")
    ok = isinstance(test_fraction, int | float) and not isinstance(test_fraction, bool)
    if not (ok and math.isfinite(test_fraction) and 0.0 < test_fraction < 1.0):
        raise DataError(
            f"test_fraction: must be a number strictly between 0 and 1, got {test_fraction!r}"
        )
    if layout not in LAYOUTS:
        raise DataError(f"layout: must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(stratify, bool):
        raise DataError(f"stratify: must be true or false, got {stratify!r}")
    return float(test_fraction)


def _held_out(labels: torch.Tensor, fraction: float, stratify: bool, seed: int) -> torch.Tensor:
    """A boolean mask of the held-out examples, drawn from ``seed``."""
    from isokit.train.loop import stream_seed

    gen = torch.Generator().manual_seed(stream_seed(seed, _SPLIT_STREAM))
    mask = torch.zeros(labels.shape[0], dtype=torch.bool)
    groups = [labels == c for c in range(N_CLASSES)] if stratify else [labels >= 0]
    what = "a class" if stratify else "the set"
    for members in groups:
        index = members.nonzero().squeeze(1)
        n_test = round(fraction * index.numel())
        if not 0 < n_test < index.numel():
            raise DataError(
                f"test_fraction: {fraction} holds out {n_test} of the {index.numel()} examples of "
                f"{what}; each split needs at least one"
            )
        mask[index[torch.randperm(index.numel(), generator=gen)[:n_test]]] = True
    return mask


def digits_data(
    *,
    seed: int = 0,
    test_fraction: float = 0.25,
    layout: str = "flat",
    stratify: bool = True,
) -> TrainData:
    """The digits split into training and held-out parts (module docstring).

    Args:
        seed: draws which examples are held out.
        test_fraction: the held-out share, of each class with ``stratify`` (rounded per class),
            else of the whole set.
        layout: ``"flat"`` (``[N, 64]``) or ``"image"`` (``[N, 1, 8, 8]``).
        stratify: hold out the same fraction of every class, else a plain permutation.

    Both splits keep the bundled order (the trainer shuffles), float32 inputs in [0, 1].

    Raises:
        DataError: a bad option (the message names it).
        DatasetUnavailableError: scikit-learn is missing.
    """
    fraction = _check(seed, test_fraction, layout, stratify)
    images, labels = load_digits_arrays()
    inputs = (images / MAX_LEVEL).to(torch.float32)
    if layout == "image":
        inputs = inputs.reshape(-1, 1, 8, 8)
    test = _held_out(labels, fraction, stratify, seed)
    return TrainData(
        name="digits",
        task="classification",
        train=Split(inputs=inputs[~test], targets=labels[~test]),
        test=Split(inputs=inputs[test], targets=labels[test]),
        num_classes=N_CLASSES,
        info={
            "seed": seed,
            "test_fraction": fraction,
            "layout": layout,
            "stratify": stratify,
        },
    )
