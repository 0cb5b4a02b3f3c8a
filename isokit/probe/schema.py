"""The JSON layout of the probe results: the checked readers behind ``from_dict``.

:func:`read_profile`, :func:`read_tap` and :func:`read_signal` check every field's presence, type
and length (``singular_values`` has ``n_examples`` rows of ``r`` values, every statistic
``n_examples`` values, every signal array one value per tap, ...) and refuse unknown fields, so
nothing is silently dropped. The fields are those of the result dataclass passed in
(:func:`field_names`), so the dataclass is the one place they are listed; its float arrays with
one value per tap are marked :data:`PER_TAP`. :func:`read_profile` also checks the sections
against each other: the same examples everywhere, and blocks and signal that name the profile's
own taps in order. A failure is a :class:`~isokit.probe.serialization.ProfileFormatError` naming
the field; the values themselves follow :mod:`isokit.probe.serialization`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from isokit.probe.checks import close_matches, describe
from isokit.probe.serialization import (
    ProfileFormatError,
    read_array,
    read_int,
    read_list,
    read_mapping,
    read_number,
    read_str,
)
from isokit.probe.statistics import STAT_NAMES

__all__ = [
    "PER_TAP",
    "SCHEMA_VERSION",
    "field_names",
    "per_tap_arrays",
    "read_profile",
    "read_signal",
    "read_tap",
]

SCHEMA_VERSION = 1
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
        out[key] = read_array(f"{field}.{key}", item, (B,))
    return out


def _singular_values(field: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    """``[B, r]`` singular values: finite and >= 0, as every probe writes them."""
    sv = read_array(f"{field}.singular_values", value, shape)
    if not (np.isfinite(sv).all() and (sv >= 0).all()):
        bad = sv[~(np.isfinite(sv) & (sv >= 0))][0]
        raise ProfileFormatError(
            f"{field}.singular_values",
            f"holds {bad}, but singular values are finite and >= 0 (no probe writes that); the "
            "file is damaged: regenerate it",
        )
    return sv


def _density(field: str, value: Any, B: int) -> dict[str, np.ndarray] | None:
    if value is None:
        return None
    d = read_mapping(field, value, ("nodes", "weights"), "an SLQ density")
    nodes = read_array(f"{field}.nodes", d["nodes"], (B, None, None))
    weights = read_array(f"{field}.weights", d["weights"], nodes.shape)
    return {"nodes": nodes, "weights": weights}


def _ritz(field: str, value: Any, B: int) -> dict[str, np.ndarray] | None:
    if value is None:
        return None
    d = read_mapping(field, value, _RITZ, "a Ritz record")
    return {
        k: read_array(f"{field}.{k}", d[k], (B,), bool if k == "converged" else np.float64)
        for k in _RITZ
    }


#: Statistics renamed since profiles were first written: old name -> name.
RENAMED_STATS = {"zero_frac": "zero_fraction"}


def _renamed(stats: Any) -> Any:
    """``stats`` with old statistic names replaced, so older profiles read back."""
    if not isinstance(stats, dict):
        return stats
    return {RENAMED_STATS.get(k, k): v for k, v in stats.items()}


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
    d = read_mapping(field, d, field_names(cls), "a tap")
    D, n_in, r = (read_int(f"{field}.{k}", d[k], 1) for k in ("D", "n_in", "r"))
    if r != min(D, n_in):
        raise ProfileFormatError(f"{field}.r", f"must be min(D, n_in) = {min(D, n_in)}, got {r}")
    shape = tuple(read_int(f"{field}.shape", v, 1) for v in read_list(f"{field}.shape", d["shape"]))
    if math.prod(shape) != D:
        raise ProfileFormatError(f"{field}.shape", f"{list(shape)} does not hold D = {D} values")
    degenerate = read_array(f"{field}.degenerate", d["degenerate"], (None,), bool)
    B = degenerate.shape[0]
    if B < 1:
        raise ProfileFormatError(f"{field}.degenerate", "is empty: a tap has at least 1 example")
    stats = _array_dict(f"{field}.stats", _renamed(d["stats"]), B, STAT_NAMES)
    se = _array_dict(f"{field}.se", _renamed(d["se"]), B, tuple(stats))
    sv = d["singular_values"]
    warnings = read_list(f"{field}.warnings", d["warnings"])
    for i, text in enumerate(warnings):
        read_str(f"{field}.warnings[{i}]", text)
    return {
        "name": read_str(f"{field}.name", d["name"]),
        "depth": read_int(f"{field}.depth", d["depth"], 1),
        "D": D,
        "n_in": n_in,
        "r": r,
        "shape": shape,
        "method": read_str(f"{field}.method", d["method"]),
        "side": read_str(f"{field}.side", d["side"], ("output", "input")),
        "stats": stats,
        "degenerate": degenerate,
        "saturated": read_array(f"{field}.saturated", d["saturated"], (B,), bool),
        "gram_unreliable": read_array(f"{field}.gram_unreliable", d["gram_unreliable"], (B,), bool),
        "singular_values": None if sv is None else _singular_values(field, sv, (B, r)),
        "se": se,
        "traces": _array_dict(f"{field}.traces", d["traces"], B, ("t1", "t2", "t3")),
        "density": _density(f"{field}.density", d["density"], B),
        "ritz": _ritz(f"{field}.ritz", d["ritz"], B),
        "n_products": read_int(f"{field}.n_products", d["n_products"], 0),
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
    d = read_mapping(field, d, field_names(cls), "a signal")
    names = read_list(f"{field}.taps", d["taps"], nonempty=True)
    taps = [read_str(f"{field}.taps", t) for t in names]
    L = len(taps)
    dims = read_list(f"{field}.D", d["D"])
    if len(dims) != L:
        raise ProfileFormatError(f"{field}.D", f"has {len(dims)} values for {L} taps")
    seed = d["seed"]
    out: dict[str, Any] = {
        name: read_array(f"{field}.{name}", d[name], (L,)) for name in per_tap_arrays(cls)
    }
    out.update(
        taps=taps,
        D=[read_int(f"{field}.D", v, 1) for v in dims],
        cos_dropped=read_array(f"{field}.cos_dropped", d["cos_dropped"], (L,), np.int64),
        input_q=read_number(f"{field}.input_q", d["input_q"]),
        input_cos=read_number(f"{field}.input_cos", d["input_cos"]),
        loss=read_str(f"{field}.loss", d["loss"], ("projection", "custom")),
        seed=None if seed is None else read_int(f"{field}.seed", seed, 0),
        n_examples=read_int(f"{field}.n_examples", d["n_examples"], 1),
    )
    return out


def _taps(field: str, value: Any, cls: type) -> list[dict[str, Any]]:
    items = read_list(field, value, nonempty=True)
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
    d = read_mapping("", d, ("schema", *field_names(cls)), "a profile")
    schema = read_int("schema", d["schema"], 1)
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
