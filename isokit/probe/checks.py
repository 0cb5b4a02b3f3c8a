"""Argument checks of the probe layer: each takes ``(name, value, ...)``, returns the value.

Every failure of an option check is a :class:`ProbeOptionError` (a ``ValueError``) naming the
argument, the value found and the fix. Types are strict: ``True`` is not an integer, ``1.0`` is
not an integer and the string ``"no"`` is not a boolean. The one check of data rather than of an
option, :func:`check_inputs`, raises ``TypeError`` for an input of the wrong kind (not a tensor,
not floating point without a ``start``) and ``ValueError`` for one of the wrong shape or with NaN
or inf.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "NonFiniteError",
    "ProbeOptionError",
    "as_int",
    "boolean",
    "check_dtype",
    "check_inputs",
    "check_meta",
    "check_slq_taps",
    "check_taps",
    "choice",
    "close_matches",
    "describe",
    "finite_positive",
    "positive_int",
]


class NonFiniteError(ValueError):
    """The probe met NaN or inf in what it measures: the model's weights in the probe dtype, its
    activations, or a Jacobian, Gram or trace moment that overflowed (the message names where).

    Unlike a bad option or input, this is a property of the weights: a training checkpoint
    records it and goes on (:func:`isokit.train.train`). A ``ValueError``, as before.

    Example:
        >>> import torch, isokit
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> with torch.no_grad():
        ...     _ = model[0].weight.fill_(float("nan"))
        >>> try:
        ...     isokit.probe.profile(model, torch.randn(1, 2))
        ... except isokit.probe.NonFiniteError as err:
        ...     print("refused:", str(err)[:31])
        refused: Sequential parameter '0.weight'
    """


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


@overload
def positive_int(
    name: str, value: Any, *, minimum: int = ..., why: str = ..., optional: Literal[False] = ...
) -> int: ...
@overload
def positive_int(
    name: str, value: Any, *, minimum: int = ..., why: str = ..., optional: bool
) -> int | None: ...
def positive_int(
    name: str, value: Any, *, minimum: int = 1, why: str = "", optional: bool = False
) -> int | None:
    """An integer ``>= minimum`` (booleans, floats and strings are refused); with ``optional``
    also ``None`` (choose automatically).

    Example:
        >>> positive_int("n_probes", 16, minimum=4)
        16
        >>> positive_int("max_memory", None, optional=True) is None
        True
    """
    if optional and value is None:
        return None
    number = as_int(value)
    if number is None or number < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        if minimum == 0:
            what = "a non-negative integer"
        if optional:
            what += " or None (automatic)"
        raise ProbeOptionError(name, f"must be {what}{why}, got {describe(value)}")
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


def check_meta(name: str, value: Any) -> dict[str, Any] | None:
    """``None`` or a mapping with string keys (extra ``Profile.meta``), as a dict.

    Example:
        >>> check_meta("meta", {"scheme": "idinit"})
        {'scheme': 'idinit'}
    """
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ProbeOptionError(
            name, f"must be a dict of string keys (extra metadata) or None, got {describe(value)}"
        )
    return dict(value)


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


# ----------------------------------------------------------------------- probe-specific values

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_TOO_COARSE = {"float16", "bfloat16", "half"}
_GLOB = frozenset("*?[]")

TapsOption = str | Sequence[str] | Callable[[str, nn.Module], bool]
SlqTapsOption = str | Sequence[str | int] | None


def _tap_name(name: str, value: Any, *, patterns: bool = False) -> str:
    """A non-empty module name; a glob pattern only where ``patterns`` (taps) allows one."""
    if not isinstance(value, str) or not value:
        raise ProbeOptionError(name, f"tap names must be non-empty strings, got {describe(value)}")
    if not patterns and _GLOB & set(value):
        raise ProbeOptionError(
            name,
            f"{value!r} looks like a glob pattern, and {name} names are matched literally; name "
            "the module (glob patterns select taps only)",
        )
    return value


def check_start(name: str, value: Any) -> str | None:
    """``None`` (the input) or one module name, matched literally like a tap name.

    Example:
        >>> check_start("start", "layer1"), check_start("start", None)
        ('layer1', None)
    """
    return None if value is None else _tap_name(name, value)


def check_taps(name: str, value: Any) -> TapsOption:
    """``"auto"``, one module name or glob pattern, a list/tuple of them (as a tuple) or a
    predicate (:func:`isokit.probe.taps.resolve_taps` reads them against the model).

    Example:
        >>> check_taps("taps", ["blocks.0", "blocks.1"]), check_taps("taps", "encoder.layer.*")
        (('blocks.0', 'blocks.1'), 'encoder.layer.*')
    """
    if isinstance(value, str):
        return _tap_name(name, value, patterns=True)
    if isinstance(value, list | tuple):
        if not value:
            raise ProbeOptionError(name, "the tap list is empty; pass module names or 'auto'")
        return tuple(_tap_name(name, item, patterns=True) for item in value)
    if isinstance(value, nn.Module):
        raise ProbeOptionError(
            name,
            f"got the module {type(value).__name__} itself; pass its name from named_modules()",
        )
    if callable(value):
        return value
    raise ProbeOptionError(
        name,
        f"must be 'auto', a list of module names or a predicate (name, module) -> bool, "
        f"got {describe(value)}",
    )


def check_slq_taps(name: str, value: Any) -> SlqTapsOption:
    """``None`` (default depths), ``"all"``, ``"none"``, a tap name, or names and 1-based depths.

    Example:
        >>> check_slq_taps("slq_taps", ["blocks.0", 3])
        ('blocks.0', 3)
    """
    if value is None or isinstance(value, str):
        return None if value is None else _tap_name(name, value)
    if not isinstance(value, list | tuple):
        raise ProbeOptionError(
            name,
            f"must be None, 'all', 'none' or a list of tap names and 1-based depths, got "
            f"{describe(value)}",
        )
    out: list[str | int] = []
    for item in value:
        depth = as_int(item)
        if depth is not None:
            out.append(positive_int(name, depth, why=" (a 1-based depth)"))
        else:
            out.append(_tap_name(name, item))
    return tuple(out)


def check_dtype(name: str, value: Any) -> torch.dtype:
    """``torch.float64`` or ``torch.float32`` (or their names); half precisions are refused.

    Example:
        >>> check_dtype("dtype", "float32")
        torch.float32
    """
    key = str(value).replace("torch.", "") if isinstance(value, torch.dtype | str) else None
    if key in _TOO_COARSE:
        raise ProbeOptionError(
            name,
            f"{key} is too coarse for Jacobian spectra (machine epsilon ~1e-3 swamps small "
            "singular values and overflows deep products); use float64 (default) or float32",
        )
    if key not in _DTYPES:
        raise ProbeOptionError(name, f"must be float64 or float32, got {describe(value)}")
    return _DTYPES[key]


def _structure_tensors(name: str, inputs: tuple | Mapping) -> list[tuple[str, Tensor]]:
    """The tensors of a tuple or dict of inputs, named as the user would (``inputs['ids']``)."""
    if isinstance(inputs, Mapping):
        bad = next((k for k in inputs if not isinstance(k, str)), None)
        if bad is not None:
            raise TypeError(f"{name} keys must be argument names (str), got {describe(bad)}")
        items = [(f"{name}[{k!r}]", v) for k, v in inputs.items()]
    else:
        items = [(f"{name}[{i}]", v) for i, v in enumerate(inputs)]
    tensors = [(where, v) for where, v in items if isinstance(v, Tensor)]
    if not tensors:
        raise TypeError(f"{name} hold no tensor; pass the batch the model's forward takes")
    return tensors


def _check_batch(name: str, inputs: Any, start: str | None) -> list[tuple[str, Tensor]]:
    """The named tensors of ``inputs``; a structure or integer tensor only with a ``start``."""
    if isinstance(inputs, tuple | Mapping):
        if start is None:
            kind = "a dict of keyword" if isinstance(inputs, Mapping) else "a tuple of positional"
            raise TypeError(
                f"{name} are {kind} inputs; token ids and keyword inputs cannot be "
                "differentiated: pass start=<the module after the embeddings> to probe from its "
                "output"
            )
        return _structure_tensors(name, inputs)
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor batch (B, ...), a tuple of positional or a dict of "
            f"keyword inputs, got {type(inputs).__name__}"
        )
    if not inputs.dtype.is_floating_point and start is None:
        raise TypeError(
            f"{name} must be floating point (Jacobians need a continuous input), got "
            f"{inputs.dtype}; token ids cannot be differentiated: pass start=<the module after "
            "the embeddings> to probe from its output"
        )
    return [(name, inputs)]


def check_inputs(name: str, inputs: Any, *, start: str | None = None) -> Any:
    """A finite batch ``(B, ...)`` with ``B ≥ 1``, or a clear error; ``inputs`` returned as given.

    Without ``start`` the batch is one floating tensor, the variable the probes differentiate.
    With ``start`` (the variable is that module's output) it may also be an integer tensor
    (token ids), a tuple of positional or a dict of keyword inputs; every tensor in it has the
    batch axis first, of one size, and values that are not tensors (``use_cache=False``) are
    passed to the model as they are.

    Example:
        >>> check_inputs("inputs", torch.zeros(2, 3)).shape
        torch.Size([2, 3])
        >>> ids = torch.zeros(2, 5, dtype=torch.long)
        >>> sorted(check_inputs("inputs", {"input_ids": ids}, start="embeddings"))
        ['input_ids']
    """
    tensors = _check_batch(name, inputs, start)
    where0, first = tensors[0]
    # One tensor is (B, features...); inside a structure a (B,) vector (lengths, labels) is fine.
    least = 2 if isinstance(inputs, Tensor) else 1
    for where, t in tensors:
        if t.ndim < least:
            raise ValueError(
                f"{where} must be a batch of shape (B, ...) with B ≥ 1, got shape "
                f"{tuple(t.shape)}; add the batch axis with inputs[None]"
            )
        if t.shape[0] != first.shape[0]:
            raise ValueError(
                f"{where} has {t.shape[0]} examples but {where0} has {first.shape[0]}; every "
                "tensor of the inputs has the batch axis first (each example is sliced from all)"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{where} contain NaN or inf")
    if first.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B = 0)")
    return inputs
