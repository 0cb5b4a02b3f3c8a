"""The theory's atom at zero across depth for a plain chain (``docs/theory.md`` §3.6).

With a piecewise-linear activation whose derivative vanishes on part of its range (ReLU), every
layer's ``D_l`` zeroes a fraction ``1 − p`` of the units, and ``J_l = D_l W_l ⋯ D_1 W_1`` loses
rank: :func:`~isokit.theory.zero_atom` predicts the mass of ``J_lJ_lᵀ`` at ``λ = 0`` at depth
``l`` and width ``N``. :func:`zero_atom_line` gives it at every tap of a :class:`Chain`, the
line a report draws beside the measured ``zero_fraction`` (or ``1 −`` it beside
``rank_fraction``). It needs weights drawn at random, layer by layer (any
:class:`WeightLaw`), so that each layer switches off its own units; it does not depend on the
law otherwise, since for centred pre-activations ``p`` is fixed by the activation alone.
Identity-like weights switch off the same units at every layer and keep the atom at ``1 − p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isokit.theory.activations import ACTIVATIONS, get_activation
from isokit.theory.law import Chain, WeightLaw
from isokit.theory.piecewise_linear import zero_atom
from isokit.theory.prediction import CITATIONS

__all__ = ["ZeroAtomLine", "zero_atom_line"]


@dataclass(frozen=True, kw_only=True)
class ZeroAtomLine:
    """The predicted zero fraction of ``J_l`` over tap depths ``1..L``.

    Attributes:
        depth: tap depths.
        zero_fraction: predicted mass at ``λ = 0`` per depth (compare the probe's
            ``zero_fraction``).
        active_fraction: ``p``, the probability that a unit's derivative is non-zero.
        width: ``N``, the hidden width of the finite-width correction.
        citation: where the formula comes from.
        tag: provenance (``"D"``: derived for isokit, a finite-width heuristic).

    Example:
        >>> line = ZeroAtomLine(depth=np.arange(1, 3), zero_fraction=np.array([0.5, 0.55]),
        ...                     active_fraction=0.5, width=64, citation="derived", tag="D")
        >>> round(float(1 - line.zero_fraction[-1]), 6)  # the rank fraction it predicts
        0.45
    """

    depth: np.ndarray
    zero_fraction: np.ndarray
    active_fraction: float
    width: int
    citation: str
    tag: str


def _constant_active_fraction(activation: str) -> float | None:
    """``p`` when it does not depend on the pre-activation variance (ReLU: ½), else ``None``."""
    if activation not in ACTIVATIONS:
        return None
    fraction = get_activation(activation).active_fraction
    if fraction is None:
        return None
    p = fraction(1.0)
    return p if all(fraction(q) == p for q in (0.25, 4.0)) else None


def zero_atom_line(
    chain: Chain, law: WeightLaw | None, *, taps: list[str] | tuple[str, ...] | None = None
) -> ZeroAtomLine | None:
    """The theory's zero atom at every depth of ``chain``, or ``None`` where it has none.

    Applies to a plain dense chain with ``in_width == width`` whose activation zeroes a fixed
    fraction ``1 − p > 0`` of the units (ReLU), with weights drawn from a ``law``. Linear and
    smooth activations have no atom; residual chains keep full rank through the identity path;
    ``law=None`` (weights that are not random draws) gives ``None``; ``taps`` (the probe's tap
    names) must start with ``chain.taps``.

    Example:
        >>> chain = Chain(layer="dense", activation="relu", width=64, in_width=64, depth=3,
        ...               fan_in=64, bias=True, taps=("a.0", "a.1", "a.2"))
        >>> he = WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian")
        >>> line = zero_atom_line(chain, he)
        >>> float(line.zero_fraction[0]), bool(line.zero_fraction[2] > 0.5)  # grows with depth
        (0.5, True)
        >>> zero_atom_line(chain, None)  # identity-like weights: the same units off throughout
    """
    if not isinstance(chain, Chain):
        raise TypeError(f"chain must be an isokit.theory.Chain, got {chain!r}")
    if law is not None and not isinstance(law, WeightLaw):
        raise TypeError(f"law must be an isokit.theory.WeightLaw or None, got {law!r}")
    if law is None:
        return None
    plain = chain.residual_scale is None and chain.layer == "dense"
    if not plain or chain.in_width != chain.width:
        return None
    if taps is not None and tuple(taps[: chain.depth]) != chain.taps:
        return None
    p = _constant_active_fraction(chain.activation)
    if p is None or not p < 1:
        return None
    values = [zero_atom(p=p, width=chain.width, depth=lvl) for lvl in range(1, chain.depth + 1)]
    return ZeroAtomLine(
        depth=np.arange(1, chain.depth + 1),
        zero_fraction=np.array([v.value for v in values], dtype=float),
        active_fraction=p,
        width=chain.width,
        citation=CITATIONS.get(values[-1].cite, values[-1].cite),
        tag=values[-1].tag,
    )
