"""ZerO as a model-level scheme (Zhao, Schäfer & Anandkumar, TMLR 2022; ``docs/baselines.md`` §13).

Zeroing every layer of a residual branch makes a branch that never trains: with two zero layers
in a row, each one's gradient is multiplied by the other's zero weight or zero output. The
reference ResNet (its ``augskip`` blocks) therefore gives every zero convolution its own skip, so
that no two zero layers sit between two additions. isokit does the same without rewriting the
model's forward: the last layer of each branch is 0 and keeps the block's own addition as its
skip; every other branch layer is 0 plus a fixed skip that applies ZerO's Algorithm 1/2 matrix
(identity, or partial identity and a normalized Hadamard transform when it expands) to the
layer's own input, with the layer's stride, padding and groups. The skip is a forward hook and a
non-persistent buffer ``isokit_zero_skip`` on the layer, undone by :func:`isokit.init.apply` on
failure like Fixup's scalars. Because such a skip reads the layer's own input, ``layer(x) +
K x = (W + K) x``: gradients are those of the layer started at K, which is what
``skips="folded"`` does without adding anything (the two train identically under plain SGD).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from isokit.init.checks import check_choice
from isokit.init.common import check_head_name, finish_biases, finish_norms, report_slot
from isokit.init.layers import WeightSlot, head_layer, is_transposed_linear
from isokit.init.registry import Context, register
from isokit.init.zero import zero_

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SKIPS = ("augmented", "folded")


def _zero_skip(module: nn.Module, args: tuple, output):
    """Forward hook: add the fixed ZerO map of the layer's input to its output."""
    if not args or not isinstance(output, torch.Tensor):
        return output
    skip = module.isokit_zero_skip
    x = args[0]
    if not isinstance(module, _CONV):  # a Linear, or HF Conv1D: the skip is [out, in] either way
        return output + F.linear(x, skip)
    return output + module._conv_forward(x, skip, None)


def _skippable(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, *_CONV)) or is_transposed_linear(module)


def add_zero_skip(module: nn.Module, kernel: torch.Tensor, rows: slice | None = None) -> None:
    """Give ``module`` (a Linear, HF ``Conv1D`` or ConvNd) the fixed skip ``x ↦ layer_K(x)``
    around it; ``K`` is ``[out, in, *kernel]`` (``rows``: only that row block of it, the rest
    kept, for a packed q/k/v projection)."""
    if not _skippable(module):
        raise TypeError(
            f"add_zero_skip needs a Linear, Conv1D or ConvNd, got {type(module).__name__}"
        )
    if "isokit_zero_skip" not in module._buffers:
        full = kernel if rows is None else kernel.new_zeros(_layer_shape(module))
        module.register_buffer("isokit_zero_skip", full, persistent=False)
        module.register_forward_hook(_zero_skip)
    target = module.isokit_zero_skip if rows is None else module.isokit_zero_skip[rows]
    target.copy_(kernel)


def _layer_shape(module: nn.Module) -> tuple[int, ...]:
    shape = tuple(module.weight.shape)
    return shape[::-1] if is_transposed_linear(module) else shape


def _check_zero(options: Mapping[str, object], where: str) -> None:
    check_choice("skips", options["skips"], SKIPS, where=where)


def _rule(slot: WeightSlot) -> str:
    return "zero-hadamard" if slot.tensor.shape[0] > slot.tensor.shape[1] else "zero-identity"


@register(
    "zero",
    description="ZerO: identity / Hadamard matrices on the main stem, zero residual branch ends "
    "and classifier, the other branch layers zero with a fixed identity / Hadamard skip",
    reference="Zhao, Schäfer & Anandkumar, TMLR 2022",
    check=_check_zero,
)
def zero(ctx: Context, *, head_name: str | None = None, skips: str = "augmented") -> None:
    """ZerO (``docs/baselines.md`` §13): deterministic, trainable from its zero layers.

    Main-stem layers get Algorithm 1/2 (:func:`isokit.init.zero_`); the last layer of every
    residual branch and the classifier are 0; every other branch layer is 0 with a fixed skip
    applying the Algorithm 1/2 matrix to its input (``skips="augmented"``) or starts at that
    matrix (``skips="folded"``, no added skip). Biases 0, norms reset. No randomness.

    Example:
        >>> from isokit.init import apply
        >>> apply(nn.Linear(2, 4), "zero").weight.tolist()
        [[0.5, 0.5], [0.5, -0.5], [0.5, 0.5], [0.5, -0.5]]
    """
    _check_zero({"skips": skips}, ctx.scheme)
    check_head_name(ctx, head_name)
    roles = ctx.roles()
    slots = ctx.slots
    head = head_name or head_layer(ctx.model, slots, set(roles))
    added = 0
    for slot in slots:
        role = roles.get(slot.module)
        module = ctx.model.get_submodule(slot.module)
        if role == "last" or slot.module == head:
            slot.tensor.zero_()
            report_slot(ctx, slot, "zero", "head" if slot.module == head else "branch end")
        elif role == "branch" and skips == "augmented" and _skippable(module):
            kernel = torch.empty(slot.shape, dtype=slot.tensor.dtype)
            zero_(kernel, groups=slot.groups)
            add_zero_skip(module, kernel.to(slot.tensor.device), slot.rows)
            slot.tensor.zero_()
            report_slot(ctx, slot, "zero", f"+ fixed {_rule(slot)} skip (added)")
            added += 1
        else:
            zero_(slot.tensor, groups=slot.groups)
            where = "branch layer (folded)" if role == "branch" else ""
            report_slot(ctx, slot, _rule(slot), where)
    finish_biases(ctx, "zero")
    finish_norms(ctx)
    single = [b.last for b in ctx.branches if len(b.layers) == 1]
    if single:
        shown = ", ".join(single[:3]) + (f" and {len(single) - 3} more" if len(single) > 3 else "")
        ctx.report.notes.append(
            f"zero: the one-layer branches {shown} start at 0; an activation with zero slope at "
            "0 after them (ReLU) keeps them there, so they do not train (docs/baselines.md §13)"
        )
    if added:
        ctx.report.notes.append(
            f"zero: {added} branch layers start at 0 with a fixed identity / Hadamard skip "
            "(buffer isokit_zero_skip, forward hook), so that only one zero layer sits between "
            "two additions; the last layer of each branch keeps the block's own addition"
        )
