"""Model entries of a config, read through the model kinds' own specs.

A ``[[models]]`` table names a ``kind`` (any of :func:`isokit.models.model_kinds`) and that
kind's constructor arguments, plus optional ``label``, ``input_shape`` and ``start`` (the module
whose output the Jacobians start from, ``docs/probes.md §3.6``; checked against the built model's
module names by :func:`check_start`). The kind's :class:`~isokit.models.ModelKind` types them,
fills in defaults, checks the rules that tie them together and gives the default label and
input shape; this module only maps its :class:`~isokit.models.ModelArgError` to a
:class:`ConfigError` at the dotted key (``models[1].depth``). What a model costs is then
counted from its arguments and compared with the machine's memory, so an absurd size fails at
once, before anything is built.

Example:
    >>> spec = parse_model("models[0]", {"kind": "mlp", "in_features": 8, "width": 8,
    ...                    "depth": 2}, image_size=16)
    >>> spec.label, spec.input_shape, spec.args["depth"]
    ('mlp-relu-w8-d2', (8,), 2)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from isokit.models import ModelArgError, ModelKind, get_model_kind, model_kinds
from isokit.report.checks import ConfigError, label_of, shape_of, table_of

if TYPE_CHECKING:
    from torch import nn

    from isokit.theory.law import Chain

__all__ = ["ModelSpec", "check_fits", "check_start", "machine_memory", "parse_model"]

# Keys of a [[models]] table that are not constructor arguments.
_ENTRY_KEYS = ("kind", "label", "input_shape", "start")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model of the comparison: its ``kind``, constructor ``args`` and input shape.

    ``args`` holds the arguments the config gave (checked and normalized); the kind supplies
    every other one, so the resolved config records what the user wrote. ``start`` names the
    module whose output the probes differentiate from (``None``: the input); the default label
    then ends in ``-from-<start>``, so the same model with and without it are two models.

    Example:
        >>> spec = ModelSpec(label="m", kind="mlp", args={"in_features": 4, "width": 4,
        ...                  "depth": 3}, input_shape=(4,))
        >>> spec.resolved_args()["bias"], spec.chain().taps
        (True, ('acts.0', 'acts.1', 'acts.2'))
    """

    label: str
    kind: str
    args: dict[str, Any]
    input_shape: tuple[int, ...]
    start: str | None = None

    @property
    def model_kind(self) -> ModelKind:
        """The registered :class:`~isokit.models.ModelKind` called ``kind``."""
        return get_model_kind(self.kind)

    def resolved_args(self) -> dict[str, Any]:
        """Every constructor argument, defaults included."""
        return self.model_kind.resolve(self.args)

    def build(self) -> nn.Module:
        """A fresh model; seed ``torch`` first (constructors draw from the global RNG)."""
        return self.model_kind.build(**self.args)

    def chain(self) -> Chain | None:
        """The model as the theory sees it (:class:`isokit.theory.Chain`), or ``None``.

        ``None`` too from a ``start``: the theory's depths count from the input.
        """
        return None if self.start is not None else self.model_kind.chain(self.args)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "label": self.label,
            "kind": self.kind,
            **self.model_kind.to_config(self.args),
            "input_shape": list(self.input_shape),
        }
        if self.start is not None:
            out["start"] = self.start
        return out


def _config_error(key: str, exc: ModelArgError, shape_key: str) -> ConfigError:
    """A kind's :class:`ModelArgError` at the dotted config key of the argument."""
    if exc.arg == "input_shape":
        return ConfigError(shape_key, exc.message)
    return ConfigError(
        f"{key}.{exc.arg}", exc.message, related=tuple(f"{key}.{r}" for r in exc.related)
    )


def parse_model(
    key: str, raw: object, *, image_size: int, shape: tuple[int, ...] | None = None
) -> ModelSpec:
    """Validate the ``[[models]]`` table at ``key``; ``shape`` is ``inputs.shape`` if given."""
    table = table_of(key, raw)
    if "kind" not in table:
        raise ConfigError(f"{key}.kind", f"missing; set kind to one of {', '.join(model_kinds())}")
    try:
        kind = get_model_kind(table["kind"])
    except ModelArgError as exc:
        raise ConfigError(f"{key}.kind", exc.message) from None
    given = {name: value for name, value in table.items() if name not in _ENTRY_KEYS}
    shape_key = f"{key}.input_shape" if "input_shape" in table else "inputs.shape"
    start = _start_of(f"{key}.start", table["start"]) if "start" in table else None
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
    return ModelSpec(label=label, kind=kind.name, args=args, input_shape=tuple(shape), start=start)


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


def check_start(key: str, spec: ModelSpec) -> None:
    """Refuse a ``start`` that names no module of the model (built once, on a forked RNG).

    Call it after :func:`check_fits`, which refuses a model too large to build.

    Example:
        >>> spec = parse_model("models[0]", {"kind": "mlp", "in_features": 4, "width": 4,
        ...                    "depth": 2, "start": "act.0"}, image_size=16)
        >>> spec.label
        'mlp-relu-w4-d2-from-act.0'
        >>> check_start("models[0].start", spec)
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: models[0].start: the model MLP has no module named \
'act.0'; close matches: acts.0, acts.1, acts, fcs.0 (start names a module of \
model.named_modules())
    """
    import torch

    from isokit.probe.checks import ProbeOptionError
    from isokit.probe.start import check_start_module

    if spec.start is None:
        return
    with torch.random.fork_rng(devices=[]):
        model = spec.build()
    try:
        check_start_module(model, spec.start)
    except ProbeOptionError as exc:
        raise ConfigError(key, exc.message) from None


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
    size = spec.model_kind.size(spec.args, spec.input_shape)
    if memory is None or size is None:
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
