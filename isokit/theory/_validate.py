"""Argument checks shared by the theory modules; each error names the problem and the fix.

Every helper takes the argument's name first, then its value: ``check.variance("sw2", sw2)``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

WEIGHTS = ("gaussian", "orthogonal")


def real(name: str, value: object) -> float:
    """Return ``value`` as a finite float; reject bools, non-numbers, NaN and ±inf."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}; pass a finite number")
    return x


def variance(name: str, value: object, *, positive: bool = False) -> float:
    """Return ``value`` as a finite float variance; reject negatives (zero too if ``positive``)."""
    x = real(name, value)
    if x < 0 or (positive and x == 0):
        need = "positive" if positive else "non-negative"
        raise ValueError(
            f"{name}={x} is a variance and must be {need}; pass σ² (e.g. sw2=2.0 for He init), "
            "not a standard deviation with a sign"
        )
    return x


def variances(name: str, value: object, depth: int, *, positive: bool = False) -> np.ndarray:
    """A scalar or per-layer sequence of variances, broadcast to length ``depth``."""
    if np.ndim(value) == 0:
        return np.full(depth, variance(name, value, positive=positive))
    arr = [variance(f"{name}[{i}]", v, positive=positive) for i, v in enumerate(value)]
    if len(arr) != depth:
        raise ValueError(f"{name} has {len(arr)} entries but depth={depth}; give one per layer")
    return np.asarray(arr, dtype=float)


def integer(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` as an int ``≥ minimum``; reject floats like 2.5, NaN, ±inf and bools."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer, got {value!r}; round it first")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def correlation(name: str, value: object) -> float:
    """Return ``value`` as a float correlation in ``[-1, 1]``."""
    x = real(name, value)
    if not -1.0 <= x <= 1.0:
        raise ValueError(f"{name}={x} is a correlation and must lie in [-1, 1]")
    return x


def weights(name: str, value: object) -> str:
    """Return the weight ensemble ``value``, ``"gaussian"`` or ``"orthogonal"``."""
    if value not in WEIGHTS:
        raise ValueError(f"{name} must be 'gaussian' or 'orthogonal', got {value!r}")
    return str(value)


def fraction(name: str, value: object) -> float:
    """Return ``value`` as an active fraction in ``(0, 1]``."""
    x = real(name, value)
    if not 0.0 < x <= 1.0:
        raise ValueError(f"{name}={x} is an active fraction and must lie in (0, 1]")
    return x


def reals(name: str, value: object) -> np.ndarray:
    """Return ``value`` as a float array with only finite entries."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}; drop the NaN/inf entries")
    return arr


def result(name: str, value: object, *, hint: str | None = None) -> object:
    """Return a computed ``value`` unchanged if every entry is finite; else a clear ValueError.

    A non-finite result from finite inputs means a Gaussian integral of the activation is
    undefined (NaN) or the variances overflow float64 over the layers; ``hint`` replaces that
    explanation and fix where the cause is known better.
    """
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        shown = float(arr) if arr.ndim == 0 else arr
        why = hint or (
            "the activation is undefined or overflows on part of the Gaussian's range, or the "
            "variances overflow float64 over the layers; use smaller variances, a smaller depth "
            "or a bounded activation"
        )
        raise ValueError(f"{name} is not finite ({shown}): {why}")
    return value
