"""Identity-control schemes that add scalars: Fixup, SkipInit and ReZero, and their shared parts.

Each starts every residual block as (nearly) the identity, in its own way
(``docs/baselines.md`` §8–§10; Zero-γ, T-Fixup and ZerO live in :mod:`isokit.init.zero_gamma`,
:mod:`isokit.init.tfixup` and :mod:`isokit.init.zero_scheme`). Scalars (gates, Fixup biases) use
the model's declared gate where it has one and :mod:`isokit.init.scalars` elsewhere; schemes that
drop normalization replace the norm modules in place. Option checks run before the model is
changed, and :func:`isokit.init.apply` undoes every change of a scheme that fails.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from isokit.init.blocks import (
    attention_branch,
    block_of,
    branch_matrices,
    group_blocks,
    off_branch_projections,
)
from isokit.init.checks import check_bool, check_fits, check_real
from isokit.init.common import (
    check_head_name,
    fill_on_cpu,
    finish_biases,
    finish_norms,
    hook_target,
    report_slot,
)
from isokit.init.layers import WeightSlot, head_layer, replace_norms
from isokit.init.registry import Context, SchemeNotApplicable, register
from isokit.init.scalars import (
    add_input_bias,
    add_output_bias,
    add_output_scale,
    share_input_bias,
    share_output_scale,
)
from isokit.init.standard import kaiming_normal, reset_module_, torch_default
from isokit.init.variance import kaiming_normal_, xavier_uniform_
from isokit.structure import ResidualBranch


def _require_branches(ctx: Context, scheme: str) -> list[ResidualBranch]:
    branches = ctx.branches
    if not branches:
        raise SchemeNotApplicable(
            f"{scheme} needs residual branches, and {type(ctx.model).__name__} has none; use it "
            "on a residual model (e.g. isokit.models.ResNet) or pass branches= to apply()"
        )
    return branches


def _scalar_dtype(module: nn.Module) -> torch.dtype:
    ref = next(module.parameters(), None)
    return torch.get_default_dtype() if ref is None else ref.dtype


def _set_declared(ctx: Context, gate: str, value: float, scheme: str, note: str = "") -> None:
    param = dict(ctx.model.named_parameters()).get(gate)
    if param is None:
        raise ValueError(f"branch gate {gate!r} is not a parameter of the model")
    check_fits("alpha", value, param.dtype, where=scheme)
    param.fill_(value)
    ctx.report.add(gate, param.shape, f"const {value:g}", f"{scheme} gate{note}")


def _set_gates(
    ctx: Context,
    branches: list[ResidualBranch],
    value: float,
    scheme: str,
    *,
    per: str = "declared",
) -> None:
    """Give the branches gates at ``value``.

    ``per="declared"``: the model's declared gate where there is one, else a hooked scalar per
    branch. ``per="block"``: one scalar per block (:mod:`isokit.init.blocks`), shared by its
    branches: declared gates are used as they are, branches without one share one hooked scalar.
    ``per="branch"``: one scalar per branch; a declared gate shared by several branches is held at
    1 and each of them gets its own hooked scalar.
    """
    shared_declared = Counter(b.gate for b in branches if b.gate is not None)
    done: set[str] = set()
    groups = (
        group_blocks(ctx.model, branches)
        if per == "block"
        else {i: [i] for i in range(len(branches))}
    )
    for block, members in groups.items():
        scale: nn.Parameter | None = None
        first = ""
        for i in members:
            b = branches[i]
            if b.gate is not None and (per != "branch" or shared_declared[b.gate] == 1):
                if b.gate not in done:
                    _set_declared(ctx, b.gate, value, scheme)
                    done.add(b.gate)
                continue
            if b.gate is not None and b.gate not in done:
                _set_declared(ctx, b.gate, 1.0, scheme, " held at 1 (one scalar per sub-layer)")
                done.add(b.gate)
            target = hook_target(ctx.model, b.last)
            check_fits("alpha", value, _scalar_dtype(target), where=scheme)
            if scale is None:
                name = add_output_scale(target, value)
                scale, first = getattr(target, name), f"{_module_name(ctx.model, target)}.{name}"
                kind = f"block {block}" if per == "block" else "branch"
                ctx.report.add(
                    first, (), f"const {value:g}", f"{scheme} gate (added, one per {kind})"
                )
            else:
                share_output_scale(target, scale)
                ctx.report.notes.append(
                    f"{scheme}: the branch ending in {b.last} shares the gate {first}"
                )


def _module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise LookupError("module not found in model")


def _torch_default_module(ctx: Context, name: str) -> None:
    """Re-run one module's ``reset_parameters()`` under an RNG seeded from the scheme's."""
    module = ctx.model.get_submodule(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed())
        reset_module_(module)


def _remove_norms(ctx: Context, scheme: str) -> None:
    removed = replace_norms(ctx.model)
    if removed:
        ctx.report.notes.append(f"{scheme}: removed normalization layers {', '.join(removed)}")


def _he_fan_out(ctx: Context, slot: WeightSlot) -> None:
    fill_on_cpu(
        slot.tensor,
        lambda w, s=slot: kaiming_normal_(
            w, mode="fan_out", nonlinearity="relu", groups=s.groups, generator=ctx.generator
        ),
    )


def _fixup_stem(slots: list[WeightSlot], roles: dict[str, str], head: str | None) -> list[str]:
    """Main-stem layers that run before the first branch (the stem conv of a ResNet)."""
    stem: list[str] = []
    for slot in slots:
        if slot.module in roles:
            break
        if slot.module != head and slot.module not in stem:
            stem.append(slot.module)
    return stem


def _fixup_weights(ctx: Context, branches, head: str | None, transformer: bool) -> None:
    roles = ctx.roles()
    n_branches = len(branches)
    m_of = {name: branch_matrices(ctx.model, b) for b in branches for name in b.layers}
    for b in branches:  # a cross-attention's k and v take the rule of its q
        for name in off_branch_projections(ctx.model, b):
            m_of.setdefault(name, branch_matrices(ctx.model, b))
            roles.setdefault(name, "branch")
    for slot in ctx.slots:
        t = slot.tensor
        role = roles.get(slot.module)
        if role == "last" or slot.module == head:
            t.zero_()
            report_slot(ctx, slot, "zero", "head" if slot.module == head else "branch end")
        elif role == "branch":
            m = m_of[slot.module]
            factor = n_branches ** (-1.0 / (2 * m - 2))
            if transformer:  # the authors' Transformer variant starts from Xavier
                fill_on_cpu(
                    t,
                    lambda w, s=slot: xavier_uniform_(w, groups=s.groups, generator=ctx.generator),
                )
                rule = "xavier-uniform"
            else:
                _he_fan_out(ctx, slot)
                rule = "kaiming-normal"
            t.mul_(factor)
            report_slot(ctx, slot, rule, f"fan_out × L^(-1/(2m-2)), m={m}: {factor:.4g}")
        elif slot.kind == "conv" and slot.tensor.shape[-1] == 1 and slot.tensor.dim() > 2:
            _he_fan_out(ctx, slot)  # 1×1 projection shortcuts: He fan_out, no depth factor
            report_slot(ctx, slot, "kaiming-normal", "fan_out (projection shortcut)")
        else:
            # The reference code leaves the stem at the torch default; redraw it from our seed
            # so that the result does not depend on the model's previous values.
            _torch_default_module(ctx, slot.module)
            report_slot(ctx, slot, "torch-default", "main stem, as the reference code")


def _attention_entry(model: nn.Module, b: ResidualBranch) -> nn.Module | None:
    """The module whose input is the attention sub-layer's input (q, k and v read it)."""
    first = model.get_submodule(b.layers[0])
    if isinstance(first, nn.MultiheadAttention):
        return first
    parents = {name.rpartition(".")[0] for name in b.layers[:-1]}
    if len(parents) == 1 and (parent := parents.pop()):
        return model.get_submodule(parent)
    return None


def _fixup_scalars(ctx: Context, branches, stem: list[str], head: str | None, transformer: bool):
    """Scalar biases and multipliers where the reference code has them."""
    model = ctx.model
    for name in stem:  # bias1: after the stem conv, before its ReLU
        add_output_bias(hook_target(model, name))
    for b in branches:
        entry = _attention_entry(model, b) if transformer and attention_branch(model, b) else None
        if entry is not None:
            add_input_bias(entry)  # one shift of the sub-layer input, read by q, k and v
        else:
            for name in b.layers:
                target = hook_target(model, name)
                add_input_bias(target)
                if name != b.last:
                    add_output_bias(target)
            block = model.get_submodule(block_of(model, b)) if block_of(model, b) else model
            for child in ("downsample", "shortcut"):  # a real shortcut sees x + b1a too
                shortcut = getattr(block, child, None)
                if isinstance(shortcut, nn.Module) and not isinstance(shortcut, nn.Identity):
                    first = hook_target(model, b.layers[0])
                    share_input_bias(shortcut, first.isokit_bias_in)
        last = hook_target(model, b.last)
        if b.gate is None:
            add_output_scale(last, 1.0)
        if not transformer:  # the CIFAR/ImageNet blocks add b2b after the multiplier
            add_output_bias(last)
    if head is not None:
        add_input_bias(model.get_submodule(head))  # bias2, before the classifier
    seen = {row.name for row in ctx.report.rows}
    for name, p in model.named_parameters():
        kind = name.rpartition(".")[2]
        if kind in _FIXUP_SCALARS and name not in seen:
            ctx.report.add(name, p.shape, f"const {p.item():g}", f"fixup {_FIXUP_SCALARS[kind]}")


_FIXUP_SCALARS = {
    "isokit_bias_in": "scalar bias before the layer (added)",
    "isokit_bias_out": "scalar bias after the layer (added)",
    "isokit_scale": "multiplier (added)",
}


@register(
    "fixup",
    description="zero last branch layer and classifier, He fan_out × L^(-1/(2m-2)) on other "
    "branch layers (Xavier in Transformers), scalar biases and multipliers, no normalization",
    reference="Zhang, Dauphin & Ma, ICLR 2019",
)
def fixup(ctx: Context, *, head_name: str | None = None, remove_norms: bool = True) -> None:
    """Fixup (``docs/baselines.md`` §8): zero branch ends and head, scaled He elsewhere.

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=8, width=4), "fixup", seed=0)
        >>> model.layer1[0].conv2.isokit_scale.item()
        1.0
    """
    check_bool("remove_norms", remove_norms, where=ctx.scheme)
    branches = _require_branches(ctx, "fixup")
    check_head_name(ctx, head_name)
    roles = ctx.roles()
    slots = ctx.slots
    head = head_name or head_layer(ctx.model, slots, set(roles))
    attention = [b for b in branches if attention_branch(ctx.model, b)]
    transformer = bool(attention)
    _fixup_weights(ctx, branches, head, transformer)
    finish_biases(ctx, "zero")
    finish_norms(ctx)
    _fixup_scalars(ctx, branches, _fixup_stem(slots, roles, head), head, transformer)
    _set_gates(ctx, [b for b in branches if b.gate is not None], 1.0, "fixup")
    if remove_norms:
        _remove_norms(ctx, "fixup")
    ctx.report.notes.append(f"fixup: L = {len(branches)} residual branches")
    if transformer:
        ctx.report.notes.append(
            f"fixup: applied to {len(attention)} attention branches as the authors' Transformer "
            "variant: Xavier-uniform per projection × L^(-1/(2m-2)), m counting weight matrices "
            "(attention m = 4: q, k, v and out, so q, k, v × L^(-1/6); feed-forward m = 2: fc1 × "
            "L^(-1/2)); out and fc2 zero; a scalar bias before each sub-layer, a multiplier after"
        )
    ctx.report.notes.append("fixup: train the added scalars with a 10× smaller learning rate")


@register(
    "skipinit",
    description="a zero-initialized scalar gate on every residual branch, He init, "
    "no normalization",
    reference="De & Smith, NeurIPS 2020",
)
def skipinit(ctx: Context, *, alpha: float = 0.0, remove_norms: bool = True) -> None:
    """SkipInit (``docs/baselines.md`` §9): He weights and a gate ``alpha`` on every branch.

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=8, width=4, gate="scalar"), "skipinit", seed=0)
        >>> model.layer1[0].gate.item()
        0.0
    """
    alpha = check_real("alpha", alpha, where=ctx.scheme)
    check_bool("remove_norms", remove_norms, where=ctx.scheme)
    branches = _require_branches(ctx, "skipinit")
    kaiming_normal(ctx)  # He fan_in (ReLU gain), zero biases, norms at γ = 1, β = 0
    _set_gates(ctx, branches, alpha, "skipinit")
    if remove_norms:
        _remove_norms(ctx, "skipinit")


@register(
    "rezero",
    description="x + α·F(x) with α = 0, one α per residual block (share_alpha=True, shared by "
    "its sub-layers) or per sub-layer, torch-default weights, no LayerNorm",
    reference="Bachlechner et al., UAI 2021 (arXiv 2003.04887)",
)
def rezero(
    ctx: Context, *, alpha: float = 0.0, share_alpha: bool = True, remove_norms: bool = True
) -> None:
    """ReZero (``docs/baselines.md`` §10): torch-default weights, gate ``alpha`` per block.

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=8, width=4), "rezero", seed=0, alpha=0.5)
        >>> model.layer1[0].conv2.isokit_scale.item()
        0.5
    """
    alpha = check_real("alpha", alpha, where=ctx.scheme)
    check_bool("share_alpha", share_alpha, where=ctx.scheme)
    check_bool("remove_norms", remove_norms, where=ctx.scheme)
    branches = _require_branches(ctx, "rezero")
    torch_default(ctx)
    _set_gates(ctx, branches, alpha, "rezero", per="block" if share_alpha else "branch")
    if remove_norms:
        _remove_norms(ctx, "rezero")
