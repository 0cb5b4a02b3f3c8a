"""Pieces every model-level scheme shares: device-independent draws, biases, norms, options."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping

import torch
from torch import nn

from isokit.init.checks import check_choice, check_layer_name
from isokit.init.layers import WeightSlot, bias_params, reset_norms
from isokit.init.norms import scale_offset
from isokit.init.registry import Context


def fill_on_cpu(t: torch.Tensor, fill: Callable[[torch.Tensor], object]) -> None:
    """Run ``fill`` on a CPU tensor and copy the result into ``t``.

    Drawing on the CPU makes a seeded scheme give the same numbers on every device, and lets a
    CPU ``torch.Generator`` serve models that live on a GPU. A non-contiguous view (the
    ``[out, in]`` transpose of an HF ``Conv1D`` weight) is drawn contiguous and copied in, so it
    gets the numbers an ``nn.Linear`` of that shape gets from the same generator.
    """
    if t.device.type == "cpu" and t.is_contiguous():
        fill(t)
        return
    tmp = torch.empty(t.shape, dtype=t.dtype)
    fill(tmp)
    t.copy_(tmp)


def per_layer(
    name: str, value: float | Mapping[str, float], *, layer: str, default: float
) -> float:
    """Resolve option ``name`` for module ``layer``: one value, or the first matching glob.

    ``value`` must have passed :func:`isokit.init.checks.check_per_layer`.

    Example:
        >>> per_layer("tau", {"layer1.*": 0.5}, layer="layer1.0.conv1", default=1.0)
        0.5
    """
    if isinstance(value, Mapping):
        for pattern, v in value.items():
            if fnmatch.fnmatchcase(layer, pattern):
                return float(v)
        return default
    return float(value)


BIAS_CHOICES = ("zero", "keep")


def finish_biases(ctx: Context, bias: str) -> None:
    """Zero the weight layers' biases (``bias="zero"``) or keep them (``"keep"``).

    Example:
        >>> from isokit.init import apply
        >>> float(apply(torch.nn.Linear(2, 2), "orthogonal", seed=0).bias.detach().abs().sum())
        0.0
    """
    check_choice("bias", bias, BIAS_CHOICES, where=ctx.scheme)
    for name, p in bias_params(ctx.model):
        if bias == "zero":
            p.zero_()
        ctx.report.add(name, p.shape, "zero" if bias == "zero" else "kept")


def finish_norms(ctx: Context, gamma: dict[str, float] | None = None) -> None:
    """Norm layers: γ = 1 (or ``gamma[name]``), β = 0, BatchNorm statistics (0, 1)."""
    gamma = gamma or {}
    for name in reset_norms(ctx.model, gamma=gamma):
        module = ctx.model.get_submodule(name)
        for pname in ("weight", "bias"):
            p = getattr(module, pname, None)
            if isinstance(p, nn.Parameter):
                value, options = 0.0, ""
                if pname == "weight":
                    offset = scale_offset(module)
                    value = gamma.get(name, 1.0) - offset
                    options = "weight = γ − 1" if offset else ""
                full = f"{name}.{pname}" if name else pname
                ctx.report.add(full, p.shape, f"const {value:g}", options)


def fill_slots(ctx: Context, rule: str, options: str, fill, bias: str) -> None:
    """Fill every weight slot with ``fill(tensor, slot)``, then the biases and norms.

    Example:
        >>> from isokit.init import apply
        >>> apply(torch.nn.Linear(2, 2), "identity").weight.tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    for slot in ctx.slots:
        fill_on_cpu(slot.tensor, lambda t, s=slot: fill(t, s))
        report_slot(ctx, slot, rule, options)
    finish_biases(ctx, bias)
    finish_norms(ctx)


def report_slot(ctx: Context, slot: WeightSlot, rule: str, options: str = "", flags=()) -> None:
    """One report row for ``slot``, with the stored shape (``[in, out]`` for an HF Conv1D)."""
    shape = slot.param.shape if slot.transposed else slot.shape
    ctx.report.add(slot.name, shape, rule, options, flags)


def hook_target(model: nn.Module, layer: str) -> nn.Module:
    """The module whose forward output is ``layer``'s output.

    ``nn.MultiheadAttention`` applies ``out_proj`` functionally, so hooks on ``out_proj``
    never fire; the attention module itself produces its output.
    """
    parent_name, _, leaf = layer.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if leaf == "out_proj" and isinstance(parent, nn.MultiheadAttention):
        return parent
    return model.get_submodule(layer)


def check_head_name(ctx: Context, head_name: str | None) -> None:
    """Reject a ``head_name`` that is not a weight layer of the model (before any change).

    Example:
        >>> from isokit.init import apply
        >>> apply(torch.nn.Linear(2, 2), "zero", head_name="fc")
        Traceback (most recent call last):
        ...
        isokit.init.checks.OptionValueError: zero: head_name='fc' is not a weight layer of the model
    """
    check_layer_name(
        "head_name", head_name, [slot.module for slot in ctx.slots], where=ctx.scheme, optional=True
    )
