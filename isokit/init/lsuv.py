"""LSUV: orthonormal init, then rescale each layer on a real batch to unit output spread."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from isokit.init.checks import check_choice, check_int, check_real
from isokit.init.common import fill_on_cpu, finish_biases, report_slot
from isokit.init.layers import is_transposed_linear
from isokit.init.orthogonal import orthogonal_
from isokit.init.registry import Context, register

_HOOKED = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def _execution_order(model: nn.Module, data: torch.Tensor) -> list[str]:
    names = {
        m: n for n, m in model.named_modules() if isinstance(m, _HOOKED) or is_transposed_linear(m)
    }
    order: list[str] = []

    def record(module, args, output):
        name = names[module]
        if name not in order:
            order.append(name)

    handles = [m.register_forward_hook(record) for m in names]
    try:
        model(data)
    finally:
        for h in handles:
            h.remove()
    return order


def _output_stat(model: nn.Module, layer: nn.Module, data: torch.Tensor, criterion: str) -> float:
    captured = []
    handle = layer.register_forward_hook(lambda m, a, out: captured.append(out.detach()))
    try:
        model(data)
    finally:
        handle.remove()
    out = captured[0].double()
    return float(out.std() if criterion == "std" else out.var())


def _checked_data(ctx: Context, target: float, tol: float, max_iter: int) -> torch.Tensor:
    """Check the batch and the numeric options; return the batch on the model's device (and
    dtype, for a floating batch; token ids stay integers)."""
    data = ctx.data
    tokens = isinstance(data, torch.Tensor) and data.dtype in (torch.int32, torch.int64)
    if (
        not isinstance(data, torch.Tensor)
        or not (tokens or data.is_floating_point())
        or (data.dim() < 1)
    ):
        raise TypeError(
            "lsuv needs data= a floating tensor batch of shape (B, ...), or token ids (int64) "
            "for a model that embeds them"
        )
    if data.shape[0] < 2:
        raise ValueError("lsuv needs a batch of at least 2 examples to measure a spread")
    check_real("target", target, where=ctx.scheme, positive=True)
    check_real("tol", tol, where=ctx.scheme, positive=True)
    check_int("max_iter", max_iter, where=ctx.scheme, minimum=0)
    if not tokens and not torch.isfinite(data).all():
        raise ValueError("lsuv data contains NaN or inf; pass a finite batch")
    param = next(ctx.model.parameters(), None)
    if param is not None:
        data = data.to(device=param.device) if tokens else data.to(param.device, param.dtype)
    return data


def _rescale(
    ctx: Context,
    name: str,
    data: torch.Tensor,
    *,
    target: float,
    tol: float,
    max_iter: int,
    criterion: str,
) -> None:
    """Rescale layer ``name`` until its output spread is within ``tol`` of ``target``."""
    layer = ctx.model.get_submodule(name)
    stat = float("nan")
    for attempt in range(max_iter + 1):
        stat = _output_stat(ctx.model, layer, data, criterion)
        if not math.isfinite(stat):
            raise ValueError(
                f"lsuv: the output {criterion} of {name} is {stat}; the model overflows "
                "on this batch (try a smaller batch scale or another init first)"
            )
        if stat == 0.0 or abs(stat - target) <= tol or attempt == max_iter:
            break
        layer.weight.mul_(target / stat if criterion == "std" else (target / stat) ** 0.5)
    flags = ["output spread 0: skipped"] if stat == 0.0 else []
    if stat != 0.0 and abs(stat - target) > tol:
        flags.append(f"not converged in {max_iter} steps ({criterion} {stat:.3g})")
    full = f"{name}.weight" if name else "weight"
    ctx.report.add(full, layer.weight.shape, "lsuv", f"{criterion}={stat:.4g}", flags)


def _check_lsuv(options: Mapping, where: str) -> None:
    """The model-free check of LSUV's options (the batch is checked when it runs)."""
    check_real("target", options["target"], where=where, positive=True)
    check_real("tol", options["tol"], where=where, positive=True)
    check_int("max_iter", options["max_iter"], where=where, minimum=0)
    check_choice("criterion", options["criterion"], ("std", "var"), where=where)
    check_choice("order", options["order"], ("execution", "registration"), where=where)


@register(
    "lsuv",
    description="layer-sequential unit variance: orthonormal weights rescaled layer by layer "
    "until each output has unit spread on a batch (needs data=)",
    reference="Mishkin & Matas, ICLR 2016",
    needs_data=True,
    check=_check_lsuv,
)
def lsuv(
    ctx: Context,
    *,
    target: float = 1.0,
    tol: float = 0.1,
    max_iter: int = 10,
    criterion: str = "std",
    order: str = "execution",
) -> None:
    """LSUV with the reference package's semantics by default (``docs/baselines.md`` §7).

    ``criterion="std"``: while |std − target| > tol, W ← W·target/std (ducha-aiki/lsuv);
    ``"var"``: while |Var − target| > tol, W ← W·√(target/Var) (the paper, for target 1).
    Layers are visited in execution order (``order="registration"`` follows the reference
    package). A layer whose output spread is 0 is skipped, not divided; a non-finite spread
    raises.

    Example:
        >>> import isokit
        >>> from isokit.models import MLP
        >>> x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
        >>> model = isokit.init.apply(MLP(8, 16, 2), "lsuv", data=x, seed=0, tol=0.01)
        >>> round(float(model.fcs[0](x).detach().std()), 1)
        1.0
    """
    check_choice("criterion", criterion, ("std", "var"), where=ctx.scheme)
    check_choice("order", order, ("execution", "registration"), where=ctx.scheme)
    data = _checked_data(ctx, target, tol, max_iter)
    model = ctx.model
    was_training = model.training
    model.eval()
    try:
        layers = _execution_order(model, data)
        if order == "registration":
            layers = [n for n, m in model.named_modules() if n in set(layers)]
        for slot in ctx.slots:
            fill_on_cpu(slot.tensor, lambda w: orthogonal_(w, generator=ctx.generator))
        finish_biases(ctx, "zero")
        for name in layers:
            _rescale(
                ctx, name, data, target=target, tol=tol, max_iter=max_iter, criterion=criterion
            )
        hooked = set(layers)
        for slot in ctx.slots:
            if slot.module not in hooked:
                report_slot(
                    ctx,
                    slot,
                    "orthogonal",
                    "not reached by hooks: not rescaled",
                    ["lsuv skipped (applied functionally, e.g. attention)"],
                )
    finally:
        model.train(was_training)
