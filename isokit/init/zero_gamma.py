"""Zero-γ (Goyal et al. 2017; torchvision's ``zero_init_residual``): γ = 0 ending each branch."""

from __future__ import annotations

from isokit.init.common import fill_on_cpu, finish_norms, report_slot
from isokit.init.control import _require_branches, _torch_default_module
from isokit.init.registry import Context, SchemeNotApplicable, register
from isokit.init.variance import kaiming_normal_


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
