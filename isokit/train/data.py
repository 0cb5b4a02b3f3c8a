"""Training data: :class:`TrainData` (a training and a held-out :class:`Split`) and the named
data sets of :func:`load_data`.

A data set is a *task* (``"classification"``: integer labels and cross-entropy;
``"regression"``: real targets and the loss ½·mean over examples of the squared error summed over
outputs) with its two splits held in memory as tensors. The named sets are built offline:

- ``fashion-mnist``: the Debian package ``dataset-fashion-mnist``
  (:func:`isokit.train.fashion_mnist.fashion_mnist_data`);
- ``digits``: scikit-learn's bundled 8×8 digits (the ``digits`` extra);
- ``teacher-student``: Gaussian inputs regressed onto a random tanh teacher;
- ``linear-negative-identity``: Gaussian inputs with target ``−x`` (the linear toy on which
  identity-initialized gradient descent stalls, ``docs/training.md §5``).

Each builder takes ``seed`` and its own keyword options and checks them.

Example:
    >>> data = load_data("linear-negative-identity", n_train=64, n_test=16)
    >>> data.task, data.train.inputs.shape, data.input_shape
    ('regression', torch.Size([64, 10]), (10,))
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from isokit.probe.checks import close_matches, describe

__all__ = ["DATASETS", "TASKS", "DataError", "Split", "TrainData", "load_data"]

TASKS: tuple[str, ...] = ("classification", "regression")

#: Name → ``"module:function"`` of its builder, imported on first use (scikit-learn only then).
DATASETS: dict[str, str] = {
    "fashion-mnist": "isokit.train.fashion_mnist:fashion_mnist_data",
    "digits": "isokit.train.digits:digits_data",
    "teacher-student": "isokit.train.synthetic:teacher_student_data",
    "linear-negative-identity": "isokit.train.synthetic:linear_negative_identity_data",
}


class DataError(ValueError):
    """A data set that cannot be used: bad option, mismatched sizes, non-finite values."""


@dataclass(frozen=True, kw_only=True)
class Split:
    """``inputs [N, ...]`` and ``targets [N]`` (labels, int64) or ``[N, D]`` (real values)."""

    inputs: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def _check_split(name: str, split: Split, task: str) -> None:
    x, y = split.inputs, split.targets
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise DataError(f"{name}: inputs and targets must be tensors")
    if x.ndim < 2 or x.shape[0] == 0 or y.shape[:1] != x.shape[:1]:
        raise DataError(
            f"{name}: inputs {tuple(x.shape)} and targets {tuple(y.shape)} must be non-empty "
            "batches of the same length"
        )
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise DataError(f"{name}: inputs must be finite floating-point values")
    if task == "classification" and (y.dtype != torch.int64 or y.ndim != 1 or y.min() < 0):
        raise DataError(f"{name}: classification targets must be int64 labels ≥ 0 of shape [N]")
    if task == "regression" and (not y.is_floating_point() or not torch.isfinite(y).all()):
        raise DataError(f"{name}: regression targets must be finite floating-point values")


@dataclass(frozen=True, kw_only=True)
class TrainData:
    """A training :class:`Split`, a held-out one and what they are.

    Attributes:
        name: the data set's name (``"fashion-mnist"``).
        task: ``"classification"`` or ``"regression"``.
        train, test: the splits; ``test`` is the held-out set of evaluations and probe batches.
        num_classes: the number of labels (classification), else ``None``.
        info: how the set was built (options, seed), recorded with every result.
    """

    name: str
    task: str
    train: Split
    test: Split
    num_classes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"task must be one of {TASKS}, got {self.task!r}")
        for split_name, split in (("train", self.train), ("test", self.test)):
            _check_split(f"{self.name}.{split_name}", split, self.task)
        if self.train.inputs.shape[1:] != self.test.inputs.shape[1:]:
            raise DataError(
                f"{self.name}: train inputs {tuple(self.train.inputs.shape[1:])} and test inputs "
                f"{tuple(self.test.inputs.shape[1:])} differ in shape"
            )
        if self.task == "classification":
            top = int(max(self.train.targets.max(), self.test.targets.max()))
            if self.num_classes is None or top >= self.num_classes:
                raise DataError(
                    f"{self.name}: label {top} needs num_classes > {top}, got {self.num_classes}"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return tuple(self.train.inputs.shape[1:])

    def describe(self) -> dict[str, Any]:
        """What a result records about its data: name, task, sizes, shape and build info."""
        return {
            "name": self.name,
            "task": self.task,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "info": dict(self.info),
        }


def _builder(name: str) -> Callable[..., TrainData]:
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(
            f"unknown data set {describe(name)}{close_matches(str(name), DATASETS)} "
            f"(known: {', '.join(DATASETS)})"
        )
    module, function = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), function)


def load_data(name: str, *, seed: int = 0, **options: Any) -> TrainData:
    """The data set ``name`` (:data:`DATASETS`) built with ``seed`` and its ``options``.

    Raises:
        DataError: an unknown name or option, or a bad value (the message names it).
        isokit.train.DatasetUnavailableError: files or an optional package are missing (the
            message says how to install them).
    """
    builder = _builder(name)
    allowed = [p for p in inspect.signature(builder).parameters if p != "seed"]
    for key in options:
        if key not in allowed:
            raise DataError(
                f"{key}: not an option of data set {name!r}{close_matches(key, allowed)} "
                f"(its options: {', '.join(allowed) or 'none'})"
            )
    return builder(seed=seed, **options)
