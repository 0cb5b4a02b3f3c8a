"""Model-level variance-scaling schemes: the torch default, Xavier and Kaiming.

Each writes every weight slot (attention per projection), zeroes biases unless
``bias="keep"``, sets norms to γ = 1, β = 0 and keeps embeddings (``docs/baselines.md`` §0).
Each registers its weight law with the scheme: the variance
``σ_w²/fan_in`` of one entry on a square layer, the bias variance ``σ_b²`` and the ensemble
(:class:`isokit.theory.WeightLaw`), which theory overlays read instead of scheme names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, get_args

import torch
from torch import Tensor, nn

from isokit.init.checks import check_choice, check_real
from isokit.init.common import BIAS_CHOICES, fill_slots
from isokit.init.layers import embedding_ids, is_embedding, is_transposed_linear
from isokit.init.registry import Context, LawFn, register
from isokit.init.variance import (
    FanConvention,
    FanMode,
    Nonlinearity,
    NormalVariant,
    kaiming_normal_,
    kaiming_uniform_,
    xavier_normal_,
    xavier_uniform_,
)
from isokit.theory.law import WeightLaw


def _torch_default_law(options: Mapping, *, fan_in: int, bias: bool) -> WeightLaw:
    # U(±1/√fan_in) weights and biases: variance 1/(3·fan_in) each, so σ_w² = 1/3.
    return WeightLaw(
        sigma_w2=1.0 / 3.0, sigma_b2=1.0 / (3.0 * fan_in) if bias else 0.0, ensemble="gaussian"
    )


def reset_module_(module: nn.Module) -> bool:
    """Reset ``module``'s own parameters to its PyTorch default; False if it has none.

    Draws from torch's global RNG, as ``reset_parameters()`` does (the scheme seeds it).
    ``nn.MultiheadAttention`` runs ``_reset_parameters()``; a Hugging Face ``Conv1D`` gets
    ``nn.Linear``'s rule on its ``[out, in]`` view, W, b ~ U(±1/√nx), drawn as a Linear of that
    shape draws them (HF's own N(0, 0.02²) is its models' ``_init_weights``, a model-level
    choice, not the layer's default); any other module its own ``reset_parameters()``.

    Example:
        >>> lin = nn.Linear(3, 2)
        >>> _ = torch.manual_seed(0)
        >>> reset_module_(lin), bool(lin.weight.abs().max() <= 3**-0.5)
        (True, True)
    """
    if isinstance(module, nn.MultiheadAttention):
        module._reset_parameters()
        return True
    if is_transposed_linear(module):
        w = module.weight.new_empty(module.weight.shape[::-1])
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.Linear.reset_parameters: U(±1/√in)
        with torch.no_grad():
            module.weight.copy_(w.t())
            if getattr(module, "bias", None) is not None:
                bound = 1.0 / math.sqrt(w.shape[1]) if w.shape[1] > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound)
        return True
    reset = getattr(module, "reset_parameters", None)
    if not callable(reset):
        return False
    reset()
    return True


def _reset_keeping(module: nn.Module, keep: list[nn.Parameter]) -> bool:
    """:func:`reset_module_`, with the tensors in ``keep`` (tied elsewhere) left as they were."""
    saved = [p.detach().clone() for p in keep]
    done = reset_module_(module)
    with torch.no_grad():
        for p, s in zip(keep, saved, strict=True):
            p.copy_(s)
    return done


@register(
    "torch-default",
    description="each module's own reset_parameters(): U(±1/√fan_in) weights and biases",
    reference="PyTorch torch/nn/modules (Linear, ConvNd, MultiheadAttention)",
    weight_law=_torch_default_law,
)
def torch_default(ctx: Context) -> None:
    """Each module's own ``reset_parameters()`` (:func:`reset_module_`), drawn from the scheme's
    seed; a tensor reachable from several modules is reset once, by the first, and an
    embedding's table only by the embedding (not by a head tied to it).

    Example:
        >>> from isokit.init import apply
        >>> w = apply(nn.Linear(4, 4), "torch-default", seed=0).weight.detach()
        >>> bool(w.abs().max() <= 1 / 4**0.5)
        True
    """
    # reset_parameters() takes no generator: run it under a forked RNG seeded from ours.
    # nn.MultiheadAttention zeroes out_proj.bias in _reset_parameters(); its out_proj child must
    # not redraw it afterwards (docs/baselines.md §1).
    mha_out = {
        f"{n}.out_proj" if n else "out_proj"
        for n, m in ctx.model.named_modules()
        if isinstance(m, nn.MultiheadAttention)
    }
    tables = embedding_ids(ctx.model)
    first = {id(p): n for n, p in ctx.model.named_parameters()}  # the report's names
    done: set[int] = set()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(ctx.seed())
        for name, module in ctx.model.named_modules():
            own = list(module.named_parameters(recurse=False))
            keep_ids = done if is_embedding(module) else done | tables
            fresh = [(pname, p) for pname, p in own if id(p) not in keep_ids]
            if not fresh:
                continue
            if not _reset_keeping(module, [p for _, p in own if id(p) in keep_ids]):
                continue
            if name in mha_out and module.bias is not None:
                module.bias.zero_()
            for _, p in fresh:
                done.add(id(p))
                ctx.report.add(first[id(p)], p.shape, "torch-default")


def _check_xavier(options: Mapping, where: str) -> float:
    check_choice("convention", options["convention"], get_args(FanConvention), where=where)
    check_choice("bias", options["bias"], BIAS_CHOICES, where=where)
    if "variant" in options:
        check_choice("variant", options["variant"], get_args(NormalVariant), where=where)
    return check_real("gain", options["gain"], where=where, minimum=0.0)


def _xavier_law(scheme: str) -> LawFn:
    def law(options: Mapping, *, fan_in: int, bias: bool) -> WeightLaw | None:
        # Var = gain²·2/(fan_in + fan_out), which is gain²/fan_in on a square layer.
        gain = _check_xavier(options, scheme)
        if options["bias"] != "zero":
            return None
        return WeightLaw(sigma_w2=gain**2, sigma_b2=0.0, ensemble="gaussian")

    return law


@register(
    "xavier-uniform",
    description="Glorot uniform: U(±gain·√(6/(fan_in+fan_out)))",
    reference="Glorot & Bengio, AISTATS 2010",
    weight_law=_xavier_law("xavier-uniform"),
    check=_check_xavier,
)
def xavier_uniform(
    ctx: Context, *, gain: float = 1.0, convention: str = "torch", bias: str = "zero"
) -> None:
    """Glorot uniform on every weight slot; biases zero unless ``bias="keep"``.

    Example:
        >>> from isokit.init import apply
        >>> w = apply(nn.Linear(8, 8), "xavier-uniform", seed=0, gain=2.0).weight.detach()
        >>> bool(w.abs().max() <= 2.0 * (6 / 16) ** 0.5)
        True
    """
    _check_xavier(dict(gain=gain, convention=convention, bias=bias), ctx.scheme)
    fill_slots(
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
    weight_law=_xavier_law("xavier-normal"),
    check=_check_xavier,
)
def xavier_normal(
    ctx: Context,
    *,
    gain: float = 1.0,
    variant: str = "torch",
    convention: str = "torch",
    bias: str = "zero",
) -> None:
    """Glorot normal on every weight slot (``variant="tf_truncated"``: Keras' truncated draw).

    Example:
        >>> from isokit.init import apply
        >>> w = apply(nn.Linear(512, 512), "xavier-normal", seed=0).weight.detach()
        >>> round(float(w.var() * 512), 1)
        1.0
    """
    _check_xavier(dict(gain=gain, variant=variant, convention=convention, bias=bias), ctx.scheme)
    fill_slots(
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


# gain² of torch.nn.init.calculate_gain, written squared: the law needs σ_w² = gain² and
# math.sqrt(2.0) ** 2 is 2.0000000000000004, not 2.
_GAIN2 = {
    "linear": lambda a: 1.0,
    "conv1d": lambda a: 1.0,
    "conv2d": lambda a: 1.0,
    "conv3d": lambda a: 1.0,
    "conv_transpose1d": lambda a: 1.0,
    "conv_transpose2d": lambda a: 1.0,
    "conv_transpose3d": lambda a: 1.0,
    "sigmoid": lambda a: 1.0,
    "tanh": lambda a: (5 / 3) ** 2,
    "relu": lambda a: 2.0,
    "selu": lambda a: (3 / 4) ** 2,
    "leaky_relu": lambda a: 2.0 / (1 + a**2),
}


def _check_kaiming(options: Mapping, where: str) -> float:
    check_choice("mode", options["mode"], get_args(FanMode), where=where)
    check_choice("nonlinearity", options["nonlinearity"], get_args(Nonlinearity), where=where)
    check_choice("convention", options["convention"], get_args(FanConvention), where=where)
    check_choice("bias", options["bias"], BIAS_CHOICES, where=where)
    return check_real("a", options["a"], where=where)


def _fill_kaiming(ctx: Context, fill_: Callable[..., Tensor], **options: Any) -> None:
    """Both He schemes: check the options, then ``fill_`` (normal or uniform) every slot."""
    a = _check_kaiming(options, ctx.scheme)
    fill_slots(
        ctx,
        ctx.scheme,
        f"mode={options['mode']} nonlinearity={options['nonlinearity']}",
        lambda t, s: fill_(
            t,
            a,
            mode=options["mode"],
            nonlinearity=options["nonlinearity"],
            convention=options["convention"],
            groups=s.groups,
            generator=ctx.generator,
        ),
        options["bias"],
    )


def _kaiming_law(scheme: str) -> LawFn:
    def law(options: Mapping, *, fan_in: int, bias: bool) -> WeightLaw | None:
        # Var = gain²/fan, with fan_in = fan_out on a square layer whatever the mode.
        a = _check_kaiming(options, scheme)
        if options["bias"] != "zero":
            return None
        sigma_w2 = _GAIN2[options["nonlinearity"]](a)
        return WeightLaw(sigma_w2=sigma_w2, sigma_b2=0.0, ensemble="gaussian")

    return law


@register(
    "kaiming-normal",
    description="He normal: N(0, gain²/fan), fan_in (default) or fan_out",
    reference="He, Zhang, Ren & Sun, ICCV 2015",
    weight_law=_kaiming_law("kaiming-normal"),
    check=_check_kaiming,
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
    """He normal on every weight slot: N(0, gain²/fan).

    Example:
        >>> from isokit.init import apply
        >>> w = apply(nn.Linear(512, 512), "kaiming-normal", seed=0).weight.detach()
        >>> round(float(w.var() * 512), 1)
        2.0
    """
    _fill_kaiming(
        ctx,
        kaiming_normal_,
        mode=mode,
        nonlinearity=nonlinearity,
        a=a,
        convention=convention,
        bias=bias,
    )


@register(
    "kaiming-uniform",
    description="He uniform: U(±√3·gain/√fan), fan_in (default) or fan_out",
    reference="He, Zhang, Ren & Sun, ICCV 2015",
    weight_law=_kaiming_law("kaiming-uniform"),
    check=_check_kaiming,
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
    """He uniform on every weight slot: U(±√3·gain/√fan), variance gain²/fan.

    Example:
        >>> from isokit.init import apply
        >>> model = apply(nn.Linear(512, 512), "kaiming-uniform", seed=0, nonlinearity="tanh")
        >>> w = model.weight.detach()
        >>> round(float(w.var() * 512), 2)
        2.78
    """
    _fill_kaiming(
        ctx,
        kaiming_uniform_,
        mode=mode,
        nonlinearity=nonlinearity,
        a=a,
        convention=convention,
        bias=bias,
    )
