"""Typed constructor arguments of a model kind: :class:`Arg`, :class:`Rule`, :class:`Derived`.

An :class:`Arg` says what one constructor argument takes (type, default, choices, bounds, the
word that spells ``None`` in a config) and which common ``isokit probe`` flag sets it; a
:class:`Rule` ties arguments together. Both raise :class:`ModelArgError` naming the argument.
Types are strict: a boolean is not an integer, ``1e3`` is not an integer, ``"False"`` is not a
boolean.

Example:
    >>> size("depth").check(True)
    Traceback (most recent call last):
    ...
    isokit.models.args.ModelArgError: depth: must be a positive integer, got a boolean true
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FROM_FACTORY",
    "NO_PROBE_DEFAULT",
    "REQUIRED",
    "SIZE_MAX",
    "Arg",
    "Derived",
    "ModelArgError",
    "Rule",
    "size",
]

SIZE_MAX = 2**31 - 1


@dataclass(frozen=True)
class Derived:
    """A default computed from another argument: ``factor · args[arg]``.

    Example:
        >>> d_ff = Derived("d_model", 4)
        >>> d_ff({"d_model": 32}), str(d_ff)
        (128, '4·d_model')
    """

    arg: str
    factor: int = 1

    def __call__(self, args: Mapping[str, Any]) -> int:
        return self.factor * args[self.arg]

    def __str__(self) -> str:
        return self.arg if self.factor == 1 else f"{self.factor}·{self.arg}"


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: ``Arg.default`` of an argument a config must give.
REQUIRED: Any = _Sentinel("REQUIRED")
#: ``Arg.default`` to take from the factory's signature (the usual case).
FROM_FACTORY: Any = _Sentinel("FROM_FACTORY")
#: ``Arg.probe_default`` when ``isokit probe`` leaves the argument to the factory.
NO_PROBE_DEFAULT: Any = _Sentinel("NO_PROBE_DEFAULT")


class ModelArgError(ValueError):
    """A bad model argument ``arg`` (or ``"input_shape"``, ``"kind"``) and a message saying the fix.

    ``related`` names the other arguments a cross-argument rule ties ``arg`` to, so that a
    caller whose user cannot set ``arg`` (a flag the CLI fixes) can name one they can.

    Example:
        >>> err = ModelArgError("depth", "must be a positive integer, got -3")
        >>> err.arg, str(err)
        ('depth', 'depth: must be a positive integer, got -3')
    """

    def __init__(self, arg: str, message: str, *, related: tuple[str, ...] = ()) -> None:
        super().__init__(f"{arg}: {message}")
        self.arg = arg
        self.message = message
        self.related = tuple(related)


def _shown(value: object) -> str:
    """How a value reads in a message: ``-3``, ``'4'``, ``a float 1000.0``, ``a list``."""
    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    if isinstance(value, float):
        return f"a float {value!r}"
    if isinstance(value, int | str):
        return repr(value)
    return f"a {type(value).__name__}"


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True, kw_only=True)
class Arg:
    """One constructor argument: its type, default, allowed values and the CLI flag that sets it.

    Attributes:
        name: the keyword the factory takes.
        type: ``int``, ``float``, ``bool`` or ``str``. Strict: a boolean is not an integer,
            ``1e3`` is not an integer, ``"False"`` is not a boolean.
        default: :data:`REQUIRED`, a value, or (the default) :data:`FROM_FACTORY`, which reads it
            from the factory's signature when the kind is made.
        choices: the allowed values, or ``None`` for any value of the type.
        minimum, maximum: inclusive bounds of a number (sizes: 1 and :data:`SIZE_MAX`).
        none: the word that spells ``None`` in a config (TOML has no null), e.g. ``"none"``.
        flag: the common ``isokit probe`` flag (without ``--``) that sets the argument.
        probe_default: what ``isokit probe`` passes when the flag is not given: a value, or a
            :class:`Derived` one (``Derived("d_model", 4)``: four times ``d_model``).

    Example:
        >>> Arg(name="depth", type=int, minimum=1).check(1e3)
        Traceback (most recent call last):
        ...
        isokit.models.args.ModelArgError: depth: must be a positive integer, got a float 1000.0
    """

    name: str
    type: type
    default: Any = FROM_FACTORY
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    none: str | None = None
    flag: str | None = None
    probe_default: Any = NO_PROBE_DEFAULT

    def __post_init__(self) -> None:
        if self.type not in _TYPE_WORDS:
            raise TypeError(f"Arg {self.name!r}: type must be int, float, bool or str")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def has_probe_default(self) -> bool:
        """Whether ``isokit probe`` sets the argument when its flag is not given."""
        return self.probe_default is not NO_PROBE_DEFAULT

    @property
    def nullable(self) -> bool:
        """Whether ``None`` is a valid value (a ``None`` default or a ``none`` word)."""
        return self.none is not None or (self.default is None) or None in (self.choices or ())

    def describe(self) -> str:
        """What a valid value is, as a message fragment (``a positive integer``, ``one of ...``)."""
        if self.choices is not None:
            words = [self.none if c is None and self.none else c for c in self.choices]
            return "one of " + ", ".join(map(repr, words))
        if self.type is int and self.minimum == 1:
            what = "a positive integer"
        elif self.type in (int, float) and self.minimum is not None:
            what = f"{_TYPE_WORDS[self.type]} >= {self.minimum:g}"
        else:
            what = _TYPE_WORDS[self.type]
        return what  # the maximum has its own message: values beyond it are not typos

    def _fail(self, value: object, hint: str = "") -> ModelArgError:
        return ModelArgError(self.name, f"must be {self.describe()}, got {_shown(value)}{hint}")

    def check(self, value: object) -> Any:
        """Return ``value`` as the factory takes it (``none`` word → ``None``), or raise."""
        if value is None or (self.none is not None and value == self.none):
            if self.nullable:
                return None
            raise self._fail(value)
        if self.choices is not None:
            return self._check_choice(value)
        if self.type is bool:
            if not isinstance(value, bool):
                raise self._fail(value)
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise self._fail(value)
            return value
        return self._check_number(value)

    def _check_choice(self, value: object) -> Any:
        typed = isinstance(value, self.type) and isinstance(value, bool) == (self.type is bool)
        if typed and value in self.choices:
            return value
        words = [self.none if c is None and self.none else str(c) for c in self.choices]
        close = difflib.get_close_matches(str(value), words, n=1)
        raise self._fail(value, f"; did you mean {close[0]!r}?" if close else "")

    def _check_number(self, value: object) -> int | float:
        if self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        if not ok:
            raise self._fail(value)
        if self.minimum is not None and value < self.minimum:
            raise self._fail(value)
        if self.maximum is not None and value > self.maximum:
            raise ModelArgError(
                self.name, f"must be at most {self.maximum!r}, got {value!r}; no machine fits more"
            )
        return value if self.type is int else float(value)

    def to_config(self, value: Any) -> Any:
        """``value`` as a config spells it (``None`` → the ``none`` word)."""
        return self.none if value is None and self.none is not None else value


def size(name: str, **kw: Any) -> Arg:
    """A size argument: a positive integer up to :data:`SIZE_MAX`.

    Example:
        >>> size("width", flag="width").check(0)
        Traceback (most recent call last):
        ...
        isokit.models.args.ModelArgError: width: must be a positive integer, got 0
    """
    return Arg(name=name, type=int, minimum=1, maximum=SIZE_MAX, **kw)


@dataclass(frozen=True)
class Rule:
    """A rule tying arguments together: ``check(args)`` returns a message saying the fix, or None.

    The error names ``args[0]``; the others are its ``related`` arguments.

    Example:
        >>> rule = Rule(("kernel_size",), lambda a: None if a["kernel_size"] % 2 else "must be odd")
        >>> rule.check({"kernel_size": 3}) is None
        True
    """

    args: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], str | None]

    def require(self, args: Mapping[str, Any]) -> None:
        """Raise :class:`ModelArgError` naming ``self.args[0]`` unless ``args`` keep the rule.

        Example:
            >>> Rule(("kernel_size",), lambda a: "must be odd").require({"kernel_size": 2})
            Traceback (most recent call last):
            ...
            isokit.models.args.ModelArgError: kernel_size: must be odd
        """
        message = self.check(args)
        if message is not None:
            raise ModelArgError(self.args[0], message, related=self.args[1:])
