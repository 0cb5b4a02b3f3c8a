"""The JSON form of probe results: :func:`encode` and the checked readers behind ``from_dict``.

**Convention.** :func:`encode` returns plain JSON types: numpy arrays become nested lists, tuples
become lists, and the non-finite floats ``+inf``, ``−inf`` and ``nan`` become the strings
``"inf"``, ``"-inf"`` and ``"nan"`` (strict JSON has no such numbers, and a browser's
``JSON.parse`` rejects ``Infinity``). The readers know which fields are numeric and convert those
strings back, so ``Profile.from_dict(p.to_dict())`` reproduces every array bit for bit (finite
floats are written with ``repr`` precision). Strings inside the free-form ``meta`` dict are left
as they are.

**Checks.** :func:`read_profile`, :func:`read_tap` and :func:`read_signal` check every field's
presence, type and length (``singular_values`` has ``n_examples`` rows of ``r`` values, every
statistic ``n_examples`` values, every signal array one value per tap, ...) and refuse unknown
fields, so nothing is silently dropped; the fields are those of the result dataclass passed in
(:func:`field_names`), so the dataclass is the one place they are listed. :func:`read_profile`
also checks the sections against each other: the same examples everywhere, and blocks and signal
that name the profile's own taps in order. A failure is a :class:`ProfileFormatError` naming the
field (``taps[2].singular_values``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from isokit.probe.checks import ProbeOptionError, choice, close_matches, describe, positive_int
from isokit.probe.statistics import STAT_NAMES

__all__ = [
    "PER_TAP",
    "SCHEMA_VERSION",
    "ProfileFormatError",
    "decode",
    "encode",
    "field_names",
    "per_tap_arrays",
    "read_profile",
    "read_signal",
    "read_tap",
]

SCHEMA_VERSION = 1
_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
#: ``dataclasses.field`` metadata of a float array with one value per tap (``Signal.q``, ...).
PER_TAP = MappingProxyType({"per_tap": True})
_RITZ = ("sigma_max_lower", "sigma_min_upper", "residual_max", "residual_min", "converged")


def field_names(cls: type) -> tuple[str, ...]:
    """The fields of a result dataclass in order: the keys of its JSON object.

    Example:
        >>> from isokit.probe import Signal
        >>> field_names(Signal)[:3]
        ('taps', 'D', 'q')
    """
    return tuple(f.name for f in dataclasses.fields(cls))


def per_tap_arrays(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` marked :data:`PER_TAP` (float arrays with one value per tap).

    Example:
        >>> from isokit.probe import Signal
        >>> per_tap_arrays(Signal)
        ('q', 'q_std', 'cos', 'grad', 'grad_std', 'grad_per_unit', 'param_grad')
    """
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("per_tap"))


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


def _array(field: str, value: Any, shape: Sequence[int | None], dtype: Any = np.float64):
    """An array of ``shape`` (``None``: any length along that axis), naming the field."""
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


def _mapping(field: str, value: Any, keys: Sequence[str], what: str) -> Mapping[str, Any]:
    """A dict with exactly ``keys``: a missing or unknown key is named."""
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


def _int(field: str, value: Any, minimum: int) -> int:
    return _checked(positive_int, field, value, minimum=minimum)


def _str(field: str, value: Any, choices: Sequence[str] | None = None) -> str:
    if choices:
        return _checked(choice, field, value, tuple(choices))
    if not isinstance(value, str) or not value:
        raise ProfileFormatError(field, f"must be a non-empty string, got {describe(value)}")
    return value


def _number(field: str, value: Any) -> float:
    if isinstance(value, list):
        raise ProfileFormatError(field, f"must be a number, got {describe(value)}")
    return float(_leaves(field, value, "f"))


def _list(field: str, value: Any, *, nonempty: bool = False) -> list:
    if not isinstance(value, list) or (nonempty and not value):
        want = "a non-empty array" if nonempty else "an array"
        raise ProfileFormatError(field, f"must be {want}, got {describe(value)}")
    return value


def _array_dict(field: str, value: Any, B: int, allowed: Sequence[str]) -> dict[str, np.ndarray]:
    """``{name: [B] array}`` with names from ``allowed``."""
    if not isinstance(value, Mapping):
        raise ProfileFormatError(field, f"must be an object, got {describe(value)}")
    out = {}
    for key, item in value.items():
        if key not in allowed:
            raise ProfileFormatError(
                f"{field}.{key}",
                f"unknown name{close_matches(str(key), allowed)} (known: {', '.join(allowed)})",
            )
        out[key] = _array(f"{field}.{key}", item, (B,))
    return out


def _density(field: str, value: Any, B: int) -> dict[str, np.ndarray] | None:
    if value is None:
        return None
    d = _mapping(field, value, ("nodes", "weights"), "an SLQ density")
    nodes = _array(f"{field}.nodes", d["nodes"], (B, None, None))
    weights = _array(f"{field}.weights", d["weights"], nodes.shape)
    return {"nodes": nodes, "weights": weights}


def _ritz(field: str, value: Any, B: int) -> dict[str, np.ndarray] | None:
    if value is None:
        return None
    d = _mapping(field, value, _RITZ, "a Ritz record")
    return {
        k: _array(f"{field}.{k}", d[k], (B,), bool if k == "converged" else np.float64)
        for k in _RITZ
    }


def read_tap(field: str, d: Any, cls: type) -> dict[str, Any]:
    """The checked constructor arguments of ``cls`` (``TapSpectrum``) from its dict.

    Example:
        >>> from isokit.probe import TapSpectrum
        >>> read_tap("taps[0]", {"name": "fc"}, TapSpectrum)
        Traceback (most recent call last):
        ...
        isokit.probe.serialization.ProfileFormatError: taps[0].depth: missing (a tap has the \
fields name, depth, D, n_in, r, shape, method, side, stats, degenerate, saturated, \
gram_unreliable, singular_values, se, traces, density, ritz, n_products, warnings)
    """
    d = _mapping(field, d, field_names(cls), "a tap")
    D, n_in, r = (_int(f"{field}.{k}", d[k], 1) for k in ("D", "n_in", "r"))
    if r != min(D, n_in):
        raise ProfileFormatError(f"{field}.r", f"must be min(D, n_in) = {min(D, n_in)}, got {r}")
    shape = tuple(_int(f"{field}.shape", v, 1) for v in _list(f"{field}.shape", d["shape"]))
    if math.prod(shape) != D:
        raise ProfileFormatError(f"{field}.shape", f"{list(shape)} does not hold D = {D} values")
    degenerate = _array(f"{field}.degenerate", d["degenerate"], (None,), bool)
    B = degenerate.shape[0]
    if B < 1:
        raise ProfileFormatError(f"{field}.degenerate", "is empty: a tap has at least 1 example")
    stats = _array_dict(f"{field}.stats", d["stats"], B, STAT_NAMES)
    se = _array_dict(f"{field}.se", d["se"], B, tuple(stats))
    sv = d["singular_values"]
    warnings = _list(f"{field}.warnings", d["warnings"])
    for i, text in enumerate(warnings):
        _str(f"{field}.warnings[{i}]", text)
    return {
        "name": _str(f"{field}.name", d["name"]),
        "depth": _int(f"{field}.depth", d["depth"], 1),
        "D": D,
        "n_in": n_in,
        "r": r,
        "shape": shape,
        "method": _str(f"{field}.method", d["method"]),
        "side": _str(f"{field}.side", d["side"], ("output", "input")),
        "stats": stats,
        "degenerate": degenerate,
        "saturated": _array(f"{field}.saturated", d["saturated"], (B,), bool),
        "gram_unreliable": _array(f"{field}.gram_unreliable", d["gram_unreliable"], (B,), bool),
        "singular_values": None if sv is None else _array(f"{field}.singular_values", sv, (B, r)),
        "se": se,
        "traces": _array_dict(f"{field}.traces", d["traces"], B, ("t1", "t2", "t3")),
        "density": _density(f"{field}.density", d["density"], B),
        "ritz": _ritz(f"{field}.ritz", d["ritz"], B),
        "n_products": _int(f"{field}.n_products", d["n_products"], 0),
        "warnings": list(warnings),
    }


def read_signal(field: str, d: Any, cls: type) -> dict[str, Any]:
    """The checked constructor arguments of ``cls`` (``Signal``) from its dict.

    Example:
        >>> from isokit.probe import Signal
        >>> read_signal("signal", [], Signal)
        Traceback (most recent call last):
        ...
        isokit.probe.serialization.ProfileFormatError: signal: must be an object, got list []
    """
    d = _mapping(field, d, field_names(cls), "a signal")
    taps = [_str(f"{field}.taps", t) for t in _list(f"{field}.taps", d["taps"], nonempty=True)]
    L = len(taps)
    dims = _list(f"{field}.D", d["D"])
    if len(dims) != L:
        raise ProfileFormatError(f"{field}.D", f"has {len(dims)} values for {L} taps")
    seed = d["seed"]
    out: dict[str, Any] = {
        name: _array(f"{field}.{name}", d[name], (L,)) for name in per_tap_arrays(cls)
    }
    out.update(
        taps=taps,
        D=[_int(f"{field}.D", v, 1) for v in dims],
        cos_dropped=_array(f"{field}.cos_dropped", d["cos_dropped"], (L,), np.int64),
        input_q=_number(f"{field}.input_q", d["input_q"]),
        input_cos=_number(f"{field}.input_cos", d["input_cos"]),
        loss=_str(f"{field}.loss", d["loss"], ("projection", "custom")),
        seed=None if seed is None else _int(f"{field}.seed", seed, 0),
        n_examples=_int(f"{field}.n_examples", d["n_examples"], 1),
    )
    return out


def _taps(field: str, value: Any, cls: type) -> list[dict[str, Any]]:
    items = _list(field, value, nonempty=True)
    taps = [read_tap(f"{field}[{i}]", t, cls) for i, t in enumerate(items)]
    names = [t["name"] for t in taps]
    for i, t in enumerate(taps):
        if names.index(t["name"]) != i:
            raise ProfileFormatError(f"{field}[{i}].name", f"{t['name']!r} appears twice")
        if t["degenerate"].shape != taps[0]["degenerate"].shape:
            raise ProfileFormatError(
                f"{field}[{i}]",
                f"has {t['degenerate'].shape[0]} examples but {field}[0] has "
                f"{taps[0]['degenerate'].shape[0]}",
            )
    return taps


def read_profile(d: Any, cls: type, tap_cls: type, signal_cls: type) -> dict[str, Any]:
    """Checked constructor arguments of ``cls`` (``Profile``): ``meta``, tap kwargs lists and
    signal kwargs (module docstring), with ``tap_cls`` and ``signal_cls`` for the sections.

    Example:
        >>> from isokit.probe import Profile, Signal, TapSpectrum
        >>> data = {"schema": 9, "meta": {}, "taps": [], "signal": None, "blocks": None}
        >>> read_profile(data, Profile, TapSpectrum, Signal)
        Traceback (most recent call last):
        ...
        isokit.probe.serialization.ProfileFormatError: schema: profile schema 9 is newer than \
this isokit (1); upgrade isokit to read it
    """
    d = _mapping("", d, ("schema", *field_names(cls)), "a profile")
    schema = _int("schema", d["schema"], 1)
    if schema > SCHEMA_VERSION:
        raise ProfileFormatError(
            "schema",
            f"profile schema {schema} is newer than this isokit ({SCHEMA_VERSION}); "
            "upgrade isokit to read it",
        )
    meta = d["meta"]
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise ProfileFormatError("meta", f"must be an object, got {describe(meta)}")
    taps = _taps("taps", d["taps"], tap_cls)
    B = taps[0]["degenerate"].shape[0]
    n_meta = meta.get("n_examples")
    if n_meta is not None and n_meta != B:
        raise ProfileFormatError("meta.n_examples", f"is {n_meta!r} but the taps have {B}")
    blocks = None if d["blocks"] is None else _taps("blocks", d["blocks"], tap_cls)
    signal = None if d["signal"] is None else read_signal("signal", d["signal"], signal_cls)
    _check_sections(taps, blocks, signal)
    return {"meta": dict(meta), "taps": taps, "signal": signal, "blocks": blocks}


def _check_sections(
    taps: list[dict[str, Any]], blocks: list[dict[str, Any]] | None, signal: dict[str, Any] | None
) -> None:
    """Blocks and signal describe the profile's own taps, in order, on the same examples (the
    figures pool them tap by tap)."""
    names = [t["name"] for t in taps]
    B = taps[0]["degenerate"].shape[0]
    if blocks is not None:
        if blocks[0]["degenerate"].shape[0] != B:
            raise ProfileFormatError(
                "blocks", f"have a different number of examples than taps ({B})"
            )
        if [t["name"] for t in blocks] != names:
            raise ProfileFormatError(
                "blocks", f"must hold one block per tap, in tap order ({', '.join(names)})"
            )
    if signal is not None:
        if signal["n_examples"] != B:
            raise ProfileFormatError(
                "signal.n_examples", f"is {signal['n_examples']} but the taps have {B} examples"
            )
        if signal["taps"] != names:
            raise ProfileFormatError(
                "signal.taps", f"must be the profile's taps, in order ({', '.join(names)})"
            )
        if signal["D"] != [t["D"] for t in taps]:
            raise ProfileFormatError(
                "signal.D", f"must be the taps' sizes {[t['D'] for t in taps]}, got {signal['D']}"
            )
