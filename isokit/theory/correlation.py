"""Mean-field correlation map of two inputs, its fixed point and the depth scales.

Formulas of ``docs/theory.md`` §1.3 (``z1, z2 ~ N(0, 1)`` independent, ``u1 = √q·z1``,
``u2 = √q·(c·z1 + √(1−c²)·z2)``):

- correlation map ``c ↦ (σ_w²·E φ(u1)φ(u2) + σ_b²)/q*`` with slope ``χ_c = σ_w²·E φ'(u1)φ'(u2)``
  [R: Poole et al. 2016], and its attracting fixed point ``c*``;
- depth scales ``ξ = −1/log χ`` [R: Schoenholz et al. 2017], which diverge on the critical line
  ``χ1 = 1``: a slope within :data:`CRITICAL_RTOL` of 1 gives ``ξ = ∞``.

Example:
    >>> from isokit.theory import chi1, critical_point
    >>> sw2 = critical_point(act="tanh", sb2=0.05).sw2.value
    >>> chi = chi1(act="tanh", sw2=sw2, sb2=0.05).value  # 1 up to round-off
    >>> abs(chi - 1) <= CRITICAL_RTOL, depth_scales(act="tanh", sw2=sw2, sb2=0.05).xi_c.value
    (True, inf)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize

from isokit.theory import _validate as check
from isokit.theory.activations import Activation, ActLike, get_activation
from isokit.theory.gaussian import _dq_e_phi2, _e_dphi_dphi, _e_phi_phi, _mu
from isokit.theory.meanfield import _resolve_q
from isokit.theory.prediction import Prediction

__all__ = ["CRITICAL_RTOL", "DepthScales", "c_map", "c_star", "chi_c", "depth_scales"]

#: A slope ``χ`` with ``|χ − 1| ≤ CRITICAL_RTOL`` is critical: its depth scale is ``∞``. The
#: critical point is solved to ~1e-14 and the slopes are Gaussian integrals accurate to ~1e-13,
#: so a point on the critical line gives ``|χ − 1|`` of a few 1e-15 (``ξ ≈ 1e15`` layers if
#: taken literally); 1e-12 stays far above that round-off and far below any slope a finite
#: depth could tell from 1 (``ξ > 1e12`` layers).
CRITICAL_RTOL = 1e-12


def _q_for_c(a: Activation, sw2: float, sb2: float, q: float | None) -> float:
    qq = _resolve_q(a, sw2, sb2, q)
    if qq == 0:
        raise ValueError(
            f"the correlation map is undefined at q* = 0 ({a.name} with sb2=0 in the ordered "
            "phase); use sb2 > 0 or pass q > 0"
        )
    return qq


def c_map(*, act: ActLike, sw2: float, sb2: float, c: float, q: float | None = None) -> Prediction:
    """``c ↦ (σ_w²·E φ(u1)φ(u2) + σ_b²)/q*`` for two inputs at variance ``q*`` (§1.3).

    Example:
        >>> import math  # He-initialized ReLU maps orthogonal inputs to correlation 1/π
        >>> math.isclose(c_map(act="relu", sw2=2.0, sb2=0.0, c=0.0, q=1.0).value, 1 / math.pi)
        True
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    c = check.correlation("c", c)
    qq = _q_for_c(a, sw2, sb2, q)
    return Prediction(
        value=check.result("the C-map", (sw2 * _e_phi_phi(a, qq, c) + sb2) / qq),
        tag="R",
        cite="poole2016",
        section="§1.3",
        what=f"C-map of {a.name} at c={c:g}, q={qq:g}",
    )


def chi_c(*, act: ActLike, sw2: float, sb2: float, c: float, q: float | None = None) -> Prediction:
    """Slope of the C-map, ``χ_c(c) = σ_w²·E φ'(u1)φ'(u2)``; ``χ_c(1) = χ1`` (§1.3).

    Example:
        >>> round(chi_c(act="tanh", sw2=1.5, sb2=0.05, c=1.0).value, 6)  # = χ1
        0.938636
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    c = check.correlation("c", c)
    qq = _resolve_q(a, sw2, sb2, q)
    return Prediction(
        value=check.result("χ_c", sw2 * _e_dphi_dphi(a, qq, c)),
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
    """Attracting fixed point of the C-map: 1 when ``χ1 ≤ 1``, else the root ``c* < 1`` (§1.3).

    Example:
        >>> c_star(act="tanh", sw2=0.5, sb2=0.05).value  # ordered phase: inputs align
        1.0
        >>> round(c_star(act="tanh", sw2=2.0, sb2=0.05).value, 6)  # chaotic phase
        0.744082
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    qq = _q_for_c(a, sw2, sb2, q)
    return Prediction(
        value=_c_star(a, sw2, sb2, qq),
        tag="R",
        cite="poole2016",
        section="§1.3",
        what=f"attracting fixed point c* of the C-map of {a.name}",
    )


def _critical(chi: float) -> bool:
    return abs(chi - 1.0) <= CRITICAL_RTOL


def _xi(chi: float) -> float:
    # ξ = −1/log χ; χ = 1 (to round-off) means no exponential scale: the depth scale diverges.
    return math.inf if _critical(chi) else -1.0 / math.log(chi)


@dataclass(frozen=True, kw_only=True)
class DepthScales:
    """Depth scales of §1.3: ``ξ_q``, ``ξ_c`` and ``ξ_∇`` (negative: gradients grow).

    Example:
        >>> scales = depth_scales(act="relu", sw2=2.0, sb2=0.0)
        >>> isinstance(scales, DepthScales), scales.xi_grad.value  # critical: no finite scale
        (True, inf)
    """

    xi_q: Prediction
    xi_c: Prediction
    xi_grad: Prediction


def depth_scales(*, act: ActLike, sw2: float, sb2: float, q: float | None = None) -> DepthScales:
    """``ξ_q = −1/log χ_q``, ``ξ_c = −1/log χ_c(c*)``, ``ξ_∇ = −1/log χ1`` (§1.3).

    ``ξ_c`` and ``ξ_∇`` diverge on the critical line ``χ1 = 1`` [A: Schoenholz et al. 2017]:
    each is ``∞`` where its slope is within :data:`CRITICAL_RTOL` of 1.

    Example:
        >>> round(depth_scales(act="tanh", sw2=1.5, sb2=0.05).xi_grad.value, 3)
        15.791
        >>> from isokit.theory import critical_point
        >>> point = critical_point(act="tanh", sb2=0.05)  # χ1 = 1 up to round-off
        >>> depth_scales(act="tanh", sw2=point.sw2.value, sb2=0.05).xi_grad.value
        inf
    """
    a = get_activation(act)
    sw2, sb2 = check.variance("sw2", sw2), check.variance("sb2", sb2)
    qq = _resolve_q(a, sw2, sb2, q)
    x1 = check.result("χ1", sw2 * _mu(a, qq, 1))
    xq = check.result("χ_q", sw2 * _dq_e_phi2(a, qq))
    # In the ordered phase c* = 1 and χ_c(1) = χ1.
    ordered = qq == 0 or x1 <= 1 or _critical(x1)
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
