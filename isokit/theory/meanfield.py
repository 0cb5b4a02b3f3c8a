"""Mean-field signal propagation: the length map, its fixed point and its slopes.

Formulas of ``docs/theory.md`` §1 (``z ~ N(0, 1)``):

- length map ``q^l = σ_w²·E φ(√q^{l−1}·z)² + σ_b²`` and its fixed point ``q*`` [R: Poole et al.
  2016; Schoenholz et al. 2017];
- ``χ1 = σ_w²·μ1(q*)`` [R: Pennington et al. 2017; S] and ``χ_q = σ_w²·E[φ'² + φ·φ'']`` (the slope
  of the length map, by Stein's lemma) [R: Schoenholz et al. 2017; D].

The correlation map and the depth scales live in :mod:`isokit.theory.correlation`, the critical
line ``χ1 = 1`` in :mod:`isokit.theory.criticality`. Integrals use closed forms from
:mod:`isokit.theory.activations` when the activation has them, else the quadrature of
:mod:`isokit.theory.gaussian` (§1.1).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from isokit.theory import _validate as check
from isokit.theory.activations import Activation, ActLike, get_activation
from isokit.theory.gaussian import _dq_e_phi2, _e_phi2, _mu
from isokit.theory.prediction import Prediction

__all__ = ["chi1", "chi_q", "length_map", "mu", "q_profile", "q_star"]

_Q_MAX = 1e12  # beyond this the length map is taken to grow without bound


def _q_star(a: Activation, sw2: float, sb2: float, q1: float = 1.0) -> float:
    """Fixed point reached by iterating the length map from ``q1`` (§1.2).

    The map is increasing in ``q``, so its iterates move monotonically towards the nearest root
    of ``F(q) = σ_w²·E φ² + σ_b² − q`` in the direction of ``sign F(q1)``; bracket that root by
    doubling/halving and polish it with Brent's method.
    """

    def F(q: float) -> float:
        return sw2 * _e_phi2(a, q) + sb2 - q

    f1 = F(q1)
    if f1 == 0:
        return q1
    if f1 > 0:
        lo, hi = q1, 2 * q1
        while F(hi) > 0:
            lo, hi = hi, 2 * hi
            if hi > _Q_MAX:
                raise ValueError(
                    f"no finite fixed point q*: the length map of {a.name} grows without bound "
                    f"at sw2={sw2}, sb2={sb2}; lower sw2 (ReLU needs sw2 < 2, linear sw2 < 1, "
                    "or sw2 = critical with sb2 = 0)"
                )
        return float(optimize.brentq(F, lo, hi, xtol=1e-300, rtol=1e-15))
    lo, hi = q1 / 2, q1
    while F(lo) < 0:
        lo, hi = lo / 2, lo
        if lo < 1e-30:
            if F(0.0) <= 0:
                return 0.0
            return float(optimize.brentq(F, 0.0, lo, xtol=1e-300, rtol=1e-15))
    return float(optimize.brentq(F, lo, hi, xtol=1e-300, rtol=1e-15))


def _resolve_q(a: Activation, sw2: float, sb2: float, q: float | None) -> float:
    return _q_star(a, sw2, sb2) if q is None else check.variance("q", q)


def mu(*, act: ActLike, q: float, k: int = 1) -> Prediction:
    """``μ_k(q) = E[φ'(√q·z)^{2k}]``, the k-th moment of the diagonal of ``D²`` (§0, §2).

    Example:
        >>> mu(act="relu", q=1.0).value  # half the units are active
        0.5
        >>> round(mu(act="tanh", q=1.0).value, 6)
        0.464403
    """
    a = get_activation(act)
    q = check.variance("q", q)
    k = check.integer("k", k, minimum=1)
    value = _mu(a, q, k)
    if a.name in ("relu", "hardtanh"):
        return Prediction(
            value=value,
            tag="S",
            cite="pennington2017",
            section="§2",
            what=f"μ_{k}(q={q:g}) of {a.name}: μ_k = p, D² Bernoulli",
        )
    closed = a.mu is not None
    return Prediction(
        value=value,
        tag="D" if closed else "R",
        cite="derived" if closed else "pennington2017",
        section="§2" if closed else "§0",
        what=f"μ_{k}(q={q:g}) = E φ'(√q z)^{2 * k} of {a.name}"
        + (" (closed form)" if closed else " (quadrature)"),
    )


def length_map(*, act: ActLike, sw2: float, sb2: float, q: float) -> Prediction:
    """One step of the length map, ``σ_w²·E φ(√q·z)² + σ_b²`` (§1.2).

    Example:
        >>> length_map(act="relu", sw2=2.0, sb2=0.0, q=1.5).value  # He init keeps q
        1.5
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    q = check.variance("q", q)
    return Prediction(
        value=check.result("the length map", sw2 * _e_phi2(a, q) + sb2),
        tag="R",
        cite="poole2016",
        section="§1.2",
        what=f"length map of {a.name} at q={q:g}",
    )


def q_profile(*, act: ActLike, sw2: float, sb2: float, q1: float, depth: int) -> Prediction:
    """Pre-activation variances ``q^1 … q^L`` from ``q^1`` by the length map (§1.2).

    ``q^1 = σ_w²·‖x^0‖²/N + σ_b²`` for an input ``x^0``; ``depth`` may be 0 (empty profile).

    Example:
        >>> q_profile(act="tanh", sw2=1.5, sb2=0.05, q1=1.0, depth=3).value.round(4)
        array([1.    , 0.6414, 0.5231])
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    depth = check.integer("depth", depth, minimum=0)
    qs = np.empty(depth)
    q = check.variance("q1", q1)
    for layer in range(depth):
        qs[layer] = q
        if layer + 1 < depth:
            q = check.result("q^l", sw2 * _e_phi2(a, q) + sb2)
    return Prediction(
        value=qs,
        tag="R",
        cite="poole2016",
        section="§1.2",
        what=f"q^l profile of {a.name} from q^1={q1:g}",
    )


def q_star(*, act: ActLike, sw2: float, sb2: float, q1: float = 1.0) -> Prediction:
    """Fixed point ``q*`` of the length map reached from ``q1`` (§1.2).

    Raises ``ValueError`` when the map diverges (no finite fixed point). At a line of fixed
    points (ReLU at (2, 0), linear at (1, 0)) every ``q`` is fixed and ``q1`` is returned.

    Example:
        >>> round(q_star(act="tanh", sw2=1.5, sb2=0.05).value, 6)
        0.418037
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2, positive=True), check.variance("sb2", sb2)
    value = _q_star(a, sw2, sb2, check.variance("q1", q1, positive=True))
    return Prediction(
        value=value,
        tag="R",
        cite="poole2016",
        section="§1.2",
        what=f"fixed point q* of the length map of {a.name} at sw2={sw2:g}, sb2={sb2:g}",
    )


def chi1(*, act: ActLike, sw2: float, sb2: float = 0.0, q: float | None = None) -> Prediction:
    """``χ1 = σ_w²·μ1(q*)`` (§1.3); pass ``q`` to evaluate at a given variance instead of ``q*``.

    Example:
        >>> chi1(act="relu", sw2=2.0).value  # He init is ReLU's critical point
        1.0
        >>> round(chi1(act="tanh", sw2=1.5, sb2=0.05).value, 6)  # ordered phase: χ1 < 1
        0.938636
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    qq = _resolve_q(a, sw2, sb2, q)
    return Prediction(
        value=check.result("χ1", sw2 * _mu(a, qq, 1)),
        tag="S",
        cite="pennington2017",
        section="§1.3",
        what=f"χ1 = sw2·μ1(q={qq:g}) of {a.name}",
    )


def chi_q(*, act: ActLike, sw2: float, sb2: float = 0.0, q: float | None = None) -> Prediction:
    """``χ_q = χ1 + σ_w²·E φ''φ``, the slope of the length map at ``q*`` (§1.3).

    Example:
        >>> chi_q(act="relu", sw2=2.0, q=1.0).value  # the ReLU length map is linear in q
        1.0
        >>> round(chi_q(act="tanh", sw2=1.5, sb2=0.05).value, 6)
        0.551983
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    qq = _resolve_q(a, sw2, sb2, q)
    return Prediction(
        value=check.result("χ_q", sw2 * _dq_e_phi2(a, qq)),
        tag="R",
        cite="schoenholz2017",
        section="§1.3",
        what=f"χ_q, slope of the length map of {a.name} at q={qq:g}",
    )
