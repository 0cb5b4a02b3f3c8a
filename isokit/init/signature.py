"""A scheme's options, read from its function's signature: names, defaults and type checks.

A scheme is ``fn(ctx, *, option=default, ...)``; its keyword-only parameters are its options, each
with the default written once, there. Where an option's annotation is a type that can be checked
without a model (``bool``, ``int``, ``float``, a per-layer ``float | dict[str, float]``), the
registry checks values against it up front, so ``remove_norms="False"`` in a report config fails
when the config is read rather than when the scheme first runs. Choices among strings and layer
names stay with the scheme, which knows them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from isokit.init.checks import check_bool, check_int, check_per_layer, check_real

__all__ = ["keyword_defaults", "option_checks"]

# Annotation (as written, `from __future__ import annotations`) → its model-free check.
_TYPE_CHECKS: dict[str, Callable[..., object]] = {
    "bool": check_bool,
    "int": check_int,
    "float": check_real,
    "float | dict[str, float]": check_per_layer,
}


def keyword_defaults(fn: Callable[..., object]) -> dict[str, object]:
    """The scheme's options and their defaults: the keyword-only parameters of ``fn``.

    Example:
        >>> def scheme(ctx, *, gain: float = 1.0, bias: str = "zero") -> None: ...
        >>> keyword_defaults(scheme)
        {'gain': 1.0, 'bias': 'zero'}
    """
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    missing = [p.name for p in params if p.default is p.empty]
    if missing:
        raise TypeError(f"scheme options need defaults; {fn.__name__} has none for {missing}")
    return {p.name: p.default for p in params}


def _annotation(p: inspect.Parameter) -> str:
    if isinstance(p.annotation, str):
        return p.annotation
    return getattr(p.annotation, "__name__", "")


def option_checks(
    fn: Callable[..., object], defaults: Mapping[str, object]
) -> dict[str, Callable[..., object]]:
    """Option → the check ``check(name, value, where=...)`` its annotation names.

    An option is left out where its annotation has no model-free check, or where its own default
    fails the check (``x: float = None``: the annotation does not describe every value).

    Example:
        >>> def scheme(ctx, *, gain: float = 1.0, flag: bool = True, mode: str = "a") -> None: ...
        >>> sorted(option_checks(scheme, keyword_defaults(scheme)))
        ['flag', 'gain']
    """
    checks = {}
    for p in inspect.signature(fn).parameters.values():
        check = _TYPE_CHECKS.get(_annotation(p))
        if p.name not in defaults or check is None:
            continue
        try:
            check(p.name, defaults[p.name])
        except (TypeError, ValueError):
            continue
        checks[p.name] = check
    return checks
