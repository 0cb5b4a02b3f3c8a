"""Argument checks of the probe layer: each takes ``(name, value, ...)`` and returns the value.

Every failure is a :class:`ProbeOptionError` (a ``ValueError``) naming the argument, the value
found and the fix. Types are strict: ``True`` is not an integer, ``1.0`` is not an integer and the
string ``"no"`` is not a boolean.

Example:
    >>> positive_int("chunk_size", 8)
    8
    >>> positive_int("chunk_size", 0)
    Traceback (most recent call last):
    ...
    isokit.probe.checks.ProbeOptionError: chunk_size: must be a positive integer, got 0
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "ProbeOptionError",
    "as_int",
    "boolean",
    "choice",
    "close_matches",
    "describe",
    "finite_positive",
    "optional_positive_int",
    "positive_int",
]


class ProbeOptionError(ValueError):
    """A probe option or argument with a bad value: ``.option`` names it, ``.message`` the fix.

    Example:
        >>> err = ProbeOptionError("n_probes", "must be an integer >= 4, got 2")
        >>> err.option, str(err)
        ('n_probes', 'n_probes: must be an integer >= 4, got 2')
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def describe(value: Any) -> str:
    """How a value reads in an error message.

    Example:
        >>> describe(0), describe([1])
        ('0', 'list [1]')
    """
    if isinstance(value, bool | int | float | str) or value is None:
        return repr(value)
    return f"{type(value).__name__} {value!r}"


def as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer type (numpy integers too), else ``None``.

    Example:
        >>> as_int(3), as_int(True), as_int(1.0)
        (3, None, None)
    """
    if isinstance(value, bool | np.bool_):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def positive_int(name: str, value: Any, *, minimum: int = 1, why: str = "") -> int:
    """An integer ``>= minimum`` (booleans, floats and strings are refused).

    Example:
        >>> positive_int("n_probes", 16, minimum=4)
        16
    """
    number = as_int(value)
    if number is None or number < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        if minimum == 0:
            what = "a non-negative integer"
        raise ProbeOptionError(name, f"must be {what}{why}, got {describe(value)}")
    return number


def optional_positive_int(name: str, value: Any) -> int | None:
    """``None`` (choose automatically) or a positive integer.

    Example:
        >>> optional_positive_int("max_memory", None) is None
        True
    """
    if value is None:
        return None
    number = as_int(value)
    if number is None or number < 1:
        raise ProbeOptionError(
            name, f"must be a positive integer or None (automatic), got {describe(value)}"
        )
    return number


def boolean(name: str, value: Any) -> bool:
    """``True`` or ``False`` (numpy booleans too; ``"no"`` or ``0`` are refused).

    Example:
        >>> boolean("svd", False)
        False
    """
    if not isinstance(value, bool | np.bool_):
        raise ProbeOptionError(name, f"must be True or False, got {describe(value)}")
    return bool(value)


def finite_positive(name: str, value: Any) -> float:
    """A finite real number ``> 0`` as a float (booleans and strings are refused).

    Example:
        >>> finite_positive("band", 0.1)
        0.1
    """
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    if not ok or not (math.isfinite(float(value)) and float(value) > 0):
        raise ProbeOptionError(name, f"must be a finite number > 0, got {describe(value)}")
    return float(value)


def close_matches(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``.

    Example:
        >>> close_matches("metod", ["method", "seed"])
        "; did you mean 'method'?"
    """
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices``, suggesting the closest on a typo.

    Example:
        >>> choice("method", "exact", ("auto", "exact", "lanczos"))
        'exact'
    """
    if not isinstance(value, str) or value not in choices:
        raise ProbeOptionError(
            name,
            f"must be one of {', '.join(map(repr, choices))}, got {describe(value)}"
            + close_matches(str(value), choices),
        )
    return value
