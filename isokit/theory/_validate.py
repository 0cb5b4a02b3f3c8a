"""Argument checks shared by the theory modules; each error names the problem and the fix."""

from __future__ import annotations

import math
import numbers

import numpy as np

WEIGHTS = ("gaussian", "orthogonal")


def variance(value: object, name: str, *, positive: bool = False) -> float:
    """Return ``value`` as a float variance; reject negatives (and zero when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number (a variance), got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    if x < 0 or (positive and x == 0):
        need = "positive" if positive else "non-negative"
        raise ValueError(
            f"{name}={x} is a variance and must be {need}; pass σ² (e.g. sw2=2.0 for He init), "
            "not a standard deviation with a sign"
        )
    return x


def variances(value: object, name: str, depth: int, *, positive: bool = False) -> np.ndarray:
    """A scalar or per-layer sequence of variances, broadcast to length ``depth``."""
    if np.ndim(value) == 0:
        return np.full(depth, variance(value, name, positive=positive))
    arr = [variance(v, f"{name}[{i}]", positive=positive) for i, v in enumerate(value)]
    if len(arr) != depth:
        raise ValueError(f"{name} has {len(arr)} entries but depth={depth}; give one per layer")
    return np.asarray(arr, dtype=float)


def integer(value: object, name: str, *, minimum: int) -> int:
    """Return ``value`` as an int ``≥ minimum``; reject floats like 2.5 and bools."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer, got {value!r}; round it first")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def correlation(value: object, name: str = "c") -> float:
    x = float(value)  # type: ignore[arg-type]
    if not -1.0 <= x <= 1.0:
        raise ValueError(f"{name}={x} is a correlation and must lie in [-1, 1]")
    return x


def weights(value: object) -> str:
    if value not in WEIGHTS:
        raise ValueError(f"weights must be 'gaussian' or 'orthogonal', got {value!r}")
    return str(value)


def fraction(value: object, name: str = "p") -> float:
    x = float(value)  # type: ignore[arg-type]
    if not 0.0 < x <= 1.0:
        raise ValueError(f"{name}={x} is an active fraction and must lie in (0, 1]")
    return x
