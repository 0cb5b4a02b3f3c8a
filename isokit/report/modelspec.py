"""Model entries of a config: kinds, constructor arguments, labels and input shapes.

``[[models]]`` tables name a ``kind`` (``mlp``, ``convnet``, ``resnet``, ``transformer``) and the
constructor arguments of the matching :mod:`isokit.models` class, each type-checked here; rules
that tie arguments together (ResNet depth 6n+2, heads dividing d_model) are checked by name, and
the model is then built on the meta device to catch anything else without allocating memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from isokit.report.checks import (
    ConfigError,
    boolean,
    check_keys,
    choice,
    pos_int,
    shape_of,
    table_of,
)

__all__ = ["KINDS", "ModelSpec", "parse_model"]


def _gate(key: str, value: object) -> str | None:
    # TOML has no null: "none" spells the constructor's gate=None.
    return None if choice(("none", "scalar"))(key, value) == "none" else "scalar"


def _activation(key: str, value: object) -> str:
    from isokit.models import ACTIVATIONS

    return choice(ACTIVATIONS)(key, value)


# kind -> constructor argument -> (checker, required?)
_ARGS: dict[str, dict[str, tuple[Callable[[str, object], Any], bool]]] = {
    "mlp": {
        "in_features": (pos_int, True),
        "width": (pos_int, True),
        "depth": (pos_int, True),
        "out_features": (pos_int, False),
        "activation": (_activation, False),
        "bias": (boolean, False),
    },
    "convnet": {
        "in_channels": (pos_int, True),
        "channels": (pos_int, True),
        "depth": (pos_int, True),
        "activation": (_activation, False),
        "kernel_size": (pos_int, False),
        "num_classes": (pos_int, False),
        "bias": (boolean, False),
    },
    "resnet": {
        "depth": (pos_int, False),
        "width": (pos_int, False),
        "norm": (choice(("none", "batch")), False),
        "gate": (_gate, False),
        "shortcut": (choice(("pad", "conv")), False),
        "num_classes": (pos_int, False),
        "in_channels": (pos_int, False),
    },
    "transformer": {
        "depth": (pos_int, True),
        "d_model": (pos_int, True),
        "heads": (pos_int, True),
        "d_ff": (pos_int, True),
        "seq_len": (pos_int, True),
        "norm": (choice(("pre", "post", "none")), False),
        "gate": (_gate, False),
        "activation": (_activation, False),
    },
}
KINDS = tuple(_ARGS)


def _model_class(kind: str) -> type[nn.Module]:
    from isokit import models

    return {
        "mlp": models.MLP,
        "convnet": models.ConvNet,
        "resnet": models.ResNet,
        "transformer": models.Transformer,
    }[kind]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model of the comparison: its ``kind``, constructor ``args`` and input shape."""

    label: str
    kind: str
    args: dict[str, Any]
    input_shape: tuple[int, ...]

    def build(self) -> nn.Module:
        """A fresh model; seed ``torch`` first (constructors draw from the global RNG)."""
        return _model_class(self.kind)(**self.args)

    def to_dict(self) -> dict[str, Any]:
        args = {k: ("none" if k == "gate" and v is None else v) for k, v in self.args.items()}
        return {
            "label": self.label,
            "kind": self.kind,
            **args,
            "input_shape": list(self.input_shape),
        }


def _default_label(kind: str, a: dict[str, Any]) -> str:
    if kind == "mlp":
        return f"mlp-{a.get('activation', 'relu')}-w{a['width']}-d{a['depth']}"
    if kind == "convnet":
        return f"convnet-{a.get('activation', 'relu')}-c{a['channels']}-d{a['depth']}"
    if kind == "resnet":
        return f"resnet{a.get('depth', 20)}-w{a.get('width', 16)}-{a.get('norm', 'none')}"
    return f"transformer-{a.get('norm', 'pre')}-d{a['depth']}"


def _natural_shape(kind: str, a: dict[str, Any], image_size: int) -> tuple[int, ...]:
    if kind == "mlp":
        return (a["in_features"],)
    if kind == "transformer":
        return (a["seq_len"], a["d_model"])
    return (a.get("in_channels", 3), image_size, image_size)


def _check_shape(key: str, kind: str, a: dict[str, Any], shape: tuple[int, ...]) -> None:
    if kind == "mlp" and math.prod(shape) != a["in_features"]:
        raise ConfigError(
            key,
            f"{list(shape)} has {math.prod(shape)} entries but the MLP has "
            f"in_features = {a['in_features']}; make them agree",
        )
    if kind in ("convnet", "resnet"):
        channels = a.get("in_channels", 3)
        if len(shape) != 3 or shape[0] != channels:
            raise ConfigError(key, f"a {kind} needs [{channels}, height, width], got {list(shape)}")
    if kind == "transformer" and shape != (a["seq_len"], a["d_model"]):
        raise ConfigError(
            key,
            f"a transformer needs [seq_len, d_model] = "
            f"[{a['seq_len']}, {a['d_model']}], got {list(shape)}",
        )


def parse_model(
    key: str, raw: object, *, image_size: int, shape: tuple[int, ...] | None = None
) -> ModelSpec:
    """Validate the ``[[models]]`` table at ``key``; ``shape`` is ``inputs.shape`` if given."""
    table = table_of(key, raw)
    if "kind" not in table:
        raise ConfigError(f"{key}.kind", f"missing; set kind to one of {', '.join(KINDS)}")
    kind = choice(KINDS)(f"{key}.kind", table["kind"])
    spec = _ARGS[kind]
    check_keys(key, table, ("kind", "label", "input_shape", *spec))
    args: dict[str, Any] = {}
    for name, (check, required) in spec.items():
        if name in table:
            args[name] = check(f"{key}.{name}", table[name])
        elif required:
            raise ConfigError(f"{key}.{name}", f"missing; a {kind} needs {name} (an integer)")
    _check_model_consistency(key, kind, args)
    label = table.get("label", _default_label(kind, args))
    if not isinstance(label, str) or not label.strip():
        raise ConfigError(f"{key}.label", f"must be a non-empty string, got {label!r}")
    if "input_shape" in table:
        shape = shape_of(f"{key}.input_shape", table["input_shape"])
        _check_shape(f"{key}.input_shape", kind, args, shape)
    elif shape is not None:
        _check_shape("inputs.shape", kind, args, shape)
    else:
        shape = _natural_shape(kind, args, image_size)
    return ModelSpec(label=label, kind=kind, args=args, input_shape=shape)


def _check_model_consistency(key: str, kind: str, args: dict[str, Any]) -> None:
    """Cross-argument rules, named by key; then build on the meta device to catch the rest."""
    if kind == "resnet":
        depth = args.get("depth", 20)
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"{key}.depth", f"a ResNet needs depth = 6n+2 (8, 14, 20, 32, ...), got {depth}"
            )
    if kind == "transformer" and args["d_model"] % args["heads"]:
        raise ConfigError(
            f"{key}.heads",
            f"d_model = {args['d_model']} must be divisible by heads = {args['heads']}",
        )
    if kind == "convnet" and args.get("kernel_size", 3) % 2 == 0:
        raise ConfigError(f"{key}.kernel_size", f"must be odd, got {args['kernel_size']}")
    try:
        with torch.device("meta"):  # no memory, no random draws
            _model_class(kind)(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, f"{kind} rejects these arguments: {exc}") from None
