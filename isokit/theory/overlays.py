"""Theory lines for a report: the prediction for a model's layer chain under a weight law.

:func:`overlay` maps a :class:`~isokit.theory.Chain` (what a model kind says about its layers)
and a :class:`~isokit.theory.WeightLaw` (what a scheme says about its weights) to the per-depth
prediction of ``m1``, the scale-free variance ``var`` and the raw variance ``var_raw`` of
``JJᵀ`` (and of the atom at zero where there is one), and :func:`overlay_reason` says why there
is none where it returns ``None``. Three formulas, chosen by the chain (``docs/theory.md`` §7):

- a plain dense chain: the free-probability law of :func:`~isokit.theory.predict_mlp`
  (§3.2–§3.6), any ensemble;
- a plain convolutional chain under a delta-orthogonal law: the same law with the channel
  count as width, which the pooled spectrum follows at small ``L/c`` (§5);
- a residual dense chain with one-layer branches: :func:`~isokit.theory.predict_resnet` (§4),
  which for φ that is not odd predicts the bulk of the spectrum (without its largest
  eigenvalue) and says so in :attr:`Overlay.statistic`.

Every formula is a large-width limit: where depth over width ``L/N`` exceeds
:data:`MAX_DEPTH_OVER_WIDTH` the measured moments leave it (§6) and there is no line, except
for exact isometries (linear layers with orthogonal weights), which hold at any width. It knows
no scheme names and no model classes.

Example:
    >>> chain = Chain(layer="dense", activation="tanh", width=64, in_width=64, depth=32,
    ...               fan_in=64, bias=True, taps=[f"acts.{i}" for i in range(32)])
    >>> law = WeightLaw(sigma_w2=1.0, sigma_b2=0.0, ensemble="orthogonal")
    >>> overlay(chain, law) is None
    True
    >>> overlay_reason(chain, law)  # doctest: +ELLIPSIS
    'depth over width L/N = 32/64 = 0.5 > 0.25: ... (docs/theory.md §6)'
    >>> 32 / 64 > MAX_DEPTH_OVER_WIDTH
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from isokit.theory import _validate as check
from isokit.theory.activations import ACTIVATIONS, get_activation
from isokit.theory.law import Chain, WeightLaw
from isokit.theory.prediction import CITATIONS, Prediction, weakest_tag
from isokit.theory.resnet import predict_resnet
from isokit.theory.spectra import predict_mlp

__all__ = ["MAX_DEPTH_OVER_WIDTH", "Overlay", "overlay", "overlay_reason"]

#: Beyond this depth over width the free-probability moments are not a prediction (§6 rule 1).
MAX_DEPTH_OVER_WIDTH = 0.25

#: The :class:`Overlay` fields that are lines over depth, in the order a caller draws them.
LINES = ("m1", "var", "var_raw", "zero_fraction")


@dataclass(frozen=True, kw_only=True)
class Overlay:
    """A theory line over tap depths ``1..L``.

    Attributes:
        depth: tap depths the prediction covers.
        m1: predicted mean squared singular value per depth.
        var: predicted scale-free variance ``m2/m1² − 1`` per depth.
        var_raw: predicted raw variance ``m2 − m1²`` per depth, or ``None`` where no probe
            statistic measures it (the bulk of a residual chain).
        zero_fraction: predicted atom at zero per depth (piecewise-linear φ), or ``None``.
        statistic: for each line above that is not ``None``, the probe statistic it is to be
            compared with (``docs/probes.md §5``): ``{"m1": "m1", "var": "var", ...}``, or
            ``"m1_bulk"``/``"var_bulk"`` where the formula describes the spectrum without its
            largest eigenvalue. Read-only.
        activation: the chain's activation.
        weights: the ensemble the prediction assumes, ``"gaussian"`` or ``"orthogonal"`` (a
            delta-orthogonal law acts on a dense layer, and on each position of a convolution,
            as an orthogonal matrix).
        law: the weight law predicted for (its ``sigma_w2`` and ``sigma_b2``); a caller names
            the line from these fields in its own number format.
        residual_scale: the branch multiplier ``a`` of a residual chain, ``None`` for a plain one.
        section: the section of ``docs/theory.md`` whose formula the line draws.
        citation: the reference the formula comes from.
        tag: the provenance tag of the weakest part (see :data:`isokit.theory.TAGS` and the
            introduction of ``docs/theory.md``).

    Example:
        >>> line = Overlay(depth=np.arange(1, 3), m1=np.ones(2), var=np.zeros(2),
        ...                var_raw=np.zeros(2), statistic={"m1": "m1", "var": "var",
        ...                "var_raw": "var_raw"}, activation="linear", weights="orthogonal",
        ...                law=WeightLaw(sigma_w2=1.0, sigma_b2=0.0, ensemble="orthogonal"),
        ...                section="§3.2", citation="derived", tag="D")
        >>> line.var.shape, line.law.sigma_w2, line.statistic["var"], line.bulk
        ((2,), 1.0, 'var', False)
    """

    depth: np.ndarray
    m1: np.ndarray
    var: np.ndarray
    var_raw: np.ndarray | None = None
    zero_fraction: np.ndarray | None = None
    statistic: Mapping[str, str]
    activation: str
    weights: str
    law: WeightLaw
    residual_scale: float | None = None
    section: str
    citation: str
    tag: str

    def __post_init__(self) -> None:
        lines = {name for name in LINES if getattr(self, name) is not None}
        if set(self.statistic) != lines:
            raise ValueError(
                f"Overlay.statistic must name the probe statistic of each line "
                f"({', '.join(sorted(lines))}), got {dict(self.statistic)!r}"
            )
        object.__setattr__(self, "statistic", MappingProxyType(dict(self.statistic)))

    @property
    def bulk(self) -> bool:
        """Whether the lines describe the spectrum without its largest eigenvalue."""
        return any(name.endswith("_bulk") for name in self.statistic.values())


def _check_args(chain: object, law: object, input_second_moment: object) -> None:
    if not isinstance(chain, Chain):
        raise TypeError(f"chain must be an isokit.theory.Chain, got {chain!r}")
    if law is not None and not isinstance(law, WeightLaw):
        raise TypeError(f"law must be an isokit.theory.WeightLaw or None, got {law!r}")
    check.variance("input_second_moment", input_second_moment)


def _exact_isometry(chain: Chain, law: WeightLaw) -> bool:
    """Linear layers with orthogonal weights: every singular value is ``σ_w^L`` at any width."""
    return (
        chain.residual_scale is None
        and chain.activation == "linear"
        and law.ensemble in ("orthogonal", "delta-orthogonal")
    )


def _structure_reason(chain: Chain, law: WeightLaw) -> str | None:
    """Why no formula describes the chain's layer structure under ``law``, or ``None``."""
    if chain.layer == "conv":
        if chain.residual_scale is not None:
            return "no theory describes residual convolutional chains"
        if law.ensemble != "delta-orthogonal":
            return (
                f"the convolution kernels are {law.ensemble}, and only delta-orthogonal kernels "
                "make a convolution act on each position as a fully connected layer "
                "(docs/theory.md §5)"
            )
        return None
    if chain.residual_scale is None:
        return None
    if chain.branch_layers != 1:
        return (
            f"the residual branches have {chain.branch_layers} layers, and the residual theory "
            "covers one-layer branches x + a·φ(Wx + b) only (docs/theory.md §4)"
        )
    act = get_activation(chain.activation)
    if not (act.odd or act.q_free):
        return (
            f"the branch variances of a residual {act.name} chain have no closed recursion "
            "(odd φ, or φ whose μ_k do not depend on q, only; docs/theory.md §4)"
        )
    return None


def overlay_reason(
    chain: Chain,
    law: WeightLaw | None,
    *,
    taps: Sequence[str] | None = None,
    input_second_moment: float = 1.0,
) -> str | None:
    """Why :func:`overlay` draws no line for ``chain`` under ``law``; ``None`` where it does.

    Takes the arguments of :func:`overlay` and checks them the same way. A reason is one
    sentence without a final period, e.g. that the scheme draws no i.i.d. law, that the input
    width differs from the width, that the probe's taps are not the chain's, or that ``L/N``
    exceeds :data:`MAX_DEPTH_OVER_WIDTH`.

    Example:
        >>> chain = Chain(layer="dense", activation="relu", width=64, in_width=32, depth=4,
        ...               fan_in=64, bias=True, taps=tuple(f"acts.{i}" for i in range(4)))
        >>> overlay_reason(chain, WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian"))
        'the input width 32 differs from the width 64: the theory needs equal widths'
        >>> overlay_reason(chain, None)  # doctest: +ELLIPSIS
        'the scheme draws its weights from no i.i.d. law (...)'
    """
    _check_args(chain, law, input_second_moment)
    if law is None:
        return (
            "the scheme draws its weights from no i.i.d. law (identity-like, deterministic or "
            "data-dependent weights, or biases it keeps)"
        )
    if chain.activation not in ACTIVATIONS:
        known = ", ".join(ACTIVATIONS)
        return (
            f"the theory has no mean-field formulas for the activation {chain.activation!r} "
            f"(it knows {known})"
        )
    if chain.in_width != chain.width:
        return (
            f"the input width {chain.in_width} differs from the width {chain.width}: the theory "
            "needs equal widths"
        )
    if taps is not None and tuple(taps[: chain.depth]) != chain.taps:
        return (
            f"the probe's taps ({_names(taps)}) do not start with the chain's taps "
            f"({_names(chain.taps)})"
        )
    reason = _structure_reason(chain, law)
    if reason is not None:
        return reason
    ratio = chain.depth / chain.width
    if ratio > MAX_DEPTH_OVER_WIDTH and not _exact_isometry(chain, law):
        return (
            f"depth over width L/N = {chain.depth}/{chain.width} = {ratio:.3g} > "
            f"{MAX_DEPTH_OVER_WIDTH:g}: at finite width the measured m1 and variance leave the "
            "free-probability limit (docs/theory.md §6)"
        )
    return None


def _names(taps: Sequence[str]) -> str:
    shown = ", ".join(map(str, list(taps)[:3]))
    return f"{shown}, …" if len(taps) > 3 else shown or "none"


def overlay(
    chain: Chain,
    law: WeightLaw | None,
    *,
    taps: Sequence[str] | None = None,
    input_second_moment: float = 1.0,
) -> Overlay | None:
    """The theory prediction for ``chain`` with weights drawn from ``law``, or ``None``.

    ``None`` exactly where :func:`overlay_reason` gives a reason (the module docstring lists
    the three formulas and where each applies). ``law=None`` (a scheme whose weights are not
    i.i.d. draws) gives ``None``. ``taps``, the probe's tap names, must start with
    ``chain.taps`` (the head may follow). ``input_second_moment`` is ``E[x_i²]`` of the probe
    inputs, which sets ``q¹ = σ_w²·E[x_i²] + σ_b²`` (plain chains) or ``P⁰`` (residual ones).

    Example:
        >>> chain = Chain(layer="dense", activation="relu", width=64, in_width=64, depth=4,
        ...               fan_in=64, bias=True, taps=tuple(f"acts.{i}" for i in range(4)))
        >>> law = WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian")  # He init
        >>> line = overlay(chain, law)
        >>> line.m1, line.var  # critical: m1 = 1, var = 2l
        (array([1., 1., 1., 1.]), array([2., 4., 6., 8.]))
        >>> overlay(chain, None) is None  # no i.i.d. law, no line
        True
    """
    if overlay_reason(chain, law, taps=taps, input_second_moment=input_second_moment):
        return None
    assert law is not None  # overlay_reason gives a reason for law=None
    moment = float(input_second_moment)
    # A delta-orthogonal law acts on a dense layer (and per position) as an orthogonal matrix.
    weights = "gaussian" if law.ensemble == "gaussian" else "orthogonal"
    sw2, sb2 = law.sigma_w2, law.sigma_b2
    if chain.residual_scale is not None:
        pred = predict_resnet(
            act=chain.activation,
            a=chain.residual_scale,
            sw2=sw2,
            sb2=sb2,
            depth=chain.depth,
            weights=weights,
            x0_sq=moment,
        )
        lines, section = {"m1": pred.m1, "var": pred.var, "var_raw": pred.var_raw}, "§4"
    else:
        pred = predict_mlp(
            act=chain.activation,
            sw2=sw2,
            sb2=sb2,
            depth=chain.depth,
            weights=weights,
            width=chain.width,
            q1=sw2 * moment + sb2,
        )
        lines = {"m1": pred.m1, "var": pred.var, "var_raw": pred.var_raw}
        lines["zero_fraction"] = pred.zero_fraction
        section = "§3.2" if chain.layer == "dense" else "§5"
    return _line(chain, law, weights, pred.depths, lines, section)


def _line(
    chain: Chain,
    law: WeightLaw,
    weights: str,
    depths: np.ndarray,
    lines: dict[str, Prediction | None],
    section: str,
) -> Overlay:
    # A line without a probe statistic to compare with (the bulk's raw variance) is left out.
    kept = {k: p for k, p in lines.items() if p is not None and p.statistic is not None}
    m1, var = kept["m1"], kept["var"]
    if section == "§5":  # the fully connected law applied per position of a convolution
        tag, cite = "D", "derived"
    else:
        tag, cite = weakest_tag(m1.tag, var.tag), var.cite
    return Overlay(
        depth=np.asarray(depths),
        **{name: np.asarray(p.value, dtype=float) for name, p in kept.items()},
        statistic={name: p.statistic for name, p in kept.items()},
        activation=chain.activation,
        weights=weights,
        law=law,
        residual_scale=chain.residual_scale,
        section=section,
        citation=CITATIONS.get(cite, cite),
        tag=tag,
    )
