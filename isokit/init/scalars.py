"""Scalar parameters that identity-control schemes add to a model: gates, biases, multipliers.

Fixup, SkipInit and ReZero need a learnable scalar on each residual branch (and Fixup scalar
biases around each branch layer). Models that declare a gate (``ResidualBranch.gate``) get it
set; elsewhere these helpers register the scalar on the layer itself and a forward hook that
applies it, so no module is renamed, parameter names stay stable (``layer.fixup_scale``) and
optimizers see the scalars as ordinary parameters. The hooks are module-level functions, so
models with them still deep-copy and pickle.
"""

from __future__ import annotations

import torch
from torch import nn


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, value):
    return (value, *output[1:]) if isinstance(output, tuple) else value


def _pre_bias(module: nn.Module, args: tuple) -> tuple:
    return (args[0] + module.isokit_bias_in, *args[1:])


def _post_affine(module: nn.Module, args: tuple, output):
    y = _first(output)
    scale = getattr(module, "isokit_scale", None)
    if scale is not None:
        y = y * scale
    bias = getattr(module, "isokit_bias_out", None)
    if bias is not None:
        y = y + bias
    return _replace_first(output, y)


def _scalar(module: nn.Module, value: float) -> nn.Parameter:
    ref = next(module.parameters(), None)
    kwargs = {} if ref is None else {"dtype": ref.dtype, "device": ref.device}
    return nn.Parameter(torch.full((), float(value), **kwargs))


def add_input_bias(module: nn.Module, value: float = 0.0) -> str:
    """Add a scalar ``isokit_bias_in`` to the module's first input; return the parameter's name."""
    if not hasattr(module, "isokit_bias_in"):
        module.register_parameter("isokit_bias_in", _scalar(module, value))
        module.register_forward_pre_hook(_pre_bias)
    return "isokit_bias_in"


def _ensure_post_hook(module: nn.Module) -> None:
    if not getattr(module, "_isokit_post_hook", False):
        module.register_forward_hook(_post_affine)
        module._isokit_post_hook = True


def add_output_bias(module: nn.Module, value: float = 0.0) -> str:
    """Add a scalar ``isokit_bias_out`` to the module's output (after any ``isokit_scale``)."""
    if not hasattr(module, "isokit_bias_out"):
        module.register_parameter("isokit_bias_out", _scalar(module, value))
        _ensure_post_hook(module)
    return "isokit_bias_out"


def add_output_scale(module: nn.Module, value: float) -> str:
    """Multiply the module's output by a learnable scalar ``isokit_scale``."""
    if hasattr(module, "isokit_scale"):
        with torch.no_grad():
            module.isokit_scale.fill_(value)
    else:
        module.register_parameter("isokit_scale", _scalar(module, value))
        _ensure_post_hook(module)
    return "isokit_scale"
