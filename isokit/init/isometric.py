"""Model-level isometric schemes: orthogonal, delta-orthogonal and the zero-padded identity.

Each writes every weight slot (attention per projection), zeroes biases unless
``bias="keep"``, sets norms to γ = 1, β = 0 and keeps embeddings (``docs/baselines.md`` §0).
The orthogonal two register their weight law (:class:`isokit.theory.WeightLaw`): the scaled
Haar ensemble, with σ_w² = gain²; the identity draws nothing and has none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from isokit.init.checks import OptionTypeError, check_bool, check_choice, check_real
from isokit.init.common import BIAS_CHOICES, fill_slots
from isokit.init.orthogonal import delta_orthogonal_, dirac_, eye_, orthogonal_
from isokit.init.registry import Context, LawFn, register
from isokit.theory.law import WeightLaw


def _gain(gain: float | str, where: str) -> float:
    if isinstance(gain, str):
        if gain != "relu":
            raise OptionTypeError(
                "gain", f"must be a real number or 'relu', got {gain!r} (str)", where=where
            )
        return math.sqrt(2.0)
    return check_real("gain", gain, where=where)


def _check_orthogonal(options: Mapping, where: str) -> float:
    """The model-free check of orthogonal's and delta-orthogonal's options; the gain."""
    gain = _gain(options["gain"], where)
    check_choice("bias", options["bias"], BIAS_CHOICES, where=where)
    if "allow_contracting" in options:
        check_bool("allow_contracting", options["allow_contracting"], where=where)
    return gain


def _check_identity(options: Mapping, where: str) -> None:
    check_real("scale", options["scale"], where=where)
    check_choice("bias", options["bias"], BIAS_CHOICES, where=where)


def _orthogonal_law(scheme: str, ensemble: str) -> LawFn:
    def law(options: Mapping, *, fan_in: int, bias: bool) -> WeightLaw | None:
        gain = _check_orthogonal(options, scheme)
        if options["bias"] != "zero":
            return None
        return WeightLaw(sigma_w2=gain**2, sigma_b2=0.0, ensemble=ensemble)

    return law


@register(
    "orthogonal",
    description="Haar (semi-)orthogonal weights times gain; conv kernels flattened",
    reference="Saxe, McClelland & Ganguli, ICLR 2014",
    weight_law=_orthogonal_law("orthogonal", "orthogonal"),
    check=_check_orthogonal,
)
def orthogonal(ctx: Context, *, gain: float | str = 1.0, bias: str = "zero") -> None:
    """Haar (semi-)orthogonal weights times ``gain`` (``"relu"`` for √2).

    Example:
        >>> from isokit.init import apply
        >>> w = apply(torch.nn.Linear(4, 4), "orthogonal", seed=0, gain="relu").weight.double()
        >>> torch.allclose(w @ w.T, 2 * torch.eye(4, dtype=torch.float64), atol=1e-6)
        True
    """
    g = _gain(gain, ctx.scheme)
    check_choice("bias", bias, BIAS_CHOICES, where=ctx.scheme)
    fill_slots(
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
    # Linear layers get plain orthogonal weights: the theory reads this ensemble as orthogonal
    # on dense chains and as the centre-tap law on convolutions.
    weight_law=_orthogonal_law("delta-orthogonal", "delta-orthogonal"),
    check=_check_orthogonal,
)
def delta_orthogonal(
    ctx: Context, *, gain: float | str = 1.0, allow_contracting: bool = False, bias: str = "zero"
) -> None:
    """Delta-orthogonal convolutions (orthogonal centre tap), orthogonal Linear layers.

    Example:
        >>> from isokit.init import apply
        >>> conv = apply(torch.nn.Conv2d(4, 4, 3, padding=1), "delta-orthogonal", seed=0)
        >>> conv.weight[:, :, 0, 0].abs().sum().item()
        0.0
    """
    g = _gain(gain, ctx.scheme)
    check_bool("allow_contracting", allow_contracting, where=ctx.scheme)
    check_choice("bias", bias, BIAS_CHOICES, where=ctx.scheme)

    def fill(t: torch.Tensor, s) -> None:
        if s.kind == "conv":
            delta_orthogonal_(
                t, g, groups=s.groups, allow_contracting=allow_contracting, generator=ctx.generator
            )
        else:
            orthogonal_(t, g, generator=ctx.generator)

    fill_slots(ctx, "delta-orthogonal", f"gain={g:g}", fill, bias)


@register(
    "identity",
    description="zero-padded identity: torch eye_ / dirac_ (times scale); the baseline IDI pads "
    "by repetition instead",
    reference="Le, Jaitly & Hinton 2015; Zagoruyko & Komodakis 2017",
    check=_check_identity,
)
def identity(ctx: Context, *, scale: float = 1.0, bias: str = "zero") -> None:
    """Zero-padded identity (``eye_`` / ``dirac_``) times ``scale``.

    Example:
        >>> from isokit.init import apply
        >>> apply(torch.nn.Linear(2, 3), "identity", seed=0, scale=0.5).weight.tolist()
        [[0.5, 0.0], [0.0, 0.5], [0.0, 0.0]]
    """
    check_real("scale", scale, where=ctx.scheme)
    check_choice("bias", bias, BIAS_CHOICES, where=ctx.scheme)

    def fill(t: torch.Tensor, s) -> None:
        if s.kind == "conv":
            dirac_(t, s.groups, scale=scale)
        else:
            eye_(t, scale=scale)

    fill_slots(ctx, "identity", f"scale={scale:g}", fill, bias)
