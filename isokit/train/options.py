"""The options of a training run: :class:`TrainOptions`, validated once on construction.

:func:`isokit.train.train` takes one ``TrainOptions`` (or its fields as keyword arguments); the
``[train]`` table of a report config is read through :meth:`TrainOptions.from_mapping`, so the
rules live here once. Each field carries its checker in its ``metadata`` as in
:class:`isokit.probe.ProbeOptions`; types are strict (``True`` is not an integer, ``1`` is a
number but ``"0.1"`` is not), and every failure is a :class:`TrainOptionError` naming the option.

Example:
    >>> opts = TrainOptions(optimizer="sgd-momentum", lr=0.25, momentum=0.5, steps=300)
    >>> opts.total_steps(60_000), opts.effective_lr
    (300, 0.5)
    >>> TrainOptions(steps=10, epochs=1)
    Traceback (most recent call last):
    ...
    isokit.train.options.TrainOptionError: steps: give steps or epochs, not both (got steps=10, \
epochs=1)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from isokit.probe.checks import (
    ProbeOptionError,
    boolean,
    close_matches,
    describe,
    positive_int,
)
from isokit.probe.checks import choice as _choice

__all__ = ["OPTIMIZERS", "SCHEDULES", "TrainOptionError", "TrainOptions"]

#: ``sgd``: plain (stochastic) gradient descent; ``sgd-momentum``: heavy ball; ``adam``: Adam.
OPTIMIZERS: tuple[str, ...] = ("sgd", "sgd-momentum", "adam")
#: ``constant`` or ``cosine`` (to 0 at the last step), each after ``warmup_steps`` linear ramp.
SCHEDULES: tuple[str, ...] = ("constant", "cosine")
DTYPES: tuple[str, ...] = ("float32", "float64")
#: Steps when neither ``steps`` nor ``epochs`` is given.
DEFAULT_STEPS = 100


class TrainOptionError(ValueError):
    """A training option with a bad value: ``.option`` names it, ``.message`` says the fix.

    Example:
        >>> str(TrainOptionError("lr", "must be a finite number > 0, got 0"))
        'lr: must be a finite number > 0, got 0'
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def _as_train_error(check: Callable[..., Any]) -> Callable[..., Any]:
    """The probe layer's checker ``check``, raising :class:`TrainOptionError` instead."""

    def checked(name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return check(name, value, *args, **kwargs)
        except ProbeOptionError as exc:
            raise TrainOptionError(exc.option, exc.message) from None

    return checked


_int = _as_train_error(positive_int)
_bool = _as_train_error(boolean)
_one_of = _as_train_error(_choice)


def _real(name: str, value: Any, *, low: float, high: float = math.inf, open_low: bool) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    number = float(value) if ok else math.nan
    inside = (number > low if open_low else number >= low) and number < high
    if not (ok and math.isfinite(number) and inside):
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        if high < math.inf:
            bound += f" and < {high:g}"
        raise TrainOptionError(name, f"must be a finite number {bound}, got {describe(value)}")
    return number


def _lr(name: str, value: Any) -> float:
    return _real(name, value, low=0.0, open_low=True)


def _momentum(name: str, value: Any) -> float:
    return _real(name, value, low=0.0, high=1.0, open_low=False)


def _decay(name: str, value: Any) -> float:
    return _real(name, value, low=0.0, open_low=False)


def _target(name: str, value: Any) -> float | None:
    if value is None:
        return None
    return _real(name, value, low=0.0, high=1.0 + 1e-12, open_low=True)


def _optional_int(name: str, value: Any) -> int | None:
    return _int(name, value, optional=True)


def _steps(name: str, value: Any) -> int | None:
    return _int(name, value, optional=True)


def _non_negative(name: str, value: Any) -> int:
    return _int(name, value, minimum=0)


def _checkpoints(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise TrainOptionError(
            name, f"must be a list of step numbers, e.g. [0, 100, 300], got {describe(value)}"
        )
    steps = [_int(f"{name}[{i}]", s, minimum=0) for i, s in enumerate(value)]
    if len(set(steps)) != len(steps):
        raise TrainOptionError(name, f"has duplicates {steps}; list each step once")
    return tuple(sorted(steps))


def _option(default: Any, check: Callable[[str, Any], Any]) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How :func:`isokit.train.train` trains; validated on construction (module docstring).

    Attributes:
        optimizer: ``"sgd"``, ``"sgd-momentum"`` (heavy ball, ``momentum``) or ``"adam"``.
        lr: the peak learning rate η.
        momentum: β of ``sgd-momentum`` (ignored otherwise); the effective step is η/(1−β).
        weight_decay: L2 coefficient passed to the optimizer.
        batch_size: examples per step; one at least the training set's size is full-batch
            gradient descent.
        steps, epochs: the run's length, one of them (neither: :data:`DEFAULT_STEPS` steps). An
            epoch is ``ceil(N / batch_size)`` steps over a fresh permutation.
        schedule: ``"constant"`` or ``"cosine"`` (to 0 at the last step), after a linear warm-up
            over ``warmup_steps`` steps.
        seed: seeds the data order and every random draw during training (dropout).
        target_accuracy: held-out accuracy whose first crossing is ``steps_to_target``.
        checkpoints: steps at which the probe measures the network on a fixed probe batch
            (0 is the initialization; each must be ≤ the run's length).
        eval_every: steps between held-out evaluations (``None``: ten per run); the run's first
            and last steps are always evaluated.
        eval_examples: held-out examples per evaluation (``None``: all of them).
        log_every: steps between logged training loss, accuracy and gradient norms.
        grad_norms: record ``‖∂L/∂h_l‖`` at every tap on logged steps (one tensor hook per tap).
        probe_examples: examples of the fixed probe batch (the first of the held-out split).
        dtype: ``"float32"`` or ``"float64"``: the model is trained in this precision.
    """

    optimizer: str = _option("sgd", lambda n, v: _one_of(n, v, OPTIMIZERS))
    lr: float = _option(0.1, _lr)
    momentum: float = _option(0.9, _momentum)
    weight_decay: float = _option(0.0, _decay)
    batch_size: int = _option(128, _int)
    steps: int | None = _option(None, _steps)
    epochs: int | None = _option(None, _steps)
    schedule: str = _option("constant", lambda n, v: _one_of(n, v, SCHEDULES))
    warmup_steps: int = _option(0, _non_negative)
    seed: int = _option(0, _non_negative)
    target_accuracy: float | None = _option(None, _target)
    checkpoints: tuple[int, ...] = _option((), _checkpoints)
    eval_every: int | None = _option(None, _optional_int)
    eval_examples: int | None = _option(None, _optional_int)
    log_every: int = _option(1, _int)
    grad_norms: bool = _option(False, _bool)
    probe_examples: int = _option(4, _int)
    dtype: str = _option("float32", lambda n, v: _one_of(n, v, DTYPES))

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        if self.steps is not None and self.epochs is not None:
            raise TrainOptionError(
                "steps",
                f"give steps or epochs, not both (got steps={self.steps}, epochs={self.epochs})",
            )
        if self.steps is not None:
            self._check_within(self.steps)

    def _check_within(self, steps: int) -> None:
        late = [c for c in self.checkpoints if c > steps]
        if late:
            raise TrainOptionError(
                "checkpoints", f"{late} lie after the run's last step {steps}; drop them"
            )
        if self.warmup_steps > steps:
            raise TrainOptionError(
                "warmup_steps", f"{self.warmup_steps} is longer than the run ({steps} steps)"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in field order.

        Example:
            >>> TrainOptions.names()[:3]
            ('optimizer', 'lr', 'momentum')
        """
        return tuple(f.name for f in fields(cls))

    def replace(self, **changes: Any) -> TrainOptions:
        """A copy with ``changes`` applied and validated; unknown names are refused."""
        allowed = self.names()
        for key in changes:
            if key not in allowed:
                raise TrainOptionError(
                    str(key),
                    f"unknown training option{close_matches(str(key), allowed)} "
                    f"(allowed: {', '.join(allowed)})",
                )
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> TrainOptions:
        """Options from a TOML/JSON table (``checkpoints`` as a list); unknown keys refused.

        Example:
            >>> TrainOptions.from_mapping({"optimiser": "adam"})
            Traceback (most recent call last):
            ...
            isokit.train.options.TrainOptionError: optimiser: unknown training option; did you \
mean 'optimizer'? (allowed: optimizer, lr, momentum, weight_decay, batch_size, steps, epochs, \
schedule, warmup_steps, seed, target_accuracy, checkpoints, eval_every, eval_examples, log_every, \
grad_norms, probe_examples, dtype)
        """
        if not isinstance(mapping, Mapping):
            raise TrainOptionError(
                "options", f"must be a table of option names to values, got {describe(mapping)}"
            )
        return cls().replace(**dict(mapping))

    def to_dict(self) -> dict[str, Any]:
        """The JSON/TOML form, read back by :meth:`from_mapping`."""
        return {
            name: list(v) if isinstance(v := getattr(self, name), tuple) else v
            for name in self.names()
        }

    @property
    def effective_lr(self) -> float:
        """The effective step: η/(1−β) for ``sgd-momentum``, η otherwise.

        Example:
            >>> TrainOptions(optimizer="sgd", lr=0.1).effective_lr
            0.1
        """
        if self.optimizer == "sgd-momentum":
            return self.lr / (1.0 - self.momentum)
        return self.lr

    def steps_per_epoch(self, n_train: int) -> int:
        """Steps of one pass over ``n_train`` examples: ``ceil(n_train / batch_size)``."""
        return max(1, math.ceil(n_train / self.batch_size))

    def total_steps(self, n_train: int) -> int:
        """The run's length on a training set of ``n_train`` examples, checked against the
        checkpoints and the warm-up.

        Example:
            >>> TrainOptions(epochs=2, batch_size=128).total_steps(1000)
            16
        """
        if self.steps is not None:
            return self.steps
        steps = (self.epochs or 0) * self.steps_per_epoch(n_train) if self.epochs else None
        steps = DEFAULT_STEPS if steps is None else steps
        self._check_within(steps)
        return steps

    def eval_steps(self, total: int) -> list[int]:
        """The steps with a held-out evaluation: 0, every ``eval_every`` and ``total``.

        Example:
            >>> TrainOptions(steps=25, eval_every=10).eval_steps(25)
            [0, 10, 20, 25]
        """
        every = self.eval_every or max(1, total // 10)
        return sorted({*range(0, total, every), total})
