"""Mean-field signal propagation: Gaussian integrals, length and correlation maps, criticality.

Formulas of ``reference/theory.md`` §1 (``z ~ N(0, 1)``, ``u1 = √q·z1``,
``u2 = √q·(c·z1 + √(1−c²)·z2)``):

- length map ``q^l = σ_w²·E φ(√q^{l−1}·z)² + σ_b²`` and its fixed point ``q*`` [R: Poole et al.
  2016; Schoenholz et al. 2017];
- ``χ1 = σ_w²·μ1(q*)`` [R: Pennington et al. 2017; S] and ``χ_q = σ_w²·E[φ'² + φ·φ'']`` (the slope
  of the length map, by Stein's lemma) [R: Schoenholz et al. 2017; D];
- correlation map ``c ↦ (σ_w²·E φ(u1)φ(u2) + σ_b²)/q*`` with slope ``χ_c = σ_w²·E φ'(u1)φ'(u2)``
  [R: Poole et al. 2016];
- depth scales ``ξ = −1/log χ`` [R: Schoenholz et al. 2017] and the critical line ``χ1 = 1``.

Integrals use closed forms from :mod:`isokit.theory.activations` when the activation has them,
else the quadrature of :mod:`isokit.theory.gaussian` (§1.1; ``gauss_expect`` and
``gauss_expect2`` are re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from isokit.theory import _validate as check
from isokit.theory.activations import Activation, get_activation
from isokit.theory.gaussian import (
    _dq_e_phi2,
    _e_dphi_dphi,
    _e_phi2,
    _e_phi_phi,
    _mu,
    gauss_expect,
    gauss_expect2,
)
from isokit.theory.prediction import Prediction

__all__ = [
    "CriticalPoint",
    "DepthScales",
    "c_map",
    "c_star",
    "chi1",
    "chi_c",
    "chi_q",
    "critical_point",
    "depth_scales",
    "gauss_expect",
    "gauss_expect2",
    "length_map",
    "mu",
    "q_profile",
    "q_star",
]

ActLike = str | Activation | Callable[[np.ndarray], np.ndarray]


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
            if hi > 1e12:
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
    return _q_star(a, sw2, sb2) if q is None else check.variance(q, "q")


# ---------------------------------------------------------------- public API


def mu(*, act: ActLike, q: float, k: int = 1) -> Prediction:
    """``μ_k(q) = E[φ'(√q·z)^{2k}]``, the k-th moment of the diagonal of ``D²`` (§0, §2)."""
    a = get_activation(act)
    q = check.variance(q, "q")
    k = check.integer(k, "k", minimum=1)
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
    """One step of the length map, ``σ_w²·E φ(√q·z)² + σ_b²`` (§1.2)."""
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    q = check.variance(q, "q")
    return Prediction(
        value=sw2 * _e_phi2(a, q) + sb2,
        tag="R",
        cite="poole2016",
        section="§1.2",
        what=f"length map of {a.name} at q={q:g}",
    )


def q_profile(*, act: ActLike, sw2: float, sb2: float, q1: float, depth: int) -> Prediction:
    """Pre-activation variances ``q^1 … q^L`` from ``q^1`` by the length map (§1.2).

    ``q^1 = σ_w²·‖x^0‖²/N + σ_b²`` for an input ``x^0``; ``depth`` may be 0 (empty profile).
    """
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    depth = check.integer(depth, "depth", minimum=0)
    qs = np.empty(depth)
    q = check.variance(q1, "q1")
    for layer in range(depth):
        qs[layer] = q
        q = sw2 * _e_phi2(a, q) + sb2
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
    """
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2", positive=True), check.variance(sb2, "sb2")
    value = _q_star(a, sw2, sb2, check.variance(q1, "q1", positive=True))
    return Prediction(
        value=value,
        tag="R",
        cite="poole2016",
        section="§1.2",
        what=f"fixed point q* of the length map of {a.name} at sw2={sw2:g}, sb2={sb2:g}",
    )


def chi1(*, act: ActLike, sw2: float, sb2: float = 0.0, q: float | None = None) -> Prediction:
    """``χ1 = σ_w²·μ1(q*)`` (§1.3); pass ``q`` to evaluate at a given variance instead of ``q*``."""
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    qq = _resolve_q(a, sw2, sb2, q)
    return Prediction(
        value=sw2 * _mu(a, qq, 1),
        tag="S",
        cite="pennington2017",
        section="§1.3",
        what=f"χ1 = sw2·μ1(q={qq:g}) of {a.name}",
    )


def chi_q(*, act: ActLike, sw2: float, sb2: float = 0.0, q: float | None = None) -> Prediction:
    """``χ_q = χ1 + σ_w²·E φ''φ``, the slope of the length map at ``q*`` (§1.3)."""
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    qq = _resolve_q(a, sw2, sb2, q)
    return Prediction(
        value=sw2 * _dq_e_phi2(a, qq),
        tag="R",
        cite="schoenholz2017",
        section="§1.3",
        what=f"χ_q, slope of the length map of {a.name} at q={qq:g}",
    )


def _q_for_c(a: Activation, sw2: float, sb2: float, q: float | None) -> float:
    qq = _resolve_q(a, sw2, sb2, q)
    if qq == 0:
        raise ValueError(
            f"the correlation map is undefined at q* = 0 ({a.name} with sb2=0 in the ordered "
            "phase); use sb2 > 0 or pass q > 0"
        )
    return qq


def c_map(*, act: ActLike, sw2: float, sb2: float, c: float, q: float | None = None) -> Prediction:
    """``c ↦ (σ_w²·E φ(u1)φ(u2) + σ_b²)/q*`` for two inputs at variance ``q*`` (§1.3)."""
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    c = check.correlation(c)
    qq = _q_for_c(a, sw2, sb2, q)
    return Prediction(
        value=(sw2 * _e_phi_phi(a, qq, c) + sb2) / qq,
        tag="R",
        cite="poole2016",
        section="§1.3",
        what=f"C-map of {a.name} at c={c:g}, q={qq:g}",
    )


def chi_c(*, act: ActLike, sw2: float, sb2: float, c: float, q: float | None = None) -> Prediction:
    """Slope of the C-map, ``χ_c(c) = σ_w²·E φ'(u1)φ'(u2)``; ``χ_c(1) = χ1`` (§1.3)."""
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    c = check.correlation(c)
    qq = _resolve_q(a, sw2, sb2, q)
    return Prediction(
        value=sw2 * _e_dphi_dphi(a, qq, c),
        tag="R",
        cite="poole2016",
        section="§1.3",
        what=f"χ_c, slope of the C-map of {a.name} at c={c:g}",
    )


def _c_star(a: Activation, sw2: float, sb2: float, q: float) -> float:
    if sw2 * _mu(a, q, 1) <= 1:
        return 1.0  # ordered phase: c* = 1 attracts

    def G(c: float) -> float:
        return (sw2 * _e_phi_phi(a, q, c) + sb2) / q - c

    if G(0.0) <= 1e-14:
        return 0.0  # odd φ with σ_b = 0: c = 0 is fixed (and attracting in the chaotic phase)
    hi_eps = 1e-2
    # G(1 − ε) ≈ ε·(1 − χ1) < 0 for small ε; shrink ε until it is, keeping the bracket.
    lo = 0.0
    while G(1 - hi_eps) >= 0:
        lo = 1 - hi_eps
        hi_eps /= 4
        if hi_eps < 1e-13:
            return 1.0 - hi_eps
    return float(optimize.brentq(G, lo, 1 - hi_eps, xtol=1e-15, rtol=1e-15))


def c_star(*, act: ActLike, sw2: float, sb2: float, q: float | None = None) -> Prediction:
    """Attracting fixed point of the C-map: 1 when ``χ1 ≤ 1``, else the root ``c* < 1`` (§1.3)."""
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    qq = _q_for_c(a, sw2, sb2, q)
    return Prediction(
        value=_c_star(a, sw2, sb2, qq),
        tag="R",
        cite="poole2016",
        section="§1.3",
        what=f"attracting fixed point c* of the C-map of {a.name}",
    )


def _xi(chi: float) -> float:
    # ξ = −1/log χ; χ = 1 means no exponential scale (divergent depth scale).
    return math.inf if chi == 1 else -1.0 / math.log(chi)


@dataclass(frozen=True, kw_only=True)
class DepthScales:
    """Depth scales of §1.3: ``ξ_q``, ``ξ_c`` and ``ξ_∇`` (negative: gradients grow)."""

    xi_q: Prediction
    xi_c: Prediction
    xi_grad: Prediction


def depth_scales(*, act: ActLike, sw2: float, sb2: float, q: float | None = None) -> DepthScales:
    """``ξ_q = −1/log χ_q``, ``ξ_c = −1/log χ_c(c*)``, ``ξ_∇ = −1/log χ1`` (§1.3).

    ``ξ_c`` and ``ξ_∇`` diverge on the critical line ``χ1 = 1`` [A: Schoenholz et al. 2017].
    """
    a = get_activation(act)
    sw2, sb2 = check.variance(sw2, "sw2"), check.variance(sb2, "sb2")
    qq = _resolve_q(a, sw2, sb2, q)
    x1 = sw2 * _mu(a, qq, 1)
    xq = sw2 * _dq_e_phi2(a, qq)
    # In the ordered phase c* = 1 and χ_c(1) = χ1.
    ordered = qq == 0 or x1 <= 1
    xc = x1 if ordered else sw2 * _e_dphi_dphi(a, qq, _c_star(a, sw2, sb2, qq))
    return DepthScales(
        xi_q=Prediction(
            value=_xi(xq),
            tag="R",
            cite="schoenholz2017",
            section="§1.3",
            what=f"ξ_q = −1/log χ_q (χ_q={xq:.6g}) of {a.name}",
        ),
        xi_c=Prediction(
            value=_xi(xc),
            tag="R",
            cite="schoenholz2017",
            section="§1.3",
            what=f"ξ_c = −1/log χ_c(c*) (χ_c={xc:.6g}) of {a.name}",
        ),
        xi_grad=Prediction(
            value=_xi(x1),
            tag="R",
            cite="schoenholz2017",
            section="§1.3",
            what=f"ξ_∇ = −1/log χ1 (χ1={x1:.6g}) of {a.name}",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class CriticalPoint:
    """A point ``(σ_w², σ_b²)`` on the critical line ``χ1 = 1`` and its fixed point ``q*``."""

    sw2: Prediction
    sb2: Prediction
    q_star: Prediction


def critical_point(
    *, act: ActLike, q_star: float | None = None, sb2: float | None = None
) -> CriticalPoint:
    """The critical point ``χ1 = 1`` for a target ``q*`` or for a given ``σ_b²`` (§1.4).

    - ``q_star=…`` [S]: ``σ_w² = 1/μ1(q*)``, ``σ_b² = q* − σ_w²·E φ(√q*·z)²``; rejected if
      ``σ_b² < 0``.
    - ``sb2=…``: solve ``σ_w²·μ1(q*(σ_w², σ_b²)) = 1`` by Brent's method on ``σ_w²`` with the
      fixed point solved inside. For ReLU the only critical point is ``(2, 0)`` [S]; with
      ``q``-independent ``μ1`` (linear, ReLU) every ``q`` is fixed there and ``q* = 1`` is reported.
    """
    a = get_activation(act)
    if (q_star is None) == (sb2 is None):
        raise ValueError("give exactly one of q_star=… (target fixed point) or sb2=…")
    if q_star is not None:
        qs = check.variance(q_star, "q_star")
        m1 = _mu(a, qs, 1)
        if m1 <= 0:
            raise ValueError(f"μ1(q*={qs:g}) = 0 for {a.name}: no σ_w² makes χ1 = 1 there")
        sw2 = 1.0 / m1
        b2 = qs - sw2 * _e_phi2(a, qs)
        if b2 < -1e-12 * max(1.0, qs):
            raise ValueError(
                f"no critical point of {a.name} with q*={qs:g}: it would need sb2={b2:.4g} < 0; "
                "choose a smaller target q_star (or give sb2= instead)"
            )
        b2 = max(b2, 0.0)
        how = "given q*: sw2 = 1/μ1(q*), sb2 = q* − sw2·E φ²"
    else:
        b2 = check.variance(sb2, "sb2")
        if a.q_free:
            sw2 = 1.0 / _mu(a, 1.0, 1)
            how = "given sb2: sw2 = 1/μ1 (μ1 does not depend on q), every q fixed, q* = 1 shown"
            try:
                qs = _q_star(a, sw2, b2)
            except ValueError:
                raise ValueError(
                    f"no critical point of {a.name} with sb2={b2:g}: χ1 = sw2·μ1 forces "
                    f"sw2={sw2:g}, where the length map has no fixed point; use sb2=0 "
                    "(ReLU's only critical point is (sw2, sb2) = (2, 0))"
                ) from None
        else:
            sw2 = _solve_sw2(a, b2)
            qs = _q_star(a, sw2, b2)
            how = "given sb2: Brent solve of χ1(sw2) = 1 with q*(sw2, sb2) inside"
    what = f"critical point of {a.name} ({how})"
    return CriticalPoint(
        sw2=Prediction(value=sw2, tag="S", cite="pennington2017", section="§1.4", what=what),
        sb2=Prediction(value=b2, tag="S", cite="pennington2017", section="§1.4", what=what),
        q_star=Prediction(value=qs, tag="R", cite="poole2016", section="§1.2", what=what),
    )


def _solve_sw2(a: Activation, sb2: float) -> float:
    def f(sw2: float) -> float:
        return sw2 * _mu(a, _q_star(a, sw2, sb2), 1) - 1.0

    def fail() -> ValueError:
        return ValueError(
            f"no critical point of {a.name} with sb2={sb2:g}: χ1 = 1 is not reached for "
            "sw2 up to 1e4 with a finite q*; try a different sb2 or give q_star= instead"
        )

    lo = 1e-3
    if f(lo) >= 0:
        raise fail()
    # Scan upwards geometrically for the first sign change of χ1 − 1, then polish with Brent.
    while True:
        hi = lo * 1.25
        try:
            f_hi = f(hi)
        except ValueError:  # the length map diverges before χ1 reaches 1
            raise fail() from None
        if f_hi >= 0:
            break
        if hi > 1e4:
            raise fail()
        lo = hi
    return float(optimize.brentq(f, lo, hi, xtol=1e-15, rtol=1e-14))
