"""Per-layer set-up shared by the free-probability moments (``docs/theory.md`` §3.2–§3.3).

Every moment formula of :mod:`isokit.theory.spectra` and :mod:`isokit.theory.series` needs the
same per-layer ``σ_w²`` and pre-activation variance ``q^l`` (given, from ``q^1`` by the length
map, or the fixed point ``q*``) and ``μ_k(q^l)``; they are computed here once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from isokit.theory import _validate as check
from isokit.theory.activations import Activation, ActLike, get_activation
from isokit.theory.gaussian import _e_phi2, _mu
from isokit.theory.meanfield import _q_star

S1 = {"gaussian": -1.0, "orthogonal": 0.0}  # S_{WWᵀ} = σ_w^{−2}·(1 + s1·z + O(z²)) (§3.1)


@dataclass(frozen=True, kw_only=True)
class Layers:
    """Per-layer inputs of the moment formulas of one network."""

    act: Activation
    sw2: np.ndarray  # per layer
    q: np.ndarray  # per layer pre-activation variance q^l (nan when μ does not depend on q)
    at_fixed_point: bool

    @property
    def depth(self) -> int:
        return len(self.sw2)


def setup_layers(act: ActLike, sw2, sb2, depth, q_profile, q1) -> Layers:
    """Per-layer ``σ_w²`` and ``q^l``: given, from ``q1`` by the length map, or ``q*`` (§3.3)."""
    a = get_activation(act)
    depth = check.integer("depth", depth, minimum=0)
    sw2s = check.variances("sw2", sw2, depth, positive=True)
    sb2s = check.variances("sb2", sb2, depth)
    if q_profile is not None and q1 is not None:
        raise ValueError("give q_profile= or q1=, not both")
    if q_profile is not None:
        qs = np.array([check.variance(f"q_profile[{i}]", q) for i, q in enumerate(q_profile)])
        if len(qs) != depth:
            raise ValueError(f"q_profile has {len(qs)} entries but depth={depth}; give q^1..q^L")
        return Layers(act=a, sw2=sw2s, q=qs, at_fixed_point=False)
    if q1 is not None:
        qs = np.empty(depth)
        q = check.variance("q1", q1)
        for layer in range(depth):
            qs[layer] = q
            if layer + 1 < depth:
                q = check.result("q^l", sw2s[layer + 1] * _e_phi2(a, q) + sb2s[layer + 1])
        return Layers(act=a, sw2=sw2s, q=qs, at_fixed_point=False)
    if depth and (np.ptp(sw2s) > 0 or np.ptp(sb2s) > 0):
        raise ValueError("per-layer sw2/sb2 have no common fixed point; give q_profile= or q1=")
    if depth == 0:
        return Layers(act=a, sw2=sw2s, q=np.empty(0), at_fixed_point=True)
    try:
        q = _q_star(a, float(sw2s[0]), float(sb2s[0]))
    except ValueError:
        if not a.q_free:
            raise
        q = math.nan  # μ_k does not depend on q, so the moments need no fixed point
    qs = np.full(depth, q)
    return Layers(act=a, sw2=sw2s, q=qs, at_fixed_point=True)


def layer_mus(lay: Layers, k: int) -> np.ndarray:
    """``μ_k(q^l)`` per layer; rejects ``μ1 = 0`` (a layer that kills the Jacobian)."""
    q = np.where(np.isnan(lay.q), 1.0, lay.q)
    out = np.array([_mu(lay.act, float(qq), k) for qq in q])
    if k == 1 and np.any(out <= 0):
        raise ValueError(f"μ1 = 0 at some layer for {lay.act.name}: JJᵀ vanishes, m_k = 0")
    return out


def provenance(lay: Layers, tap: str, critical: bool) -> tuple[tuple[str, str], tuple[str, str]]:
    """(tag, citation) of ``m1`` and of ``var``: read in a source only at the fixed point (§3.3)."""
    if not lay.at_fixed_point or tap != "post":
        return ("D", "derived"), ("D", "derived")
    m1_tag = ("S" if lay.act.piecewise_linear else "R", "pennington2017")
    return m1_tag, (("R", "pennington2017") if critical else ("D", "derived"))
