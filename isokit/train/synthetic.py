"""Synthetic regression tasks, built from a seed in milliseconds: the teacher–student task and
the linear toy with target ``−I``.

``teacher-student``: inputs ``x ~ N(0, I_d)``; targets ``y = V·tanh(U·x/√d)/√h`` of a random
one-hidden-layer teacher with ``h`` units (``U``, ``V`` standard normal), plus optional Gaussian
label noise. ``linear-negative-identity``: ``x ~ N(0, I_d)`` and ``y = −x``; a deep linear
network started at the identity must turn every direction around, which full-batch gradient
descent cannot do (``docs/training.md §5``).

Example:
    >>> data = teacher_student_data(seed=0, n_train=8, n_test=4, in_features=5, out_features=2)
    >>> data.train.inputs.shape, data.train.targets.shape
    (torch.Size([8, 5]), torch.Size([8, 2]))
"""

from __future__ import annotations

import math

import torch

from isokit.probe.checks import ProbeOptionError, positive_int
from isokit.train.data import DataError, Split, TrainData

__all__ = ["linear_negative_identity_data", "teacher_student_data"]

#: Stream offsets of SeedSequence-free generators: inputs of each split and the teacher.
_TRAIN, _TEST, _TEACHER, _NOISE = 0, 1, 2, 3


def _count(name: str, value: object) -> int:
    try:
        return positive_int(name, value)
    except ProbeOptionError as exc:
        raise DataError(str(exc)) from None


def _generator(seed: int, stream: int) -> torch.Generator:
    from isokit.train.loop import stream_seed

    return torch.Generator().manual_seed(stream_seed(seed, 100 + stream))


def _gaussian(seed: int, stream: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed, stream), dtype=torch.float64)


def teacher_student_data(
    *,
    seed: int = 0,
    n_train: int = 2048,
    n_test: int = 512,
    in_features: int = 16,
    hidden: int = 64,
    out_features: int = 10,
    noise: float = 0.0,
) -> TrainData:
    """Regression onto a random tanh teacher (module docstring); float64 tensors."""
    n_train, n_test = _count("n_train", n_train), _count("n_test", n_test)
    d, h = _count("in_features", in_features), _count("hidden", hidden)
    k = _count("out_features", out_features)
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not noise >= 0:
        raise DataError(f"noise: must be a number >= 0, got {noise!r}")
    if not math.isfinite(noise):
        raise DataError(f"noise: must be finite, got {noise!r}")
    gen = _generator(seed, _TEACHER)
    u = torch.randn(h, d, generator=gen, dtype=torch.float64)
    v = torch.randn(k, h, generator=gen, dtype=torch.float64)

    def split(stream: int, n: int) -> Split:
        x = _gaussian(seed, stream, n, d)
        y = torch.tanh(x @ u.T / math.sqrt(d)) @ v.T / math.sqrt(h)
        if noise:
            y = y + noise * _gaussian(seed, _NOISE + 10 * stream, n, k)
        return Split(inputs=x, targets=y)

    return TrainData(
        name="teacher-student",
        task="regression",
        train=split(_TRAIN, n_train),
        test=split(_TEST, n_test),
        info={"seed": seed, "in_features": d, "hidden": h, "out_features": k, "noise": noise},
    )


def linear_negative_identity_data(
    *, seed: int = 0, n_train: int = 2000, n_test: int = 500, dim: int = 10
) -> TrainData:
    """Gaussian inputs ``x ~ N(0, I_dim)`` with target ``−x`` (module docstring); float64.

    At a network output of 0 the loss ½·mean‖y‖² is about ``dim/2``: where identity-initialized
    gradient descent stalls.
    """
    n_train, n_test, d = _count("n_train", n_train), _count("n_test", n_test), _count("dim", dim)
    train_x, test_x = _gaussian(seed, _TRAIN, n_train, d), _gaussian(seed, _TEST, n_test, d)
    return TrainData(
        name="linear-negative-identity",
        task="regression",
        train=Split(inputs=train_x, targets=-train_x),
        test=Split(inputs=test_x, targets=-test_x),
        info={"seed": seed, "dim": d},
    )
