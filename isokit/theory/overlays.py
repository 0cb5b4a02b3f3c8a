"""Theory lines for a report: the prediction for a model's layer chain under a weight law.

:func:`overlay` maps a :class:`~isokit.theory.Chain` (what a model kind says about its layers)
and a :class:`~isokit.theory.WeightLaw` (what a scheme says about its weights) to the per-depth
free-probability prediction of ``m1`` and of the scale-free variance ``v`` of ``JJᵀ``
(:func:`~isokit.theory.predict_mlp`, ``docs/theory.md`` §3.2–§3.3). It knows no scheme names
and no model classes, and returns ``None`` wherever no theory in :mod:`isokit.theory` describes
the pair exactly — no law (identity-like or data-dependent schemes), no chain (residual
networks, transformers), unequal widths, convolutions other than linear delta-orthogonal ones —
so a report never draws a curve that does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isokit.theory import _validate as check
from isokit.theory.activations import ACTIVATIONS
from isokit.theory.law import Chain, WeightLaw
from isokit.theory.prediction import CITATIONS
from isokit.theory.spectra import predict_mlp

__all__ = ["Overlay", "overlay"]


@dataclass(frozen=True, kw_only=True)
class Overlay:
    """A theory line over tap depths ``1..L``.

    Attributes:
        depth: tap depths the prediction covers.
        m1: predicted mean squared singular value per depth.
        var: predicted scale-free variance ``m2/m1² − 1`` per depth.
        activation: the chain's activation.
        weights: the ensemble the prediction assumes, ``"gaussian"`` or ``"orthogonal"`` (a
            delta-orthogonal law acts on a dense layer as an orthogonal matrix).
        law: the weight law predicted for (its ``sigma_w2`` and ``sigma_b2``); a caller names
            the line from these fields in its own number format.
        citation: the reference the formula comes from.
        tag: the provenance tag of the weakest part (``"R"`` or ``"D"``, see
            :data:`isokit.theory.TAGS` and the introduction of ``docs/theory.md``).

    Example:
        >>> line = Overlay(depth=np.arange(1, 3), m1=np.ones(2), var=np.zeros(2),
        ...                activation="linear", weights="orthogonal",
        ...                law=WeightLaw(sigma_w2=1.0, sigma_b2=0.0, ensemble="orthogonal"),
        ...                citation="derived", tag="D")
        >>> line.var.shape, line.law.sigma_w2
        ((2,), 1.0)
    """

    depth: np.ndarray
    m1: np.ndarray | None
    var: np.ndarray | None
    activation: str
    weights: str
    law: WeightLaw
    citation: str
    tag: str


def _applies(chain: Chain, law: WeightLaw) -> bool:
    """Whether the fully connected theory describes ``chain`` under ``law`` exactly."""
    if chain.in_width != chain.width or chain.activation not in ACTIVATIONS:
        return False
    if chain.layer == "dense":
        # Products of i.i.d. matrices follow the Gaussian free law at large width whatever the
        # entry distribution; a delta-orthogonal law on a dense layer is an orthogonal matrix.
        return True
    # A linear delta-orthogonal convolution is an exact isometry up to the gain (§5). With a
    # nonlinearity the §5 law holds per position only: the whole-input Jacobian pools positions
    # whose gains differ, which raises v well above the per-position prediction
    # (tests/theory/test_probe_agreement.py), so no line; biases would break the isometry.
    return law.ensemble == "delta-orthogonal" and chain.activation == "linear" and law.sigma_b2 == 0


def overlay(
    chain: Chain,
    law: WeightLaw | None,
    *,
    taps: list[str] | tuple[str, ...] | None = None,
    input_second_moment: float = 1.0,
) -> Overlay | None:
    """The theory prediction for ``chain`` with weights drawn from ``law``, or ``None``.

    Applies to a dense chain whose input width equals its hidden width (the setting of the
    theory) under any law (Gaussian: i.i.d. entries, whose products follow the Marchenko–Pastur
    law at large width whatever the entry distribution; orthogonal), and to a linear conv chain
    with ``in_width == width`` under a bias-free delta-orthogonal law, an exact isometry up to
    the gain (§5). ``law=None`` (a scheme whose weights are not i.i.d. draws) gives ``None``.
    ``taps``, the probe's tap names, must start with ``chain.taps`` (the post-activations; the
    head may follow). ``input_second_moment`` is ``E[x_i²]`` of the probe inputs, which sets
    ``q¹ = σ_w²·E[x_i²] + σ_b²``.

    Example:
        >>> chain = Chain(layer="dense", activation="relu", width=64, in_width=64, depth=4,
        ...               fan_in=64, bias=True, taps=tuple(f"acts.{i}" for i in range(4)))
        >>> law = WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian")  # He init
        >>> line = overlay(chain, law)
        >>> line.m1, line.var  # critical: m1 = 1, v = 2l
        (array([1., 1., 1., 1.]), array([2., 4., 6., 8.]))
        >>> overlay(chain, None) is None  # no i.i.d. law, no line
        True
    """
    if not isinstance(chain, Chain):
        raise TypeError(f"chain must be an isokit.theory.Chain, got {chain!r}")
    if law is not None and not isinstance(law, WeightLaw):
        raise TypeError(f"law must be an isokit.theory.WeightLaw or None, got {law!r}")
    moment = check.variance("input_second_moment", input_second_moment)
    if law is None or not _applies(chain, law):
        return None
    if taps is not None and tuple(taps[: chain.depth]) != chain.taps:
        return None
    sw2, sb2 = law.sigma_w2, law.sigma_b2
    # A delta-orthogonal law acts on the dense centre tap as an orthogonal matrix.
    weights = "gaussian" if law.ensemble == "gaussian" else "orthogonal"
    pred = predict_mlp(
        act=chain.activation,
        sw2=sw2,
        sb2=sb2,
        depth=chain.depth,
        weights=weights,
        width=chain.width,
        q1=sw2 * moment + sb2,
    )
    tag = "D" if "D" in (pred.m1.tag, pred.v.tag) else pred.v.tag
    return Overlay(
        depth=np.asarray(pred.depths),
        m1=np.asarray(pred.m1.value, dtype=float),
        var=np.asarray(pred.v.value, dtype=float),
        activation=chain.activation,
        weights=weights,
        law=law,
        citation=CITATIONS.get(pred.v.cite, pred.v.cite),
        tag=tag,
    )
