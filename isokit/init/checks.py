"""Input validation shared by every initializer and scheme of :mod:`isokit.init`.

Every helper takes ``(name, value, ...)``: the argument or option name first, then its value,
then what it must satisfy; ``where`` (keyword) names the function or scheme the value was given
to and prefixes the message (``"idi_: tau must be finite, got nan; ..."``). Type errors raise
``TypeError`` and bad values ``ValueError``; every message shows the offending value and says
what to pass instead. Helpers that accept a value return it normalized (``float`` for reals,
``int`` for integers), so callers use what was checked.

Booleans are not numbers here (``True`` is refused where a number is wanted) and numbers are not
booleans (``0``, ``1`` and ``"False"`` are refused where a flag is wanted), unlike Python's own
``bool <: int``.

The errors are :class:`OptionTypeError` and :class:`OptionValueError`, plain ``TypeError`` and
``ValueError`` that also carry the ``option`` they are about and the ``reason`` without the
``where: name`` prefix, so that a layer holding the option under another key (a report config's
``schemes[0].options.gain``) can say it once, at its own key.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from numbers import Integral, Real

import torch
from torch import Tensor

__all__ = [
    "OptionTypeError",
    "OptionValueError",
    "check_bool",
    "check_choice",
    "check_dtype",
    "check_finite_options",
    "check_fits",
    "check_groups",
    "check_int",
    "check_layer_name",
    "check_per_layer",
    "check_real",
    "check_weight",
]


class _OptionError:
    """What both error classes carry besides their message."""

    option: str
    reason: str

    def __init__(
        self,
        option: str,
        reason: str,
        *,
        where: str | None = None,
        sep: str = " ",
        message: str | None = None,
    ) -> None:
        super().__init__(f"{_subject(option, where)}{sep}{reason}" if message is None else message)
        self.option = option
        self.reason = reason

    def __reduce__(self):  # pickling (worker processes) rebuilds from the message, not __init__
        return _rebuild, (type(self), self.args, self.option, self.reason)


def _rebuild(cls: type, args: tuple, option: str, reason: str) -> BaseException:
    err = cls.__new__(cls)
    err.args, err.option, err.reason = args, option, reason
    return err


class OptionTypeError(_OptionError, TypeError):
    """A ``TypeError`` about argument or option ``option``; ``reason`` is the message after it.

    Example:
        >>> err = OptionTypeError("gain", "must be a real number", where="orthogonal")
        >>> str(err), err.option, err.reason
        ('orthogonal: gain must be a real number', 'gain', 'must be a real number')
    """


class OptionValueError(_OptionError, ValueError):
    """A ``ValueError`` about argument or option ``option``; ``reason`` is the message after it.

    Example:
        >>> try:
        ...     check_real("tau", float("nan"), where="idi_")
        ... except OptionValueError as err:
        ...     print(err.option, "|", err.reason)
        tau | must be finite, got nan; pass a finite number
    """


def _subject(name: str, where: str | None) -> str:
    return f"{where}: {name}" if where else name


def _shown(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_real(
    name: str,
    value: object,
    *,
    where: str | None = None,
    minimum: float | None = None,
    positive: bool = False,
) -> float:
    """Return ``value`` as a finite ``float``, or raise naming ``name``.

    ``minimum`` is an inclusive lower bound, ``positive=True`` demands ``value > 0``.

    Example:
        >>> check_real("gain", 2)
        2.0
        >>> check_real("gain", float("nan"), where="xavier_uniform_")
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionValueError: xavier_uniform_: gain must be finite, got nan; pass a finite number
    """  # noqa: E501
    if isinstance(value, bool) or not isinstance(value, Real):
        raise OptionTypeError(name, f"must be a real number, got {_shown(value)}", where=where)
    number = float(value)
    if not math.isfinite(number):
        raise OptionValueError(
            name, f"must be finite, got {number}; pass a finite number", where=where
        )
    if positive and number <= 0:
        raise OptionValueError(name, f"must be > 0, got {number:g}", where=where)
    if minimum is not None and number < minimum:
        raise OptionValueError(name, f"must be >= {minimum:g}, got {number:g}", where=where)
    return number


def check_int(
    name: str, value: object, *, where: str | None = None, minimum: int | None = None
) -> int:
    """Return ``value`` as an ``int`` (not a bool, float or string), at least ``minimum``.

    Example:
        >>> check_int("max_iter", 10, minimum=0)
        10
        >>> check_int("seed", 1.5)
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionTypeError: seed must be an int, got 1.5 (float)
    """
    want = "a positive int" if minimum == 1 else "an int"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise OptionTypeError(name, f"must be {want}, got {_shown(value)}", where=where)
    number = int(value)
    if minimum is not None and number < minimum:
        bound = "" if minimum == 1 else f" >= {minimum}"
        raise OptionValueError(name, f"must be {want}{bound}, got {number}", where=where)
    return number


def check_bool(name: str, value: object, *, where: str | None = None) -> bool:
    """Return ``value`` if it is ``True`` or ``False``; refuse ``0``, ``1``, ``"False"``, ...

    Example:
        >>> check_bool("remove_norms", False)
        False
        >>> check_bool("remove_norms", "False")
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionTypeError: remove_norms must be True or False, got 'False' (str)
    """
    if not isinstance(value, bool):
        raise OptionTypeError(name, f"must be True or False, got {_shown(value)}", where=where)
    return value


def check_choice(
    name: str,
    value: object,
    choices: Iterable[object],
    *,
    where: str | None = None,
    allow_none: bool = False,
) -> None:
    """Raise unless ``value`` is one of ``choices`` (or ``None`` with ``allow_none=True``).

    Example:
        >>> check_choice("mode", "fan_avg", ("fan_in", "fan_out"))
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionValueError: mode='fan_avg' is not supported; use one of 'fan_in', 'fan_out'
    """  # noqa: E501
    allowed = tuple(choices)
    if allow_none and value is None:
        return
    # `True in (1, 0)` holds in Python; a flag is never a valid choice among strings.
    if not isinstance(value, bool) and any(
        isinstance(value, type(c)) and value == c for c in allowed
    ):
        return
    shown = ", ".join(repr(c) for c in ((None, *allowed) if allow_none else allowed))
    raise OptionValueError(
        name, f"{value!r} is not supported; use one of {shown}", where=where, sep="="
    )


def check_per_layer(name: str, value: object, *, where: str | None = None) -> None:
    """Raise unless ``value`` is a finite real or a ``{glob: finite real}`` map.

    Example:
        >>> check_per_layer("tau", {"layer1.*": 0.5})
        >>> check_per_layer("tau", {"layer1.*": "0.5"})
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionTypeError: tau['layer1.*'] must be a real number, got '0.5' (str)
    """
    if not isinstance(value, Mapping):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise OptionTypeError(
                name,
                f"must be a number or a {{glob: number}} map, got {_shown(value)}",
                where=where,
            )
        check_real(name, value, where=where)
        return
    for pattern, v in value.items():
        if not isinstance(pattern, str):
            raise OptionTypeError(
                name,
                f"map keys must be module-name globs (str), got {_shown(pattern)}",
                where=where,
            )
        check_real(f"{name}[{pattern!r}]", v, where=where)


def check_finite_options(options: Mapping[str, object], *, where: str | None = None) -> None:
    """Refuse NaN and ±inf in any numeric option, or any value of a ``{key: number}`` map.

    Non-numbers pass: their types are each scheme's own check.

    Example:
        >>> check_finite_options({"gain": 1.0, "mode": "fan_in"})
        >>> check_finite_options({"tau": {"fc": float("inf")}}, where="idinit")
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionValueError: idinit: tau['fc'] must be finite, got inf; pass a finite number
    """  # noqa: E501
    for key, value in options.items():
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for sub, v in items:
            if isinstance(v, Real) and not isinstance(v, bool) and not math.isfinite(float(v)):
                check_real(key if sub is None else f"{key}[{sub!r}]", v, where=where)


def check_fits(name: str, value: float, dtype: torch.dtype, *, where: str | None = None) -> None:
    """Raise unless the finite float ``value`` can be stored in ``dtype`` without overflow.

    Example:
        >>> check_fits("alpha", 1e39, torch.float32, where="rezero")
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionValueError: rezero: alpha=1e+39 does not fit in torch.float32 (largest finite value 3.4e+38); pass a smaller value or use a wider dtype
    """  # noqa: E501
    if not dtype.is_floating_point:
        return
    largest = torch.finfo(dtype).max
    if abs(value) > largest:
        raise OptionValueError(
            name,
            f"{value:g} does not fit in {dtype} (largest finite value {largest:.2g}); pass a "
            "smaller value or use a wider dtype",
            where=where,
            sep="=",
        )


def check_dtype(name: str, value: object, *, where: str | None = None) -> torch.dtype:
    """Return ``value`` if it is a floating-point ``torch.dtype``.

    Example:
        >>> check_dtype("dtype", torch.int32)
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionTypeError: dtype must be a floating-point torch.dtype, got torch.int32 (dtype)
    """  # noqa: E501
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise OptionTypeError(
            name, f"must be a floating-point torch.dtype, got {_shown(value)}", where=where
        )
    return value


def check_layer_name(
    name: str,
    value: object,
    layers: Iterable[str],
    *,
    where: str | None = None,
    optional: bool = False,
) -> None:
    """Raise unless ``value`` is one of the module names ``layers`` (or ``None`` if optional).

    Example:
        >>> check_layer_name("head_name", "fc2", ["fc0", "fc1"], where="zero")
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionValueError: zero: head_name='fc2' is not a weight layer of the model; did you mean fc1, fc0?
    """  # noqa: E501
    if optional and value is None:
        return
    if not isinstance(value, str):
        raise OptionTypeError(
            name, f"must be a module name (str), got {_shown(value)}", where=where
        )
    known = sorted(set(layers))
    if value not in known:
        close = difflib.get_close_matches(value, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise OptionValueError(
            name, f"{value!r} is not a weight layer of the model{hint}", where=where, sep="="
        )


def _dims_wanted(min_dim: int, max_dim: int | None) -> str:
    if max_dim == min_dim:
        return f"a {min_dim}-D weight"
    if max_dim is None:
        return f"a weight with at least {min_dim} dimensions"
    return f"a {min_dim}-D to {max_dim}-D weight"


def check_weight(
    name: str,
    value: object,
    *,
    where: str,
    min_dim: int = 2,
    max_dim: int | None = None,
    hint: str = "",
    floating: bool = True,
    allow_empty: bool = False,
) -> Tensor:
    """Return ``value`` if it is a non-empty tensor with ``min_dim..max_dim`` dims.

    ``floating=True`` (default) also demands a real floating-point dtype, which every
    initializer needs; :func:`isokit.init.fans` reads only the shape and passes ``False``.
    ``allow_empty=True`` accepts a zero-element tensor, for the functions that share a name with
    ``torch.nn.init`` and, like it, return one untouched.

    Example:
        >>> check_weight("w", torch.empty(3), where="eye_", max_dim=2)
        Traceback (most recent call last):
        ...
        ValueError: eye_: w must be a 2-D weight, got shape (3,); pass a Linear (out, in) or ConvNd (C_out, C_in/groups, *k) weight, not a bias
    """  # noqa: E501
    subject = _subject(name, where)
    if not isinstance(value, Tensor):
        raise TypeError(f"{subject} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(
            f"{subject} must be a real floating-point tensor, got dtype {value.dtype}; create it "
            f"with a float dtype (e.g. torch.float32) or convert it with {name}.float()"
        )
    if value.dim() < min_dim or (max_dim is not None and value.dim() > max_dim):
        fix = (
            hint or "pass a Linear (out, in) or ConvNd (C_out, C_in/groups, *k) weight, not a bias"
        )
        raise ValueError(
            f"{subject} must be {_dims_wanted(min_dim, max_dim)}, got shape "
            f"{tuple(value.shape)}; {fix}"
        )
    if value.numel() == 0 and not allow_empty:
        raise ValueError(
            f"{subject} is an empty tensor of shape {tuple(value.shape)}; every dimension of a "
            "weight must be at least 1"
        )
    return value


def check_groups(name: str, value: object, weight: Tensor, *, where: str) -> int:
    """Return ``value`` if it is a valid ``groups`` for ``weight`` (a conv's own groups).

    Example:
        >>> check_groups("groups", 4, torch.empty(6, 2, 3, 3), where="dirac_")
        Traceback (most recent call last):
        ...
        ValueError: dirac_: C_out=6 is not divisible by groups=4; pass the conv's own groups (module.groups)
    """  # noqa: E501
    groups = check_int(name, value, where=where, minimum=1)
    if groups > 1 and weight.dim() < 3:
        raise ValueError(
            f"{_subject(name, where)}={groups} only applies to conv weights (3-D to 5-D), got "
            f"shape {tuple(weight.shape)}; use {name}=1 for Linear weights"
        )
    if weight.size(0) % groups:
        raise ValueError(
            f"{where}: C_out={weight.size(0)} is not divisible by {name}={groups}; pass the "
            "conv's own groups (module.groups)"
        )
    return groups
