"""Report configs: TOML in, a validated :class:`Config` out, or a :class:`ConfigError` naming a key.

A config says which models, schemes and seeds to compare, how to draw inputs, which probes to run
and which figure formats to write. Everything is checked before any work starts, so a typo in the
last model fails in milliseconds rather than after the first model's probes. Errors name the
dotted key (``models[1].depth``) and say how to fix it.

Example:
    >>> cfg = load_config(DEFAULT_CONFIG)
    >>> [m.label for m in cfg.models][:1]
    ['mlp-tanh-w64-d16']
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isokit.report.checks import (
    ConfigError,
    boolean,
    check_keys,
    choice,
    pos_int,
    shape_of,
    table_of,
    type_name,
)
from isokit.report.modelspec import KINDS, ModelSpec, parse_model

__all__ = [
    "DEFAULT_CONFIG",
    "KINDS",
    "Config",
    "ConfigError",
    "InputSpec",
    "ModelSpec",
    "SchemeSpec",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")

DISTRIBUTIONS = ("gaussian", "uniform", "rademacher")
METHODS = ("auto", "exact", "lanczos")
DTYPES = ("float64", "float32")
FORMATS = ("png", "svg", "pdf")
PROBES = ("profile", "block", "signal")


# --------------------------------------------------------------------------------------------
# schemes, inputs, the whole config


@dataclass(frozen=True, kw_only=True)
class SchemeSpec:
    """A scheme of the comparison: its registered ``name``, ``options`` and display ``label``."""

    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "name": self.name, "options": dict(self.options)}


def _parse_scheme(key: str, raw: object) -> SchemeSpec:
    from isokit.init import schemes

    table = {"name": raw} if isinstance(raw, str) else table_of(key, raw)
    check_keys(key, table, ("name", "label", "options"))
    if "name" not in table:
        raise ConfigError(f"{key}.name", "missing; name a scheme (`isokit schemes` lists them)")
    known = {s.name: s for s in schemes()}
    name = table["name"]
    if not isinstance(name, str) or name not in known:
        close = difflib.get_close_matches(str(name), list(known), n=2)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ConfigError(
            f"{key}.name" if isinstance(raw, dict) else key,
            f"unknown scheme {name!r}; {hint}run `isokit schemes` for the list",
        )
    options = table_of(f"{key}.options", table.get("options", {}))
    check_keys(f"{key}.options", options, known[name].options or ("(none)",))
    label = table.get("label", name)
    if not isinstance(label, str) or not label.strip():
        raise ConfigError(f"{key}.label", f"must be a non-empty string, got {label!r}")
    return SchemeSpec(label=label, name=name, options=dict(options))


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """How inputs are drawn: ``examples`` i.i.d. draws from ``distribution`` (unit variance)."""

    examples: int = 4
    distribution: str = "gaussian"
    image_size: int = 16
    shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "examples": self.examples,
            "distribution": self.distribution,
            "image_size": self.image_size,
        }
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out


def _parse_inputs(raw: object) -> InputSpec:
    table = table_of("inputs", raw)
    check_keys("inputs", table, ("examples", "distribution", "image_size", "shape"))
    return InputSpec(
        examples=pos_int("inputs.examples", table.get("examples", 4)),
        distribution=choice(DISTRIBUTIONS)(
            "inputs.distribution", table.get("distribution", "gaussian")
        ),
        image_size=pos_int("inputs.image_size", table.get("image_size", 16)),
        shape=shape_of("inputs.shape", table["shape"]) if "shape" in table else None,
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    """A validated report config. Build it with :func:`load_config` or :func:`parse_config`.

    TOML keys (all but ``models`` and ``schemes`` optional):

    - ``title``: the report's heading.
    - ``seeds``: list of ints; each model × scheme runs once per seed (model construction,
      scheme and input draws are all seeded by it).
    - ``method``: ``auto`` | ``exact`` | ``lanczos`` for :func:`isokit.probe.profile`;
      ``method_options``: its other keyword arguments (``n_probes``, ``max_memory``, ...).
    - ``dtype``: ``float64`` | ``float32`` probe precision; ``threads``: torch CPU threads.
    - ``[inputs]``: ``examples``, ``distribution`` (``gaussian`` | ``uniform`` |
      ``rademacher``, unit variance), ``image_size``, and ``shape`` to override the shape every
      model kind implies.
    - ``[probes]``: booleans ``profile`` (default true), ``block`` (false), ``signal`` (true).
    - ``[output]``: ``formats``, a subset of ``png``, ``svg``, ``pdf``.
    - ``[[models]]``: ``kind`` plus the constructor arguments (:mod:`.modelspec`), optional
      ``label`` and ``input_shape``.
    - ``schemes``: names, or tables ``{name, label, options}``.
    """

    title: str
    models: tuple[ModelSpec, ...]
    schemes: tuple[SchemeSpec, ...]
    seeds: tuple[int, ...]
    inputs: InputSpec
    probes: dict[str, bool]
    method: str = "auto"
    dtype: str = "float64"
    method_options: dict[str, Any] = field(default_factory=dict)
    formats: tuple[str, ...] = ("png", "svg")
    threads: int = 1
    source: str = "<dict>"

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (defaults filled in); :func:`parse_config` reads it back."""
        return {
            "title": self.title,
            "seeds": list(self.seeds),
            "method": self.method,
            "dtype": self.dtype,
            "threads": self.threads,
            "method_options": dict(self.method_options),
            "inputs": self.inputs.to_dict(),
            "probes": dict(self.probes),
            "output": {"formats": list(self.formats)},
            "models": [m.to_dict() for m in self.models],
            "schemes": [s.to_dict() for s in self.schemes],
        }


_TOP = (
    "title",
    "seeds",
    "models",
    "schemes",
    "inputs",
    "probes",
    "method",
    "dtype",
    "threads",
    "method_options",
    "output",
)


def _nonempty_list(key: str, value: object, example: str) -> list:
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty array, e.g. {example}")
    return value


def _unique(key: str, labels: list[str]) -> None:
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if label in seen:
            raise ConfigError(
                f"{key}[{i}].label", f"{label!r} is used twice; give each entry a distinct label"
            )
        seen.add(label)


def _check_method_options(options: dict[str, Any]) -> None:
    """Check option names against ``isokit.probe.profile`` once it exists."""
    try:
        module = importlib.import_module("isokit.probe.profile")
    except ImportError:  # the probe package is not there yet: nothing to check against
        return
    params = inspect.signature(module.profile).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    # The runner sets these itself (from method, dtype, seeds and [probes]).
    reserved = {
        "model",
        "inputs",
        "method",
        "dtype",
        "progress",
        "meta",
        "seed",
        "generator",
        "with_signal",
        "with_blocks",
    }
    allowed = tuple(n for n in params if n not in reserved)
    check_keys("method_options", options, allowed or ("(none)",))


def parse_config(data: Mapping[str, Any], *, source: str = "<dict>") -> Config:
    """Validate a config table (parsed TOML, or ``Config.to_dict()``) into a :class:`Config`."""
    data = table_of("config", dict(data))
    check_keys("", data, _TOP)
    title = data.get("title", "isokit report")
    if not isinstance(title, str):
        raise ConfigError("title", f"must be a string, got {type_name(title)}")
    seeds = _nonempty_list("seeds", data.get("seeds", [0]), "seeds = [0, 1]")
    seeds = [pos_int(f"seeds[{i}]", s, minimum=0) for i, s in enumerate(seeds)]
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", f"has duplicates {seeds}; list each seed once")
    inputs = _parse_inputs(data.get("inputs", {}))
    if "models" not in data:
        raise ConfigError("models", "missing; add at least one [[models]] table with a kind")
    models = [
        parse_model(f"models[{i}]", m, image_size=inputs.image_size, shape=inputs.shape)
        for i, m in enumerate(_nonempty_list("models", data["models"], "[[models]]"))
    ]
    _unique("models", [m.label for m in models])
    if "schemes" not in data:
        raise ConfigError("schemes", 'missing; e.g. schemes = ["idinit", "kaiming-normal"]')
    schemes = [
        _parse_scheme(f"schemes[{i}]", s)
        for i, s in enumerate(
            _nonempty_list("schemes", data["schemes"], '["idinit", "orthogonal"]')
        )
    ]
    _unique("schemes", [s.label for s in schemes])
    probes_raw = table_of("probes", data.get("probes", {}))
    check_keys("probes", probes_raw, PROBES)
    probes = {p: boolean(f"probes.{p}", probes_raw.get(p, p != "block")) for p in PROBES}
    if not any(probes.values()):
        raise ConfigError(
            "probes", "every probe is off; set at least one of profile, block, signal to true"
        )
    method_options = table_of("method_options", data.get("method_options", {}))
    _check_method_options(method_options)
    output = table_of("output", data.get("output", {}))
    check_keys("output", output, ("formats",))
    formats = _nonempty_list(
        "output.formats", output.get("formats", ["png", "svg"]), '["png", "svg"]'
    )
    formats = [choice(FORMATS)(f"output.formats[{i}]", f) for i, f in enumerate(formats)]
    return Config(
        title=title,
        models=tuple(models),
        schemes=tuple(schemes),
        seeds=tuple(seeds),
        inputs=inputs,
        probes=probes,
        method=choice(METHODS)("method", data.get("method", "auto")),
        dtype=choice(DTYPES)("dtype", data.get("dtype", "float64")),
        method_options=dict(method_options),
        formats=tuple(dict.fromkeys(formats)),
        threads=pos_int("threads", data.get("threads", 1)),
        source=source,
    )


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config; ``None`` reads the packaged default."""
    path = DEFAULT_CONFIG if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            str(path), "config file not found; check the path, or omit it to use the default config"
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(
            str(path),
            f"cannot read the config file ({exc.__class__.__name__}); "
            "pass a readable UTF-8 TOML file",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line L, column C)"; say what to do about it.
        raise ConfigError(str(path), f"TOML syntax error: {exc}; fix the TOML there") from None
    return parse_config(data, source=str(path))
