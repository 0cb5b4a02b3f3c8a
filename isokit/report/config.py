"""Report configs: TOML in, a validated :class:`Config` out, or a :class:`ConfigError` naming a key.

A config says which models, schemes and seeds to compare, how to draw inputs, which probes to run
and which figure formats to write. Everything is checked before any work starts, so a typo in the
last model fails in milliseconds rather than after the first model's probes. Errors name the
dotted key (``models[1].depth``) and say how to fix it. Model tables are read through the model
kinds' own specs (:mod:`isokit.models.spec`, via :mod:`isokit.report.modelspec`), and sizes that
cannot fit in memory are refused from arithmetic before any model is built.

Example:
    >>> cfg = load_config(DEFAULT_CONFIG)
    >>> [m.label for m in cfg.models][:1]
    ['mlp-tanh-w64-d16']
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isokit.report.checks import (
    ConfigError,
    array_of,
    boolean,
    check_keys,
    label_of,
    one_of,
    pos_int,
    scheme_option_error,
    shape_of,
    table_of,
    type_name,
)
from isokit.report.modelspec import (
    ModelSpec,
    check_fits,
    check_model,
    machine_memory,
    parse_model,
)
from isokit.report.probe_keys import check_method_options, probe_option
from isokit.report.train_spec import TrainSpec, check_train_models, parse_train

__all__ = [
    "DEFAULT_CONFIG",
    "Config",
    "ConfigError",
    "InputSpec",
    "ModelSpec",
    "SchemeSpec",
    "TrainSpec",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")

DISTRIBUTIONS = ("gaussian", "uniform", "rademacher")
FORMATS = ("png", "svg", "pdf")
PROBES = ("profile", "block", "signal")
#: More threads than any machine torch runs on has CPUs (10⁵ threads would only thrash).
THREADS_MAX = max(1024, os.cpu_count() or 1)
#: The largest seed every torch generator takes.
SEED_MAX = 2**63 - 1


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
    """The scheme table (or bare name) at ``key``, checked by the registered scheme itself.

    Example:
        >>> _parse_scheme("schemes[0]", {"name": "orthogonal", "options": {"gian": 2}})
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: schemes[0].options.gian: is not an option of scheme \
'orthogonal'; did you mean 'gain'? its options are: gain, bias
    """
    from isokit.init import get_scheme

    table = {"name": raw} if isinstance(raw, str) else table_of(key, raw)
    check_keys(key, table, ("name", "label", "options"))
    if "name" not in table:
        raise ConfigError(f"{key}.name", "missing; name a scheme (`isokit schemes` lists them)")
    name = table["name"]
    try:
        scheme = get_scheme(name)
    except ValueError as exc:  # its message names close matches and the known schemes
        where = f"{key}.name" if isinstance(raw, dict) else key
        raise ConfigError(where, f"{exc}; run `isokit schemes` for the list") from None
    options = table_of(f"{key}.options", table.get("options", {}))
    for option, value in options.items():
        # One option at a time, so the error names its dotted key. Values pass through
        # untouched (TOML nan and inf included) to the scheme's own model-free check, so a
        # bad one fails here, before any work.
        try:
            scheme.check_options({option: value})
        except (TypeError, ValueError) as exc:
            raise scheme_option_error(key, (option,), exc) from None
    label = label_of(f"{key}.label", table.get("label", name))
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
        distribution=one_of(
            "inputs.distribution", table.get("distribution", "gaussian"), DISTRIBUTIONS
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
    - ``method``: the probe method of :func:`isokit.probe.profile` (``auto``, ``exact`` or
      ``lanczos``: :class:`isokit.probe.ProbeOptions` checks it); ``method_options``: its other
      options (``n_probes``, ``max_memory``, ...).
    - ``dtype``: the probe precision (``float64`` or ``float32``, checked by the probe);
      ``threads``: torch CPU threads.
    - ``[inputs]``: ``examples``, ``distribution`` (``gaussian`` | ``uniform`` |
      ``rademacher``, unit variance), ``image_size``, and ``shape`` to override the shape every
      model kind implies.
    - ``[probes]``: booleans ``profile`` (default true), ``block`` (false), ``signal`` (true).
    - ``[output]``: ``formats``, a subset of ``png``, ``svg``, ``pdf``.
    - ``[[models]]``: ``kind`` (:func:`isokit.models.model_kinds`) plus that kind's constructor
      arguments, or ``factory = "package.module:function"`` (imported, never evaluated) with
      its keyword arguments in ``kwargs = {...}``; optional ``label``, ``input_shape``,
      ``inputs`` (an inputs factory, called as ``fn(n, generator=g, **input_kwargs)``, that
      returns a tensor, a tuple or a dict of inputs: token ids; ``[inputs]`` then sets only
      ``examples``), ``taps`` (names or glob patterns, ``"encoder.layer.*"``; replaces
      ``method_options.taps`` for this model) and ``start`` (a module name: the probes measure
      ``∂h_l/∂h_start`` at the taps after it, ``docs/probes.md §3.6``; the default label ends
      in ``-from-<start>``, so one model can be listed with and without it). A factory's
      default label is its function's name with the keyword arguments, sorted. Token ids or
      keyword inputs need a ``start`` (after the embeddings).
    - ``schemes``: names, or tables ``{name, label, options}``.
    - ``[train]``: train every model × scheme × seed after probing it
      (:mod:`isokit.report.train_spec`: ``data``, ``data_options`` and the fields of
      :class:`isokit.train.TrainOptions`).
    """

    title: str
    models: tuple[ModelSpec, ...]
    schemes: tuple[SchemeSpec, ...]
    seeds: tuple[int, ...]
    inputs: InputSpec
    probes: dict[str, bool]
    method: str
    dtype: str
    method_options: dict[str, Any] = field(default_factory=dict)
    formats: tuple[str, ...] = ("png", "svg")
    threads: int = 1
    train: TrainSpec | None = None
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
            **({} if self.train is None else {"train": self.train.to_dict()}),
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
    "train",
)


def _unique(key: str, labels: list[str]) -> None:
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if label in seen:
            raise ConfigError(
                f"{key}[{i}].label", f"{label!r} is used twice; give each entry a distinct label"
            )
        seen.add(label)


def _parse_seeds(raw: object) -> tuple[int, ...]:
    seeds = array_of("seeds", raw, "seeds = [0, 1]")
    seeds = [pos_int(f"seeds[{i}]", s, minimum=0, maximum=SEED_MAX) for i, s in enumerate(seeds)]
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", f"has duplicates {seeds}; list each seed once")
    return tuple(seeds)


def _parse_models(
    data: Mapping[str, Any], inputs: InputSpec, *, memory: int | None, build: bool
) -> tuple[ModelSpec, ...]:
    if "models" not in data:
        raise ConfigError("models", "missing; add at least one [[models]] table with a kind")
    models = [
        parse_model(f"models[{i}]", m, image_size=inputs.image_size, shape=inputs.shape)
        for i, m in enumerate(array_of("models", data["models"], "[[models]]"))
    ]
    _unique("models", [m.label for m in models])
    for i, m in enumerate(models):
        check_fits(f"models[{i}]", m, examples=inputs.examples, memory=memory)
    if build:  # not to re-render results: a factory's package need not be installed for that
        for i, m in enumerate(models):
            check_model(f"models[{i}]", m, examples=inputs.examples)
    return tuple(models)


def _parse_schemes(data: Mapping[str, Any]) -> tuple[SchemeSpec, ...]:
    if "schemes" not in data:
        raise ConfigError("schemes", 'missing; e.g. schemes = ["idinit", "kaiming-normal"]')
    raw = array_of("schemes", data["schemes"], '["idinit", "orthogonal"]')
    schemes = [_parse_scheme(f"schemes[{i}]", s) for i, s in enumerate(raw)]
    _unique("schemes", [s.label for s in schemes])
    return tuple(schemes)


def _parse_probes(raw: object) -> dict[str, bool]:
    table = table_of("probes", raw)
    check_keys("probes", table, PROBES)
    probes = {p: boolean(f"probes.{p}", table.get(p, p != "block")) for p in PROBES}
    if not any(probes.values()):
        raise ConfigError(
            "probes", "every probe is off; set at least one of profile, block, signal to true"
        )
    return probes


def _parse_formats(raw: object) -> tuple[str, ...]:
    output = table_of("output", raw)
    check_keys("output", output, ("formats",))
    formats = array_of("output.formats", output.get("formats", ["png", "svg"]), '["png", "svg"]')
    formats = [one_of(f"output.formats[{i}]", f, FORMATS) for i, f in enumerate(formats)]
    return tuple(dict.fromkeys(formats))


def parse_config(
    data: Mapping[str, Any], *, source: str = "<dict>", check_resources: bool = True
) -> Config:
    """Validate a config table (parsed TOML, or ``Config.to_dict()``) into a :class:`Config`.

    With ``check_resources`` (the default) every model and its inputs must fit in this
    machine's memory (a lower-bound estimate, from arithmetic), and a model with a factory,
    ``start``, ``taps`` or ``inputs`` is built once to check them; re-reading a config that ran
    elsewhere, only to re-render its results, may turn that off.

    Example:
        >>> cfg = parse_config({"schemes": ["orthogonal"], "models": [{"kind": "resnet"}]})
        >>> cfg.models[0].label, cfg.models[0].input_shape
        ('resnet20-w16-none', (3, 16, 16))
    """
    data = table_of("config", dict(data))
    if "sweep" in data:
        raise ConfigError(
            "sweep",
            "a [sweep] table makes a sweep config; run it with `isokit sweep CONFIG --out DIR`",
        )
    check_keys("", data, _TOP)
    title = data.get("title", "isokit report")
    if not isinstance(title, str):
        raise ConfigError("title", f"must be a string, got {type_name(title)}")
    seeds = _parse_seeds(data.get("seeds", [0]))
    threads = pos_int("threads", data.get("threads", 1), maximum=THREADS_MAX)
    inputs = _parse_inputs(data.get("inputs", {}))
    models = _parse_models(
        data, inputs, memory=machine_memory() if check_resources else None, build=check_resources
    )
    schemes = _parse_schemes(data)
    probes = _parse_probes(data.get("probes", {}))
    method_options = table_of("method_options", data.get("method_options", {}))
    if "start" in method_options:
        raise ConfigError(
            "method_options.start",
            'is set per model; write start = "MODULE" in the [[models]] tables it applies to',
        )
    check_method_options(method_options)
    train = parse_train(data["train"]) if "train" in data else None
    if train is not None and check_resources:
        check_train_models(train, models)
    return Config(
        title=title,
        models=models,
        schemes=schemes,
        seeds=seeds,
        inputs=inputs,
        probes=probes,
        method=probe_option("method", data),
        dtype=probe_option("dtype", data),
        method_options=dict(method_options),
        formats=_parse_formats(data.get("output", {})),
        threads=threads,
        train=train,
        source=source,
    )


def _read_text(path: Path) -> str:
    """The file's text; a UTF-8 byte-order mark (Windows editors write one) is dropped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            str(path), "config file not found; check the path, or omit it to use the default config"
        ) from None
    except OSError as exc:  # a directory, no permission, a path too long, ...
        raise ConfigError(
            str(path),
            f"cannot read the config file ({exc.strerror or type(exc).__name__}); "
            "pass a readable TOML file",
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path),
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the config as UTF-8",
        ) from None


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config; ``None`` reads the packaged default.

    Example:
        >>> load_config().models[0].input_shape
        (64,)
    """
    path = DEFAULT_CONFIG if path is None else Path(path)
    text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line L, column C)"; say what to do about it.
        raise ConfigError(str(path), f"TOML syntax error: {exc}; fix the TOML there") from None
    if not data:  # an empty file, or only comments
        raise ConfigError(
            str(path),
            "is empty; a config needs schemes and at least one [[models]] table (copy "
            "isokit/report/default.toml to start from)",
        )
    return parse_config(data, source=str(path))
