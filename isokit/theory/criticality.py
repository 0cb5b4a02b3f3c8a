"""The critical line ``χ1 = 1`` of mean-field signal propagation (``docs/theory.md`` §1.4).

On this line the mean squared singular value of a layer's Jacobian is 1 at the fixed point
``q*`` [S: Pennington et al. 2017]; :func:`critical_point` finds ``(σ_w², σ_b²)`` on it for a
target ``q*`` or for a given ``σ_b²``.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy import optimize

from isokit.theory import _validate as check
from isokit.theory.activations import Activation, ActLike, get_activation
from isokit.theory.gaussian import _e_phi2, _mu
from isokit.theory.meanfield import _q_star
from isokit.theory.prediction import Prediction

__all__ = ["CriticalPoint", "critical_point"]


@dataclass(frozen=True, kw_only=True)
class CriticalPoint:
    """A point ``(σ_w², σ_b²)`` on the critical line ``χ1 = 1`` and its fixed point ``q*``.

    Example:
        >>> point = critical_point(act="relu", sb2=0.0)
        >>> isinstance(point, CriticalPoint), point.sw2.value  # He init
        (True, 2.0)
    """

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

    Example:
        >>> point = critical_point(act="tanh", sb2=0.05)
        >>> round(point.sw2.value, 4), round(point.q_star.value, 4)
        (1.761, 0.57)
    """
    a = get_activation(act)
    if (q_star is None) == (sb2 is None):
        raise ValueError("give exactly one of q_star=… (target fixed point) or sb2=…")
    if q_star is not None:
        qs = check.variance("q_star", q_star)
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
        b2 = check.variance("sb2", sb2)
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
