"""The model's entry flags of ``isokit probe``: ``--factory``'s ``--kwargs`` and the entry keys.

Each :class:`EntryFlag` sets one entry key of the probed model's ``[[models]]`` table from the
text on the command line: ``--kwargs`` and ``--input-kwargs`` are TOML inline tables (read with
:mod:`tomllib`), ``--input-shape`` is ``3,16,16`` or a TOML array, ``--taps`` one name or glob
pattern or several separated by commas, ``--inputs`` and ``--start`` are taken as they are.
The values then meet the checks of the config keys they set (:mod:`isokit.report.modelspec`).

Example:
    >>> entry_keys({"kwargs": "{hidden_size = 32}", "taps": "encoder.layer.*", "start": None})
    {'kwargs': {'hidden_size': 32}, 'taps': 'encoder.layer.*'}
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENTRY_FLAGS", "EntryFlag", "entry_keys", "factory_model"]


def _toml_value(flag: str, text: str, example: str) -> Any:
    """``text`` read as one TOML value; a ConfigError at ``flag`` showing ``example`` if not."""
    from isokit.report import ConfigError

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(flag, f"is not TOML ({exc}); write e.g. {example}") from None


def _table(flag: str, text: str) -> dict[str, Any]:
    """A TOML inline table (``{hidden_size = 32, num_hidden_layers = 2}``)."""
    from isokit.report import ConfigError

    value = _toml_value(flag, text, "'{hidden_size = 32}'")
    if not isinstance(value, dict):
        raise ConfigError(
            flag, f"must be a TOML inline table, e.g. '{{hidden_size = 32}}', got {text!r}"
        )
    return value


def _shape(flag: str, text: str) -> Any:
    """``3,16,16``, ``3x16x16`` or a TOML array ``[3, 16, 16]`` (checked as input_shape is)."""
    if text.strip().startswith("["):
        return _toml_value(flag, text, "3,16,16")
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    return [int(p) if p.isdigit() else p for p in parts]


def _taps(flag: str, text: str) -> Any:
    """One name or glob pattern, or several separated by commas."""
    names = [p.strip() for p in text.split(",")]
    return names[0] if len(names) == 1 else names


def _text(flag: str, text: str) -> str:
    return text


@dataclass(frozen=True)
class EntryFlag:
    """A flag that sets one entry key of the model's ``[[models]]`` table, read from text."""

    flag: str
    key: str
    read: Any
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


ENTRY_FLAGS = (
    EntryFlag(
        "--kwargs",
        "kwargs",
        _table,
        "TABLE",
        "the factory's keyword arguments, a TOML inline table: '{hidden_size = 32}'",
    ),
    EntryFlag(
        "--input-shape",
        "input_shape",
        _shape,
        "SHAPE",
        "the shape of one floating input, e.g. 3,16,16 (a factory needs it or --inputs)",
    ),
    EntryFlag(
        "--inputs",
        "inputs",
        _text,
        "PATH",
        "an inputs factory package.module:function, e.g. isokit.models.hf:token_ids",
    ),
    EntryFlag(
        "--input-kwargs",
        "input_kwargs",
        _table,
        "TABLE",
        "the inputs factory's keyword arguments, a TOML inline table",
    ),
    EntryFlag(
        "--taps",
        "taps",
        _taps,
        "NAMES",
        "tap module names or glob patterns, comma-separated: 'encoder.layer.*'",
    ),
    EntryFlag(
        "--start",
        "start",
        _text,
        "NAME",
        "the module whose output the Jacobians start from (needed for token ids)",
    ),
)


def entry_keys(flags: dict[str, Any]) -> dict[str, Any]:
    """The entry keys the entry flags set (popped from ``flags``), read from their text."""
    out = {}
    for e in ENTRY_FLAGS:
        text = flags.pop(e.dest, None)
        if text is not None:
            out[e.key] = e.read(e.flag, text)
    return out


def factory_model(factory: str, entry: dict[str, Any], flags: Mapping[str, Any]) -> dict:
    """The ``[[models]]`` table of ``--factory``; a model kind's flag is refused."""
    from isokit.report import ConfigError

    given = [name for name, value in flags.items() if value is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(
            flag, "sets an argument of an isokit model kind; pass the factory's in --kwargs"
        )
    return {"factory": factory, **entry}
