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


def _pre_bias(module: nn.Module, args: tuple, kwargs: dict) -> tuple:
    bias = module.isokit_bias_in
    if isinstance(module, nn.MultiheadAttention):
        return _attention_pre_bias(bias, args, kwargs)
    if args:
        return (args[0] + bias, *args[1:]), kwargs
    for key, value in kwargs.items():  # called by keyword only: the first tensor passed
        if isinstance(value, torch.Tensor):
            return args, {**kwargs, key: value + bias}
    return args, kwargs


def _attention_pre_bias(bias: nn.Parameter, args: tuple, kwargs: dict) -> tuple:
    """Shift an attention's query, and its key and value when they are the query (self-attention),
    as the Fixup authors' Transformer shifts the sub-layer input before q, k and v."""
    names = ("query", "key", "value")
    given = list(args[:3]) + [kwargs.get(n) for n in names[len(args[:3]) :]]
    query = given[0]
    if query is None:
        return args, kwargs
    moved = query + bias  # one tensor, so that attention still sees key is query
    shifted = [moved if t is query else t for t in given]
    new_args = tuple(shifted[: len(args[:3])]) + tuple(args[3:])
    new_kwargs = dict(kwargs)
    for i, n in enumerate(names[len(args[:3]) :], start=len(args[:3])):
        if n in kwargs:
            new_kwargs[n] = shifted[i]
    return new_args, new_kwargs


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
    """Add a scalar ``isokit_bias_in`` to the module's first input; return the parameter's name.

    On an ``nn.MultiheadAttention`` the key and value are shifted too when they are the query
    tensor itself (self-attention).
    """
    if not hasattr(module, "isokit_bias_in"):
        module.register_parameter("isokit_bias_in", _scalar(module, value))
        module.register_forward_pre_hook(_pre_bias, with_kwargs=True)
    return "isokit_bias_in"


def share_input_bias(module: nn.Module, bias: nn.Parameter) -> None:
    """Add the existing scalar ``bias`` to ``module``'s first input too (Fixup's shortcut sees
    the same ``x + b1a`` as the branch's first layer)."""
    if not hasattr(module, "isokit_bias_in"):
        module.register_parameter("isokit_bias_in", bias)
        module.register_forward_pre_hook(_pre_bias, with_kwargs=True)


def share_output_scale(module: nn.Module, scale: nn.Parameter) -> None:
    """Multiply ``module``'s output by the existing scalar ``scale`` (one gate for a block)."""
    if not hasattr(module, "isokit_scale"):
        module.register_parameter("isokit_scale", scale)
        _ensure_post_hook(module)


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
