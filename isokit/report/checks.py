"""Value checkers for configs: each takes ``(key, value)``, returns the value or raises.

Every failure is a :class:`ConfigError` carrying the dotted key (``models[1].depth``) and a
message that says what was expected, what was found and, where it can, what was probably meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "boolean",
    "check_keys",
    "choice",
    "pos_int",
    "shape_of",
    "table_of",
    "type_name",
]


class ConfigError(ValueError):
    """A config problem at a dotted ``key`` (``models[1].depth``) with a message saying the fix."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def type_name(value: object) -> str:
    """How a TOML value's type reads in a message ('an integer', 'a table', ...)."""
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def pos_int(key: str, value: object, *, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (booleans, floats and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        got = repr(value) if isinstance(value, int | float | str) else type_name(value)
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(key, f"must be {what}, got {got}")
    return value


def boolean(key: str, value: object) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {type_name(value)} {value!r}")
    return value


def choice(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    """A checker accepting one of ``choices``, suggesting the closest on a typo."""

    def check(key: str, value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}{hint}"
            )
        return value

    return check


def shape_of(key: str, value: object) -> tuple[int, ...]:
    """A non-empty array of positive integers, as a tuple."""
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty array of positive integers, got {value!r}")
    return tuple(pos_int(f"{key}[{i}]", v) for i, v in enumerate(value))


def table_of(key: str, value: object) -> dict[str, Any]:
    """A TOML table."""
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table, got {type_name(value)}")
    return value


def check_keys(key: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse keys outside ``allowed``, naming the closest allowed one."""
    for name in table:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = f"{key}.{name}" if key else name
            raise ConfigError(where, f"unknown key; {hint}allowed keys: {', '.join(allowed)}")
