"""The JSON form of probe values: :func:`encode`, :func:`decode` and checked field readers.

**Convention.** :func:`encode` returns plain JSON types: numpy arrays become nested lists, tuples
become lists, and the non-finite floats ``+inf``, ``−inf`` and ``nan`` become the strings
``"inf"``, ``"-inf"`` and ``"nan"`` (strict JSON has no such numbers, and a browser's
``JSON.parse`` rejects ``Infinity``). The readers know which fields are numeric and convert those
strings back, so ``Profile.from_dict(p.to_dict())`` reproduces every array bit for bit (finite
floats are written with ``repr`` precision). Strings inside the free-form ``meta`` dict are left
as they are.

**Field readers.** :func:`read_array`, :func:`read_mapping`, :func:`read_int`, :func:`read_str`,
:func:`read_number` and :func:`read_list` check one field's presence, type and shape, with the
integer and choice rules of :mod:`isokit.probe.checks`; a failure is a
:class:`ProfileFormatError` naming the field (``taps[2].singular_values``). The layout of each
result class, built from them, is :mod:`isokit.probe.schema`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from isokit.probe.checks import ProbeOptionError, choice, close_matches, describe, positive_int

__all__ = [
    "ProfileFormatError",
    "decode",
    "encode",
    "read_array",
    "read_int",
    "read_list",
    "read_mapping",
    "read_number",
    "read_str",
]

_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


class ProfileFormatError(ValueError):
    """A probe result dict or file that cannot be read back: ``.field`` names the culprit.

    Example:
        >>> from isokit.probe import Profile
        >>> Profile.from_dict({"schema": 1, "meta": {}, "taps": [], "signal": None})
        Traceback (most recent call last):
        ...
        isokit.probe.serialization.ProfileFormatError: blocks: missing (a profile has the \
fields schema, taps, meta, signal, blocks)
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ------------------------------------------------------------------------------------- writing


def encode(value: Any) -> Any:
    """Plain JSON types, with non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"``.

    Example:
        >>> encode({"a": np.array([1.0, np.inf]), "b": (1, np.nan)})
        {'a': [1.0, 'inf'], 'b': [1, 'nan']}
    """
    if isinstance(value, np.ndarray):
        return encode(value.tolist())
    if isinstance(value, np.generic):
        return encode(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def decode(value: Any, dtype: Any = np.float64, *, field: str = "value") -> np.ndarray:
    """A numeric field of :func:`encode`'s output back to an array of ``dtype`` (any shape).

    Example:
        >>> decode([1.0, "inf"]).tolist()
        [1.0, inf]
    """
    kind = np.dtype(dtype).kind
    try:
        return np.asarray(_leaves(field, value, kind), dtype=dtype)
    except ValueError as err:  # ragged nesting
        raise ProfileFormatError(field, f"is not a rectangular array ({err})") from None


# ------------------------------------------------------------------------------------- reading


def _leaves(field: str, value: Any, kind: str) -> Any:
    """Nested lists with special strings converted; leaves checked against the dtype kind."""
    if isinstance(value, list):
        return [_leaves(field, v, kind) for v in value]
    if kind == "b":
        if isinstance(value, bool):
            return value
        raise ProfileFormatError(field, f"must hold true/false values, got {describe(value)}")
    if kind in "iu":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ProfileFormatError(field, f"must hold integers, got {describe(value)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    raise ProfileFormatError(
        field, f"must hold numbers (or 'inf', '-inf', 'nan'), got {describe(value)}"
    )


def read_array(
    field: str, value: Any, shape: Sequence[int | None], dtype: Any = np.float64
) -> np.ndarray:
    """An array of ``shape`` (``None``: any length along that axis), naming the field.

    Example:
        >>> read_array("q", [1.0, "inf"], (2,)).tolist()
        [1.0, inf]
    """
    if not isinstance(value, list):
        raise ProfileFormatError(field, f"must be an array, got {describe(value)}")
    arr = decode(value, dtype, field=field)
    fits = arr.ndim == len(shape) and all(
        n is None or n == m for n, m in zip(shape, arr.shape, strict=True)
    )
    if not fits:
        want = " × ".join("any" if n is None else str(n) for n in shape)
        raise ProfileFormatError(field, f"has shape {list(arr.shape)}, expected [{want}]")
    return arr


def read_mapping(field: str, value: Any, keys: Sequence[str], what: str) -> Mapping[str, Any]:
    """A dict with exactly ``keys``: a missing or unknown key is named.

    Example:
        >>> read_mapping("ritz", {"a": 1}, ("a", "b"), "a record")
        Traceback (most recent call last):
        ...
        isokit.probe.serialization.ProfileFormatError: ritz.b: missing (a record has the \
fields a, b)
    """
    if not isinstance(value, Mapping):
        raise ProfileFormatError(field, f"must be an object, got {describe(value)}")
    prefix = f"{field}." if field else ""
    for key in keys:
        if key not in value:
            raise ProfileFormatError(
                f"{prefix}{key}", f"missing ({what} has the fields {', '.join(keys)})"
            )
    for key in value:
        if key not in keys:
            raise ProfileFormatError(
                f"{prefix}{key}",
                f"unknown field{close_matches(str(key), keys)} ({what} has "
                f"the fields {', '.join(keys)})",
            )
    return value


def _checked(check: Callable[..., Any], field: str, value: Any, *args: Any, **kwargs: Any) -> Any:
    """An argument check of :mod:`isokit.probe.checks`, failing as a :class:`ProfileFormatError`."""
    try:
        return check(field, value, *args, **kwargs)
    except ProbeOptionError as err:
        raise ProfileFormatError(err.option, err.message) from None


def read_int(field: str, value: Any, minimum: int) -> int:
    """An integer ``>= minimum`` (:func:`~isokit.probe.checks.positive_int`).

    Example:
        >>> read_int("depth", 3, 1)
        3
    """
    return _checked(positive_int, field, value, minimum=minimum)


def read_str(field: str, value: Any, choices: Sequence[str] | None = None) -> str:
    """A non-empty string, or one of ``choices`` (:func:`~isokit.probe.checks.choice`).

    Example:
        >>> read_str("side", "input", ("output", "input"))
        'input'
    """
    if choices:
        return _checked(choice, field, value, tuple(choices))
    if not isinstance(value, str) or not value:
        raise ProfileFormatError(field, f"must be a non-empty string, got {describe(value)}")
    return value


def read_number(field: str, value: Any) -> float:
    """A number, or one of the strings ``"inf"``, ``"-inf"``, ``"nan"`` (:func:`encode`).

    Example:
        >>> read_number("input_cos", "nan")
        nan
    """
    if isinstance(value, list):
        raise ProfileFormatError(field, f"must be a number, got {describe(value)}")
    return float(_leaves(field, value, "f"))


def read_list(field: str, value: Any, *, nonempty: bool = False) -> list:
    """A JSON array (never a string, which would be read letter by letter).

    Example:
        >>> read_list("taps", "acts.0", nonempty=True)
        Traceback (most recent call last):
        ...
        isokit.probe.serialization.ProfileFormatError: taps: must be a non-empty array, got 'acts.0'
    """
    if not isinstance(value, list) or (nonempty and not value):
        want = "a non-empty array" if nonempty else "an array"
        raise ProfileFormatError(field, f"must be {want}, got {describe(value)}")
    return value
