"""The IDInit model recipe (``docs/idinit.md`` §7–§8): identity everywhere, IDIZ on branch ends.

1. Every layer on a residual branch gets IDI_τ (IDIC_τ for convolutions) except the branch's
   last layer, which gets IDIZ_ε (IDIZC_ε).
2. Every other weight layer (stem, projection shortcuts, transitions, head) is main stem and
   gets IDI_τ / IDIC_τ.
3. Biases 0, norms γ = 1 and β = 0, embeddings kept; loosening (τ-only, std 1e-6) on IDI
   layers only; attention per projection (q, k, v IDI; the output projection IDIZ).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

from isokit.init.checks import check_choice, check_fits, check_per_layer, check_real
from isokit.init.common import (
    BIAS_CHOICES,
    check_head_name,
    fill_on_cpu,
    finish_biases,
    finish_norms,
    per_layer,
    report_slot,
)
from isokit.init.identity import (
    Contract,
    ConvMode,
    Depthwise,
    FlattenOrder,
    IdizMode,
    Loose,
    SingleInput,
    idi_,
    idiz_,
    loosening_representable,
    unused_input_channels,
)
from isokit.init.layers import WeightSlot, embedding_modules, head_layer
from isokit.init.registry import Context, register

_CHOICES = {
    "contract": get_args(Contract),
    "conv_mode": get_args(ConvMode),
    "flatten_order": get_args(FlattenOrder),
    "depthwise": get_args(Depthwise),
    "residual_last": get_args(IdizMode),
    "idiz_single_input": get_args(SingleInput),
    "head": ("idi", "zero", "keep"),
    "embeddings": ("keep", "idi"),
    "bias": BIAS_CHOICES,
}


def _check_options(ctx: Context, options: dict) -> None:
    """Check every option before the model changes, naming the scheme in the message."""
    _check_model_free(options, ctx.scheme)
    check_head_name(ctx, options["head_name"])


def _check_model_free(options: Mapping, where: str) -> None:
    """Every check that needs no model (all but ``head_name``'s layer)."""
    for name, choices in _CHOICES.items():
        check_choice(name, options[name], choices, where=where)
    check_choice("loose", options["loose"], get_args(Loose), where=where, allow_none=True)
    check_per_layer("tau", options["tau"], where=where)
    check_real("eps", options["eps"], where=where)
    check_real("loose_std", options["loose_std"], where=where, minimum=0.0)
    check_real("last_norm_gamma", options["last_norm_gamma"], where=where)


@register(
    "idinit",
    description="IDInit: padded identity IDI_τ on every layer, zero-preserving IDIZ_ε on the "
    "last layer of each residual branch, patch-maintain convolutions",
    reference="Pan et al., ICLR 2025 (arXiv 2503.04626)",
    check=_check_model_free,
)
def idinit(
    ctx: Context,
    *,
    tau: float | dict[str, float] = 1.0,
    eps: float = 1e-6,
    contract: str = "truncate",
    loose: str | None = "tau",
    loose_std: float = 1e-6,
    conv_mode: str = "patch",
    flatten_order: str = "torch",
    depthwise: str = "centre",
    residual_last: str = "idiz",
    idiz_single_input: str = "alternate",
    head: str = "idi",
    head_name: str | None = None,
    embeddings: str = "keep",
    last_norm_gamma: float = 1.0,
    bias: str = "zero",
) -> None:
    """Apply IDInit; every option is one of the uncertain points of ``docs/idinit.md`` §9.

    Options (defaults first): ``tau`` (1.0, or a ``{glob: τ}`` map per layer), ``eps`` (1e-6),
    ``contract`` ("truncate" | "tile"), ``loose`` ("tau" | "all" | None), ``loose_std`` (1e-6),
    ``conv_mode`` ("patch" | "channel"), ``flatten_order`` ("torch" | "tap"), ``depthwise``
    ("centre" | "patch"), ``residual_last`` ("idiz" | "zero" | "idi_eps"),
    ``idiz_single_input`` ("alternate" | "plain"), ``head`` ("idi" | "zero" | "keep"),
    ``head_name`` (the classifier's module name if not ``fc``/``head``/``classifier``),
    ``embeddings`` ("keep" | "idi"), ``last_norm_gamma`` (1.0 | 0.0), ``bias`` ("zero" |
    "keep"). Modules that own parameters IDInit does not cover (ConvTranspose, RNN, custom
    layers) are kept and reported; ``apply(..., unsupported="raise")`` refuses them.

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import ResNet
        >>> model = apply(ResNet(depth=8, width=4), "idinit", seed=0, loose=None)
        >>> f"{model.layer1[0].conv2.weight.abs().max().item():.1e}"  # IDIZC_ε, branch end
        '1.0e-06'
    """
    _check_options(ctx, dict(locals()))  # as the first statement, locals() is the options
    model = ctx.model
    roles = ctx.roles()
    slots = ctx.slots
    head_module = head_name or head_layer(model, slots, set(roles))
    idi_options = dict(
        contract=contract,
        conv_mode=conv_mode,
        flatten_order=flatten_order,
        depthwise=depthwise,
        loose=loose,
        loose_std=loose_std,
    )
    for slot in slots:
        t = slot.tensor
        if slot.module == head_module and head != "idi":
            if head == "zero":
                t.zero_()
            report_slot(ctx, slot, "zero" if head == "zero" else "kept", "head")
        elif roles.get(slot.module) == "last":
            idiz_(
                t,
                eps,
                mode=residual_last,
                single_input=idiz_single_input,
                flatten_order=flatten_order,
                groups=slot.groups,
            )
            rule = {"idiz": "idiz", "zero": "zero", "idi_eps": "idi-eps"}[residual_last]
            if slot.kind == "conv" and residual_last == "idiz":
                rule = "idizc"
            report_slot(ctx, slot, rule, f"eps={eps:g}")
        else:
            tau_l = per_layer("tau", tau, layer=slot.module, default=1.0)
            _idi_slot(ctx, slot, tau_l, idi_options)
    finish_biases(ctx, bias)
    _finish_norms(ctx, last_norm_gamma)
    _finish_embeddings(ctx, embeddings)


def _idi_slot(ctx: Context, slot: WeightSlot, tau: float, idi_options: dict) -> None:
    """IDI_τ (IDIC_τ) on one main-stem or non-last branch slot, with its report row."""
    t = slot.tensor
    fill_on_cpu(
        t, lambda w: idi_(w, tau, groups=slot.groups, generator=ctx.generator, **idi_options)
    )
    rule = "idi"
    if slot.kind == "conv":
        depthwise_centre = t.shape[1] == 1 and idi_options["depthwise"] == "centre"
        channel = idi_options["conv_mode"] == "channel" or depthwise_centre
        rule = "idic-channel" if channel else "idic-patch"
    flags = []
    unused = unused_input_channels(t, groups=slot.groups)
    if unused:
        n_in = t.shape[1] * slot.groups
        flags.append(f"unused input channels: {unused}/{n_in}")
    loose, loose_std = idi_options["loose"], idi_options["loose_std"]
    if loose is not None and not loosening_representable(t.dtype, tau, loose_std):
        flags.append(f"dtype {t.dtype} too coarse for loosening std {loose_std:g}")
    report_slot(ctx, slot, rule, f"tau={tau:g} loose={loose}", flags)


def _finish_norms(ctx: Context, last_norm_gamma: float) -> None:
    """Norms at γ = 1, β = 0, except γ = ``last_norm_gamma`` on the norms ending a branch."""
    gamma = {b.norm: float(last_norm_gamma) for b in ctx.branches if b.norm is not None}
    for name in gamma:
        weight = getattr(ctx.model.get_submodule(name), "weight", None)
        if weight is not None:
            check_fits("last_norm_gamma", gamma[name], weight.dtype, where=ctx.scheme)
    finish_norms(ctx, gamma)


def _finish_embeddings(ctx: Context, embeddings: str) -> None:
    first = {id(p): n for n, p in ctx.model.named_parameters()}  # a tied table's report name
    for name in embedding_modules(ctx.model):
        weight = ctx.model.get_submodule(name).weight
        if embeddings == "idi":
            fill_on_cpu(weight, lambda w: idi_(w, 1.0))
        ctx.report.add(
            first[id(weight)],
            weight.shape,
            "idi" if embeddings == "idi" else "kept",
            "embedding",
        )
