"""Model-level tensor schemes: torch default, Xavier, Kaiming, orthogonal, delta-orthogonal, eye.

Each writes every weight slot (attention per projection), zeroes biases unless
``bias="keep"``, sets norms to γ = 1, β = 0 and keeps embeddings (``baselines.md`` §0).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from isokit.init.common import fill_on_cpu, finish_biases, finish_norms, report_slot
from isokit.init.orthogonal import delta_orthogonal_, dirac_, eye_, orthogonal_
from isokit.init.registry import Context, register
from isokit.init.variance import (
    kaiming_normal_,
    kaiming_uniform_,
    xavier_normal_,
    xavier_uniform_,
)


@register(
    "torch-default",
    description="each module's own reset_parameters(): U(±1/√fan_in) weights and biases",
    reference="PyTorch torch/nn/modules (Linear, ConvNd, MultiheadAttention)",
)
def torch_default(ctx: Context) -> None:
    # reset_parameters() takes no generator: run it under a forked RNG seeded from ours.
    # nn.MultiheadAttention zeroes out_proj.bias in _reset_parameters(); its out_proj child must
    # not redraw it afterwards (baselines.md §1).
    mha_out = {
        f"{n}.out_proj" if n else "out_proj"
        for n, m in ctx.model.named_modules()
        if isinstance(m, nn.MultiheadAttention)
    }
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(ctx.seed())
        for name, module in ctx.model.named_modules():
            reset = getattr(module, "reset_parameters", None)
            if isinstance(module, nn.MultiheadAttention):
                module._reset_parameters()
            elif callable(reset) and any(True for _ in module.parameters(recurse=False)):
                reset()
                if name in mha_out and module.bias is not None:
                    module.bias.zero_()
            else:
                continue
            for pname, p in module.named_parameters(recurse=False):
                full = f"{name}.{pname}" if name else pname
                ctx.report.add(full, p.shape, "torch-default")


def _per_slot(ctx: Context, rule: str, options: str, fill, bias: str) -> None:
    for slot in ctx.slots:
        fill_on_cpu(slot.tensor, lambda t, s=slot: fill(t, s))
        report_slot(ctx, slot, rule, options)
    finish_biases(ctx, bias)
    finish_norms(ctx)


@register(
    "xavier-uniform",
    description="Glorot uniform: U(±gain·√(6/(fan_in+fan_out)))",
    reference="Glorot & Bengio, AISTATS 2010",
    options=("gain", "convention", "bias"),
)
def xavier_uniform(
    ctx: Context, *, gain: float = 1.0, convention: str = "torch", bias: str = "zero"
) -> None:
    _per_slot(
        ctx,
        "xavier-uniform",
        f"gain={gain:g}",
        lambda t, s: xavier_uniform_(
            t, gain, convention=convention, groups=s.groups, generator=ctx.generator
        ),
        bias,
    )


@register(
    "xavier-normal",
    description="Glorot normal: N(0, gain²·2/(fan_in+fan_out))",
    reference="Glorot & Bengio, AISTATS 2010",
    options=("gain", "variant", "convention", "bias"),
)
def xavier_normal(
    ctx: Context,
    *,
    gain: float = 1.0,
    variant: str = "torch",
    convention: str = "torch",
    bias: str = "zero",
) -> None:
    _per_slot(
        ctx,
        "xavier-normal",
        f"gain={gain:g} variant={variant}",
        lambda t, s: xavier_normal_(
            t,
            gain,
            variant=variant,
            convention=convention,
            groups=s.groups,
            generator=ctx.generator,
        ),
        bias,
    )


_KAIMING_OPTIONS = ("mode", "nonlinearity", "a", "convention", "bias")


@register(
    "kaiming-normal",
    description="He normal: N(0, gain²/fan), fan_in (default) or fan_out",
    reference="He, Zhang, Ren & Sun, ICCV 2015",
    options=_KAIMING_OPTIONS,
)
def kaiming_normal(
    ctx: Context,
    *,
    mode: str = "fan_in",
    nonlinearity: str = "relu",
    a: float = 0.0,
    convention: str = "torch",
    bias: str = "zero",
) -> None:
    _per_slot(
        ctx,
        "kaiming-normal",
        f"mode={mode} nonlinearity={nonlinearity}",
        lambda t, s: kaiming_normal_(
            t,
            a,
            mode=mode,
            nonlinearity=nonlinearity,
            convention=convention,
            groups=s.groups,
            generator=ctx.generator,
        ),
        bias,
    )


@register(
    "kaiming-uniform",
    description="He uniform: U(±√3·gain/√fan), fan_in (default) or fan_out",
    reference="He, Zhang, Ren & Sun, ICCV 2015",
    options=_KAIMING_OPTIONS,
)
def kaiming_uniform(
    ctx: Context,
    *,
    mode: str = "fan_in",
    nonlinearity: str = "relu",
    a: float = 0.0,
    convention: str = "torch",
    bias: str = "zero",
) -> None:
    _per_slot(
        ctx,
        "kaiming-uniform",
        f"mode={mode} nonlinearity={nonlinearity}",
        lambda t, s: kaiming_uniform_(
            t,
            a,
            mode=mode,
            nonlinearity=nonlinearity,
            convention=convention,
            groups=s.groups,
            generator=ctx.generator,
        ),
        bias,
    )


def _gain(gain: float | str) -> float:
    if gain == "relu":
        return math.sqrt(2.0)
    if isinstance(gain, bool) or not isinstance(gain, int | float):
        raise TypeError(f"gain must be a number or 'relu', got {gain!r}")
    return float(gain)


@register(
    "orthogonal",
    description="Haar (semi-)orthogonal weights times gain; conv kernels flattened",
    reference="Saxe, McClelland & Ganguli, ICLR 2014",
    options=("gain", "bias"),
)
def orthogonal(ctx: Context, *, gain: float | str = 1.0, bias: str = "zero") -> None:
    g = _gain(gain)
    _per_slot(
        ctx,
        "orthogonal",
        f"gain={g:g}",
        lambda t, s: orthogonal_(t, g, generator=ctx.generator),
        bias,
    )


@register(
    "delta-orthogonal",
    description="orthogonal channel mixing at the kernel centre, zeros elsewhere; "
    "Linear layers orthogonal",
    reference="Xiao et al., ICML 2018",
    options=("gain", "allow_contracting", "bias"),
)
def delta_orthogonal(
    ctx: Context, *, gain: float | str = 1.0, allow_contracting: bool = False, bias: str = "zero"
) -> None:
    g = _gain(gain)

    def fill(t: torch.Tensor, s) -> None:
        if s.kind == "conv":
            delta_orthogonal_(
                t, g, groups=s.groups, allow_contracting=allow_contracting, generator=ctx.generator
            )
        else:
            orthogonal_(t, g, generator=ctx.generator)

    _per_slot(ctx, "delta-orthogonal", f"gain={g:g}", fill, bias)


@register(
    "identity",
    description="zero-padded identity: torch eye_ / dirac_ (times scale); the baseline IDI pads "
    "by repetition instead",
    reference="Le, Jaitly & Hinton 2015; Zagoruyko & Komodakis 2017",
    options=("scale", "bias"),
)
def identity(ctx: Context, *, scale: float = 1.0, bias: str = "zero") -> None:
    def fill(t: torch.Tensor, s) -> None:
        if s.kind == "conv":
            dirac_(t, scale, groups=s.groups)
        else:
            eye_(t, scale)

    _per_slot(ctx, "identity", f"scale={scale:g}", fill, bias)
