"""Model entries of a config, read through the model kinds' own specs, or a factory's.

A ``[[models]]`` table names a ``kind`` (any of :func:`isokit.models.model_kinds`) and that
kind's constructor arguments, or a ``factory = "package.module:function"`` (a model from
outside isokit, :class:`isokit.models.factory.FactoryKind`) with its keyword arguments in
``kwargs = {...}``. Either takes the optional entry keys ``label``, ``input_shape``, ``inputs``
(an inputs factory ``"package.module:function"`` drawing token ids or keyword inputs, with
``input_kwargs``), ``start`` (the module whose output the Jacobians start from,
``docs/probes.md §3.6``) and ``taps`` (module names or glob patterns, ``"encoder.layer.*"``).
The kind (or the factory) types the arguments, fills in defaults, checks the rules that tie
them together and gives the default label and input shape; this module only maps its
:class:`~isokit.models.ModelArgError` to a :class:`ConfigError` at the dotted key
(``models[1].depth``, ``models[0].kwargs.hidden_size``). What a kind's model costs is counted
from its arguments and compared with the machine's memory, so an absurd size fails at once,
before anything is built; :func:`check_model` then builds the model once (on a forked RNG)
where there is something to check on it: a factory's result, ``start``, ``taps``, ``inputs``.

Example:
    >>> spec = parse_model("models[0]", {"kind": "mlp", "in_features": 8, "width": 8,
    ...                    "depth": 2}, image_size=16)
    >>> spec.label, spec.input_shape, spec.args["depth"]
    ('mlp-relu-w8-d2', (8,), 2)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from isokit.models import ModelArgError, ModelKind, get_model_kind, model_kinds
from isokit.models.factory import FactoryKind, InputsFactory
from isokit.report.checks import ConfigError, label_of, shape_of, table_of

if TYPE_CHECKING:
    from torch import nn

    from isokit.probe.checks import TapsOption
    from isokit.theory.law import Chain

__all__ = ["ModelSpec", "check_fits", "check_model", "machine_memory", "parse_model"]

# Keys of a [[models]] table that are not constructor arguments.
_ENTRY_KEYS = ("label", "input_shape", "inputs", "input_kwargs", "start", "taps")
_FACTORY_KEYS = ("factory", "kwargs", *_ENTRY_KEYS)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model of the comparison: its ``kind`` (or ``factory``), ``args`` and inputs.

    ``args`` holds the arguments the config gave (checked and normalized; a factory's
    ``kwargs``); the kind supplies every other one, so the resolved config records what the
    user wrote. ``factory`` is the import path of a model from outside isokit (``kind`` is then
    ``"factory"``). ``input_shape`` is the shape of one floating input, ``None`` where an
    ``inputs`` factory draws them (with ``input_kwargs``). ``start`` names the module whose
    output the probes differentiate from (``None``: the input); the default label then ends in
    ``-from-<start>``, so the same model with and without it are two models. ``taps``, where
    given, replaces ``method_options.taps`` for this model.

    Example:
        >>> spec = ModelSpec(label="m", kind="mlp", args={"in_features": 4, "width": 4,
        ...                  "depth": 3}, input_shape=(4,))
        >>> spec.resolved_args()["bias"], spec.chain().taps
        (True, ('acts.0', 'acts.1', 'acts.2'))
    """

    label: str
    kind: str
    args: dict[str, Any]
    input_shape: tuple[int, ...] | None
    start: str | None = None
    factory: str | None = None
    inputs: str | None = None
    input_kwargs: dict[str, Any] = field(default_factory=dict)
    taps: TapsOption | None = None

    @property
    def model_kind(self) -> ModelKind | FactoryKind:
        """The registered :class:`~isokit.models.ModelKind` called ``kind``, or the factory's."""
        if self.factory is not None:
            return FactoryKind.from_path(self.factory)
        return get_model_kind(self.kind)

    def inputs_factory(self) -> InputsFactory | None:
        """The imported ``inputs`` factory, or ``None`` (inputs of ``input_shape`` are drawn)."""
        if self.inputs is None:
            return None
        return InputsFactory.from_path(self.inputs, self.input_kwargs)

    def resolved_args(self) -> dict[str, Any]:
        """Every constructor argument, defaults included."""
        return self.model_kind.resolve(self.args)

    def build(self) -> nn.Module:
        """A fresh model; seed ``torch`` first (constructors draw from the global RNG)."""
        return self.model_kind.build(**self.args)

    def chain(self) -> Chain | None:
        """The model as the theory sees it (:class:`isokit.theory.Chain`), or ``None``.

        ``None`` too from a ``start`` (the theory's depths count from the input) and for a
        factory (no theory describes a model from outside isokit).
        """
        return None if self.start is not None else self.model_kind.chain(self.args)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.factory is not None:
            out["factory"] = self.factory
            out["kwargs"] = dict(self.args)
        else:
            out["kind"] = self.kind
            out.update(self.model_kind.to_config(self.args))
        if self.input_shape is not None:
            out["input_shape"] = list(self.input_shape)
        if self.inputs is not None:
            out["inputs"] = self.inputs
            if self.input_kwargs:
                out["input_kwargs"] = dict(self.input_kwargs)
        if self.start is not None:
            out["start"] = self.start
        if self.taps is not None:
            out["taps"] = self.taps if isinstance(self.taps, str) else list(self.taps)
        return out


def _config_error(key: str, exc: ModelArgError, shape_key: str) -> ConfigError:
    """A kind's :class:`ModelArgError` at the dotted config key of the argument."""
    if exc.arg == "input_shape":
        return ConfigError(shape_key, exc.message)
    return ConfigError(
        f"{key}.{exc.arg}", exc.message, related=tuple(f"{key}.{r}" for r in exc.related)
    )


def _extras(key: str, table: dict[str, Any]) -> dict[str, Any]:
    """The entry keys every model takes: ``start``, ``taps``, ``inputs``, ``input_kwargs``."""
    from isokit.probe.checks import ProbeOptionError, check_taps

    out: dict[str, Any] = {}
    if "start" in table:
        out["start"] = _start_of(f"{key}.start", table["start"])
    if "taps" in table:
        try:
            out["taps"] = check_taps("taps", table["taps"])
        except ProbeOptionError as exc:
            raise ConfigError(f"{key}.taps", exc.message) from None
    if "input_kwargs" in table and "inputs" not in table:
        raise ConfigError(f"{key}.input_kwargs", "is for an inputs factory; set inputs too")
    if "inputs" in table:
        if "input_shape" in table:
            raise ConfigError(
                f"{key}.input_shape", "the inputs factory draws the inputs; drop input_shape"
            )
        try:
            InputsFactory.from_path(table["inputs"], table.get("input_kwargs"))
        except ModelArgError as exc:
            raise ConfigError(f"{key}.{exc.arg}", exc.message) from None
        out["inputs"] = table["inputs"]
        out["input_kwargs"] = dict(table.get("input_kwargs", {}))
    return out


def _parse_factory(key: str, table: dict[str, Any], shape: tuple[int, ...] | None) -> ModelSpec:
    """The ``[[models]]`` table of a factory (``factory``, ``kwargs`` and the entry keys)."""
    if "kind" in table:
        raise ConfigError(f"{key}.factory", "a model has a kind or a factory, not both; drop one")
    for name in table:
        if name not in _FACTORY_KEYS:
            raise ConfigError(
                f"{key}.{name}",
                f"unknown key; a factory's arguments go in kwargs = {{{name} = ...}} (allowed "
                f"keys: {', '.join(_FACTORY_KEYS)})",
            )
    extras = _extras(key, table)
    try:
        kind = FactoryKind.from_path(table["factory"])
        kwargs = kind.resolve(table_of(f"{key}.kwargs", table.get("kwargs", {})))
        if "input_shape" in table:
            shape = shape_of(f"{key}.input_shape", table["input_shape"])
        elif "inputs" in extras:
            shape = None
        elif shape is None:
            kind.input_shape(kwargs, 0)  # raises: say input_shape or inputs
    except ModelArgError as exc:
        raise _config_error(key, exc, f"{key}.input_shape") from None
    start = extras.get("start")
    label = kind.label(kwargs) + ("" if start is None else f"-from-{start}")
    if "label" in table:
        label = label_of(f"{key}.label", table["label"])
    return ModelSpec(
        label=label, kind="factory", args=kwargs, input_shape=shape, factory=kind.name, **extras
    )


def parse_model(
    key: str, raw: object, *, image_size: int, shape: tuple[int, ...] | None = None
) -> ModelSpec:
    """Validate the ``[[models]]`` table at ``key``; ``shape`` is ``inputs.shape`` if given."""
    table = table_of(key, raw)
    if "factory" in table:
        return _parse_factory(key, table, shape)
    if "kind" not in table:
        raise ConfigError(
            f"{key}.kind",
            f"missing; set kind to one of {', '.join(model_kinds())}, or factory to the import "
            'path of a function that builds the model ("package.module:function")',
        )
    try:
        kind = get_model_kind(table["kind"])
    except ModelArgError as exc:
        raise ConfigError(f"{key}.kind", exc.message) from None
    given = {name: value for name, value in table.items() if name not in ("kind", *_ENTRY_KEYS)}
    shape_key = f"{key}.input_shape" if "input_shape" in table else "inputs.shape"
    extras = _extras(key, table)
    start = extras.get("start")
    try:
        resolved = kind.resolve(given)
        if "label" in table:
            label = label_of(f"{key}.label", table["label"])
        else:
            label = kind.label(given) + ("" if start is None else f"-from-{start}")
        if "input_shape" in table:
            shape = shape_of(shape_key, table["input_shape"])
        if shape is None:
            shape = kind.input_shape(resolved, image_size)
        else:
            kind.check_input_shape(resolved, shape)
    except ModelArgError as exc:
        raise _config_error(key, exc, shape_key) from None
    args = {a.name: resolved[a.name] for a in kind.args if a.name in given}
    if "inputs" in extras:
        shape = None  # the inputs factory draws them
    return ModelSpec(label=label, kind=kind.name, args=args, input_shape=shape, **extras)


def _start_of(key: str, value: object) -> str:
    """A ``start`` module name, typed as the probe's option is (a literal, non-empty name)."""
    from isokit.probe.checks import ProbeOptionError, check_start

    try:
        name = check_start("start", value)
    except ProbeOptionError as exc:
        raise ConfigError(key, exc.message) from None
    if name is None:  # pragma: no cover - TOML has no null
        raise ConfigError(key, "must be a module name")
    return name


def check_model(key: str, spec: ModelSpec, *, examples: int) -> None:
    """Build the model once (on a forked RNG) and check what only the built model can say.

    A factory must return an ``nn.Module``; ``start`` and ``taps`` must name (or match) its
    modules; an ``inputs`` factory must return ``examples`` examples. Nothing is built for a
    kind's model without any of these. Call it after :func:`check_fits`, which refuses a model
    too large to build. Errors are at ``key`` (``models[0]``) plus the entry key.

    Example:
        >>> spec = parse_model("models[0]", {"kind": "mlp", "in_features": 4, "width": 4,
        ...                    "depth": 2, "start": "act.0"}, image_size=16)
        >>> spec.label
        'mlp-relu-w4-d2-from-act.0'
        >>> check_model("models[0]", spec, examples=1)
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: models[0].start: the model MLP has no module named \
'act.0'; close matches: acts.0, acts.1, acts, fcs.0 (start names a module of \
model.named_modules())
    """
    import torch

    from isokit.probe.checks import ProbeOptionError, check_inputs
    from isokit.probe.start import check_start_module
    from isokit.probe.taps import TapError, resolve_taps

    if spec.factory is None and spec.start is None and spec.taps is None and spec.inputs is None:
        return
    with torch.random.fork_rng(devices=[]):
        try:
            model = spec.build()
            draw = spec.inputs_factory()
            drawn = None if draw is None else draw(examples, torch.Generator().manual_seed(0))
        except ModelArgError as exc:
            raise ConfigError(f"{key}.{exc.arg}", exc.message) from None
    if drawn is not None:
        try:
            check_inputs("inputs", drawn, start=spec.start)
        except (TypeError, ValueError) as exc:  # token ids need a start: say it at start
            where = "start" if spec.start is None and isinstance(exc, TypeError) else "inputs"
            raise ConfigError(f"{key}.{where}", f"{exc} (drawn by {spec.inputs})") from None
    if spec.start is not None:
        try:
            check_start_module(model, spec.start)
        except ProbeOptionError as exc:
            raise ConfigError(f"{key}.start", exc.message) from None
    if spec.taps is not None:
        try:
            resolve_taps(model, spec.taps)
        except TapError as exc:
            raise ConfigError(f"{key}.taps", str(exc)) from None


def machine_memory() -> int | None:
    """The machine's physical memory in bytes, or ``None`` where the OS does not say.

    Example:
        >>> machine_memory() is None or machine_memory() > 0
        True
    """
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_fits(key: str, spec: ModelSpec, *, examples: int, memory: int | None) -> None:
    """Refuse a model (or its inputs) that cannot fit in ``memory`` bytes, from arithmetic alone.

    The estimate is a lower bound (the model in float32 and its float64 probe copy, one forward
    pass of one example, and the drawn inputs), so a refused config could never have run;
    nothing is built to find out.

    Example:
        >>> spec = parse_model("models[0]", {"kind": "mlp", "in_features": 8,
        ...                    "width": 10**9, "depth": 8}, image_size=16)
        >>> check_fits("models[0]", spec, examples=4, memory=2**37)
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: models[0]: mlp-relu-w1000000000-d8 on inputs of shape \
[8] needs at least 7.82e+10 GiB (7e+18 parameters) but this machine has 128 GiB; make the model \
or its inputs smaller
    """
    if spec.input_shape is None or memory is None:
        return  # inputs drawn by a factory are not counted
    size = spec.model_kind.size(spec.args, spec.input_shape)
    if size is None:
        return
    per_input = 12 * math.prod(spec.input_shape)  # a float32 draw and its float64 copy
    one = size.bytes() + per_input
    if one + (examples - 1) * per_input <= memory:
        return
    if one <= memory:  # the model fits; fewer examples would
        raise ConfigError(
            "inputs.examples",
            f"{examples} inputs of shape {list(spec.input_shape)} for {spec.label} need at least "
            f"{_gib(one + (examples - 1) * per_input)} but this machine has {_gib(memory)}; "
            f"draw at most {(memory - size.bytes()) // per_input} examples",
        )
    raise ConfigError(
        key,
        f"{spec.label} on inputs of shape {list(spec.input_shape)} needs at least {_gib(one)} "
        f"({size.parameters:.3g} parameters) but this machine has {_gib(memory)}; make the "
        "model or its inputs smaller",
    )
