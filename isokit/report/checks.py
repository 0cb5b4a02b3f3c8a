"""The report layer's value checkers: each takes ``(key, value, ...)``, returns the value or raises.

Every failure is a :class:`ConfigError` carrying the dotted key (``models[1].depth``) and a
message that says what was expected, what was found and, where it can, what was probably meant.
Types are strict, as in TOML: ``true`` is not an integer, ``1e3`` is not an integer, ``"False"``
is not a boolean. Model arguments are checked by the model kinds themselves
(:mod:`isokit.models.spec`); these checkers cover the rest of a config.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from isokit.models.args import SIZE_MAX

__all__ = [
    "ConfigError",
    "array_of",
    "boolean",
    "check_keys",
    "label_of",
    "one_of",
    "pos_int",
    "scheme_option_error",
    "shape_of",
    "table_of",
    "type_name",
]


class ConfigError(ValueError):
    """A config problem at a dotted ``key`` (``models[1].depth``) with a message saying the fix.

    ``related`` lists the other keys a cross-argument rule ties ``key`` to (``models[1].heads``
    → ``models[1].d_model``), so that the command line can name a flag the user can change.

    Example:
        >>> err = ConfigError("models[1].depth", "must be a positive integer, got -3")
        >>> str(err)
        'models[1].depth: must be a positive integer, got -3'
    """

    def __init__(self, key: str, message: str, *, related: tuple[str, ...] = ()) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
        self.related = tuple(related)


def type_name(value: object) -> str:
    """How a TOML value's type reads in a message ('an integer', 'a table', ...).

    Example:
        >>> type_name(1.5), type_name([1])
        ('a float', 'an array')
    """
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    if isinstance(value, float):
        return f"a float {value!r}"
    return repr(value) if isinstance(value, int | str) else type_name(value)


def pos_int(key: str, value: object, *, minimum: int = 1, maximum: int = SIZE_MAX) -> int:
    """An integer in ``[minimum, maximum]`` (booleans, floats and strings are refused).

    Example:
        >>> pos_int("seeds[0]", 1.5, minimum=0)
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: seeds[0]: must be an integer >= 0, got a float 1.5
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(key, f"must be {what}, got {_shown(value)}")
    if value > maximum:
        raise ConfigError(key, f"must be at most {maximum}, got {value}; no machine fits more")
    return value


def boolean(key: str, value: object) -> bool:
    """``true`` or ``false`` (not ``"false"``, not ``0``).

    Example:
        >>> boolean("probes.block", "False")
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: probes.block: must be true or false, got 'False'
    """
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {_shown(value)}")
    return value


def one_of(key: str, value: object, choices: tuple[str, ...]) -> str:
    """One of ``choices``, suggesting the closest on a typo.

    Example:
        >>> one_of("method", "lanczoz", ("auto", "exact", "lanczos"))
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: method: must be one of 'auto', 'exact', 'lanczos', \
got 'lanczoz'; did you mean 'lanczos'?
    """
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            key, f"must be one of {', '.join(map(repr, choices))}, got {_shown(value)}{hint}"
        )
    return value


def shape_of(key: str, value: object) -> tuple[int, ...]:
    """A non-empty array of positive integers, as a tuple.

    Example:
        >>> shape_of("inputs.shape", [3, 8, 8])
        (3, 8, 8)
    """
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty array of positive integers, got {value!r}")
    return tuple(pos_int(f"{key}[{i}]", v) for i, v in enumerate(value))


def table_of(key: str, value: object) -> dict[str, Any]:
    """A TOML table.

    Example:
        >>> table_of("inputs", [])
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: inputs: must be a table, got an array
    """
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table, got {type_name(value)}")
    return value


def array_of(key: str, value: object, example: str) -> list:
    """A non-empty TOML array; ``example`` shows a valid one in the message.

    Example:
        >>> array_of("seeds", [], "seeds = [0, 1]")
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: seeds: must be a non-empty array, e.g. seeds = [0, 1]
    """
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty array, e.g. {example}")
    return value


def label_of(key: str, value: object) -> str:
    """A display label: a string with something visible in it.

    Example:
        >>> label_of("models[0].label", "  ")
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: models[0].label: must be a non-empty string, got '  '
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {_shown(value)}")
    return value


def check_keys(key: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse keys outside ``allowed``, naming the closest allowed one.

    Example:
        >>> check_keys("inputs", {"exmples": 4}, ("examples", "shape"))
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: inputs.exmples: unknown key; did you mean 'examples'? \
allowed keys: examples, shape
    """
    for name in table:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = f"{key}.{name}" if key else name
            raise ConfigError(where, f"unknown key; {hint}allowed keys: {', '.join(allowed)}")


def scheme_option_error(key: str, options: tuple[str, ...], exc: Exception) -> ConfigError:
    """A scheme's error about one of ``options`` (the names it may be about), at that option's
    key, said once.

    The scheme's checks name the option (:class:`isokit.init.checks.OptionValueError` ``.option``
    and ``.reason``), so the key is ``schemes[0].options.remove_norms`` and the message what is
    wrong with it; an error about anything else stays at ``schemes[0].options``, as it is.

    Example:
        >>> from isokit.init.checks import check_bool
        >>> try:
        ...     check_bool("remove_norms", "False", where="fixup")
        ... except TypeError as exc:
        ...     print(scheme_option_error("schemes[0]", ("remove_norms",), exc))
        schemes[0].options.remove_norms: must be True or False, got 'False' (str)
    """
    option = getattr(exc, "option", None)
    if isinstance(option, str) and option.partition("[")[0] in options:
        return ConfigError(f"{key}.options.{option}", exc.reason)
    return ConfigError(f"{key}.options", str(exc))
