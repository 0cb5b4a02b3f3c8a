"""Identity-control schemes: Fixup, SkipInit, ReZero, Zero-γ, T-Fixup and ZerO.

Each starts every residual block as (nearly) the identity, in its own way
(``docs/baselines.md`` §8–§13). Those that add scalars (gates, Fixup biases) use the model's
declared gate where it has one and :mod:`isokit.init.scalars` elsewhere; those that drop
normalization replace the norm modules by ``nn.Identity`` in place. Option checks run before the
model is changed, and :func:`isokit.init.apply` undoes every change of a scheme that fails.
"""

from __future__ import annotations

import torch
from torch import nn

from isokit.init.checks import check_bool, check_fits, check_real
from isokit.init.common import (
    check_head_name,
    fill_on_cpu,
    finish_biases,
    finish_norms,
    hook_target,
    report_slot,
)
from isokit.init.layers import head_layer, replace_norms
from isokit.init.registry import Context, SchemeNotApplicable, register
from isokit.init.scalars import add_input_bias, add_output_bias, add_output_scale
from isokit.init.standard import kaiming_normal, torch_default
from isokit.init.variance import kaiming_normal_, xavier_uniform_
from isokit.init.zero import zero_
from isokit.structure import ResidualBranch


def _require_branches(ctx: Context, scheme: str) -> list[ResidualBranch]:
    branches = ctx.branches
    if not branches:
        raise SchemeNotApplicable(
            f"{scheme} needs residual branches, and {type(ctx.model).__name__} has none; use it "
            "on a residual model (e.g. isokit.models.ResNet) or pass branches= to apply()"
        )
    return branches


def _set_gates(ctx: Context, branches: list[ResidualBranch], value: float, scheme: str) -> None:
    """Set each branch's gate to ``value``: the declared gate, or a hooked scalar."""
    params = dict(ctx.model.named_parameters())
    done: set[str] = set()
    for b in branches:
        if b.gate is not None:
            if b.gate not in params:
                raise ValueError(f"branch gate {b.gate!r} is not a parameter of the model")
            if b.gate not in done:
                check_fits("alpha", value, params[b.gate].dtype, where=scheme)
                params[b.gate].fill_(value)
                ctx.report.add(b.gate, params[b.gate].shape, f"const {value:g}", scheme + " gate")
                done.add(b.gate)
        else:
            target = hook_target(ctx.model, b.last)
            ref = next(target.parameters(), None)
            dtype = torch.get_default_dtype() if ref is None else ref.dtype
            check_fits("alpha", value, dtype, where=scheme)
            name = add_output_scale(target, value)
            full = f"{_module_name(ctx.model, target)}.{name}"
            ctx.report.add(full, (), f"const {value:g}", f"{scheme} gate (added)")


def _module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise LookupError("module not found in model")


def _torch_default_module(ctx: Context, name: str) -> None:
    """Re-run one module's ``reset_parameters()`` under an RNG seeded from the scheme's."""
    module = ctx.model.get_submodule(name)
    reset = getattr(module, "reset_parameters", None) or module._reset_parameters
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed())
        reset()


def _remove_norms(ctx: Context, scheme: str) -> None:
    removed = replace_norms(ctx.model)
    if removed:
        ctx.report.notes.append(f"{scheme}: removed normalization layers {', '.join(removed)}")


@register(
    "fixup",
    description="zero last branch layer and classifier, He fan_out × L^(-1/(2m-2)) on other "
    "branch layers, scalar biases and multipliers, no normalization",
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
    n_branches = len(branches)
    depth_of = {}
    for b in branches:
        for name in b.layers:
            depth_of[name] = len(b.layers)
    slots = ctx.slots
    head = head_name or head_layer(ctx.model, slots, set(roles))
    for slot in slots:
        t = slot.tensor
        role = roles.get(slot.module)
        if role == "last" or slot.module == head:
            t.zero_()
            report_slot(ctx, slot, "zero", "head" if slot.module == head else "branch end")
        elif role == "branch":
            m = depth_of[slot.module]
            factor = n_branches ** (-1.0 / (2 * m - 2))
            fill_on_cpu(
                t,
                lambda w, s=slot: kaiming_normal_(
                    w, mode="fan_out", nonlinearity="relu", groups=s.groups, generator=ctx.generator
                ),
            )
            t.mul_(factor)
            report_slot(ctx, slot, "kaiming-normal", f"fan_out × L^(-1/(2m-2)) = {factor:.4g}")
        elif slot.kind == "conv" and slot.tensor.shape[-1] == 1 and slot.tensor.dim() > 2:
            # 1×1 projection shortcuts: He fan_out without the depth factor.
            fill_on_cpu(
                t,
                lambda w, s=slot: kaiming_normal_(
                    w, mode="fan_out", nonlinearity="relu", groups=s.groups, generator=ctx.generator
                ),
            )
            report_slot(ctx, slot, "kaiming-normal", "fan_out (projection shortcut)")
        else:
            # The reference code leaves the stem at the torch default; redraw it from our seed
            # so that the result does not depend on the model's previous values.
            _torch_default_module(ctx, slot.module)
            report_slot(ctx, slot, "torch-default", "main stem, as the reference code")
    finish_biases(ctx, "zero")
    finish_norms(ctx)
    # Scalars: bias before every branch layer, after each non-last one; scale and bias at the end.
    for b in branches:
        for name in b.layers:
            target = hook_target(ctx.model, name)
            add_input_bias(target)
            if name == b.last:
                if b.gate is None:
                    add_output_scale(target, 1.0)
                add_output_bias(target)
            else:
                add_output_bias(target)
    if head is not None:
        add_input_bias(ctx.model.get_submodule(head))
    _set_gates(ctx, [b for b in branches if b.gate is not None], 1.0, "fixup")
    if remove_norms:
        _remove_norms(ctx, "fixup")
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
    description="x + α·F(x) with α = 0 (shared by a layer's sub-layers where the model "
    "declares one gate), torch-default weights, no LayerNorm",
    reference="Bachlechner et al., UAI 2021 (arXiv 2003.04887)",
)
def rezero(ctx: Context, *, alpha: float = 0.0, remove_norms: bool = True) -> None:
    """ReZero (``docs/baselines.md`` §10): torch-default weights, gate ``alpha`` per branch.

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=8, width=4), "rezero", seed=0, alpha=0.5)
        >>> model.layer1[0].conv2.isokit_scale.item()
        0.5
    """
    alpha = check_real("alpha", alpha, where=ctx.scheme)
    check_bool("remove_norms", remove_norms, where=ctx.scheme)
    branches = _require_branches(ctx, "rezero")
    torch_default(ctx)
    _set_gates(ctx, branches, alpha, "rezero")
    if remove_norms:
        _remove_norms(ctx, "rezero")


@register(
    "zero-gamma",
    description="He fan_out convolutions, γ = 0 on the norm that ends each residual branch",
    reference="Goyal et al. 2017; He et al., CVPR 2019 (torchvision zero_init_residual)",
)
def zero_gamma(ctx: Context) -> None:
    """Zero-γ (``docs/baselines.md`` §11): γ = 0 on the norm ending each residual branch.

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=8, width=4, norm="batch"), "zero-gamma", seed=0)
        >>> model.layer1[0].bn2.weight.abs().max().item()
        0.0
    """
    branches = _require_branches(ctx, "zero-gamma")
    norms = [b.norm for b in branches if b.norm is not None]
    if not norms:
        raise SchemeNotApplicable(
            "zero-gamma needs a normalization layer ending each residual branch, and this model "
            "has none; use a model with one (e.g. ResNet(norm='batch'))"
        )
    for b in branches:
        if b.norm is None:
            ctx.report.notes.append(f"zero-gamma: branch ending in {b.last} has no norm (n/a)")
    for slot in ctx.slots:
        if slot.kind == "conv":
            fill_on_cpu(
                slot.tensor,
                lambda w, s=slot: kaiming_normal_(
                    w, mode="fan_out", nonlinearity="relu", groups=s.groups, generator=ctx.generator
                ),
            )
            report_slot(ctx, slot, "kaiming-normal", "fan_out")
        else:
            _torch_default_module(ctx, slot.module)
            report_slot(ctx, slot, "torch-default")
    finish_norms(ctx, dict.fromkeys(norms, 0.0))


_QK_NAMES = ("q", "k", "q_proj", "k_proj", "query", "key")


def _is_attention_branch(model: nn.Module, b: ResidualBranch) -> bool:
    first = b.layers[0]
    if isinstance(model.get_submodule(first), nn.MultiheadAttention):
        return True
    return any(name.rpartition(".")[2] in _QK_NAMES for name in b.layers)


@register(
    "t-fixup",
    description="Xavier weights, v/out/fc1/fc2 of each encoder layer × 0.67·N^(-1/4), "
    "no LayerNorm, no warm-up",
    reference="Huang, Perez, Ba & Volkovs, ICML 2020",
)
def t_fixup(ctx: Context, *, remove_norms: bool = True) -> None:
    """T-Fixup (``docs/baselines.md`` §12): Xavier weights, v/out/fc scaled by 0.67·N^(-1/4).

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import Transformer
        >>> model = apply(Transformer(2, 8, 2, 16, 4), "t-fixup", seed=0)
        >>> any(isinstance(m, nn.LayerNorm) for m in model.modules())
        False
    """
    check_bool("remove_norms", remove_norms, where=ctx.scheme)
    branches = _require_branches(ctx, "t-fixup")
    attention = [b for b in branches if _is_attention_branch(ctx.model, b)]
    if not attention:
        raise SchemeNotApplicable(
            "t-fixup applies to Transformers and this model has no attention branch; use it on "
            "isokit.models.Transformer or nn.TransformerEncoder"
        )
    n_layers = len(attention)
    factor = 0.67 * n_layers ** (-0.25)
    scaled: set[str] = set()
    for b in branches:
        for name in b.layers:
            if name.rpartition(".")[2] not in _QK_NAMES:
                scaled.add(name)
    for slot in ctx.slots:
        fill_on_cpu(
            slot.tensor,
            lambda w, s=slot: xavier_uniform_(w, groups=s.groups, generator=ctx.generator),
        )
        # A packed MHA in-projection: only its v block is scaled.
        is_scaled = slot.module in scaled and (
            slot.kind != "attention" or "[v]" in slot.name or "v_proj" in slot.name
        )
        if is_scaled:
            slot.tensor.mul_(factor)
        report_slot(
            ctx, slot, "xavier-uniform", f"× 0.67·N^(-1/4) = {factor:.4g}" if is_scaled else ""
        )
    for name, module in ctx.model.named_modules():
        if isinstance(module, nn.Embedding):
            d = module.weight.shape[1]
            fill_on_cpu(
                module.weight,
                lambda w, d=d: w.normal_(0.0, d**-0.5, generator=ctx.generator).mul_(
                    (9 * n_layers) ** -0.25
                ),
            )
            ctx.report.add(
                f"{name}.weight", module.weight.shape, "normal", "N(0, d^-1/2) × (9N)^(-1/4)"
            )
    finish_biases(ctx, "zero")
    ctx.report.notes.append(
        f"t-fixup: encoder rule applied with N = {n_layers} layers (encoder-only use is "
        "unspecified in the paper, see docs/baselines.md §12)"
    )
    if remove_norms:
        _remove_norms(ctx, "t-fixup")


@register(
    "zero",
    description="ZerO: deterministic identity / Hadamard matrices on the main stem, zero "
    "residual branches and classifier",
    reference="Zhao, Schäfer & Anandkumar, TMLR 2022",
)
def zero(ctx: Context, *, head_name: str | None = None) -> None:
    """ZerO (``docs/baselines.md`` §13): identity/Hadamard stem, zero branches and head.

    Example:
        >>> from isokit.init import apply
        >>> apply(nn.Linear(2, 4), "zero").weight.tolist()
        [[0.5, 0.5], [0.5, -0.5], [0.5, 0.5], [0.5, -0.5]]
    """
    check_head_name(ctx, head_name)
    roles = ctx.roles()
    slots = ctx.slots
    head = head_name or head_layer(ctx.model, slots, set(roles))
    for slot in slots:
        if slot.module in roles or slot.module == head:
            slot.tensor.zero_()
            report_slot(ctx, slot, "zero", "head" if slot.module == head else "residual branch")
        else:
            zero_(slot.tensor, groups=slot.groups)
            report_slot(
                ctx,
                slot,
                "zero-hadamard" if slot.tensor.shape[0] > slot.tensor.shape[1] else "zero-identity",
            )
    finish_biases(ctx, "zero")
    finish_norms(ctx)
