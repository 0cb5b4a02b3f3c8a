"""Exact spectra of linear and piecewise-linear networks (``docs/theory.md`` §3.5, §3.6, §6).

For piecewise-linear φ (linear, ReLU, hard-tanh) ``D²`` is Bernoulli(``p``), so the S-transform
of ``JJᵀ`` is rational and Lagrange inversion gives every moment in closed form [D]:

- ``pl_moments``: exact ``m_k`` (Gaussian or orthogonal weights); ``fuss_catalan``: the linear
  Gaussian case ``p = 1``;
- ``pl_edge``: the upper edge ``min_{z>0} M^{−1}(z)``; ``zero_atom``: the mass at ``λ = 0``;
- ``fc_density``: the Fuss–Catalan density [R: Haagerup & Möller; Neuschel];
- ``linear_gaussian_m2_finite``: the exact finite-width ``E m2`` by Wick's theorem (§6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import integrate

from isokit.theory import _validate as check
from isokit.theory.prediction import Prediction

__all__ = [
    "FCDensity",
    "fc_density",
    "fuss_catalan",
    "linear_gaussian_m2_finite",
    "pl_edge",
    "pl_moments",
    "zero_atom",
]


def _gbinom(e: int, j: int) -> int:
    """Generalized binomial ``C(e, j) = e(e−1)⋯(e−j+1)/j!`` for any integer ``e``."""
    num = 1
    for i in range(j):
        num *= e - i
    return num // math.factorial(j)


def _power(base: float, exponent: int, what: str) -> float:
    """``base**exponent``, with float64 overflow as a clear ``ValueError``."""
    try:
        return base**exponent
    except OverflowError:
        raise ValueError(
            f"{what} overflows float64; use a smaller depth or a variance closer to critical"
        ) from None


def pl_moments(
    *, depth: int, p: float, k: int, weights: str = "gaussian", sw2: float | None = None
) -> Prediction:
    """Exact ``m_k`` for piecewise-linear φ (``D²`` Bernoulli(``p``)) by Lagrange inversion (§3.5).

    ``m_k = (1/k)·Σ_{j=0}^{k−1} C(e, j)·C(Lk, k−1−j)·p^{−(k−1−j)}`` with ``e = k`` (Gaussian) or
    ``e = k(1−L)`` (orthogonal), at criticality ``σ_w²·p = 1``; off criticality (``sw2`` given)
    times ``(σ_w²·p)^{Lk}`` [D]. ``p = 1`` gives the Fuss–Catalan numbers / ``m_k = 1``.

    Example:
        >>> pl_moments(depth=3, p=0.5, k=2).value  # m2 of a critical ReLU net: var = 2L
        7.0
        >>> pl_moments(depth=3, p=0.5, k=2, weights="orthogonal").value  # var = L
        4.0
    """
    L = check.integer("depth", depth, minimum=0)
    k = check.integer("k", k, minimum=1)
    w = check.weights("weights", weights)
    pf = Fraction(check.fraction("p", p))
    e = k if w == "gaussian" else k * (1 - L)
    total = sum(_gbinom(e, j) * math.comb(L * k, k - 1 - j) * pf ** -(k - 1 - j) for j in range(k))
    try:
        value = float(total / k)
    except OverflowError:
        raise ValueError(f"m_{k} at depth {L} overflows float64; use a smaller depth") from None
    if sw2 is not None:
        scale = check.variance("sw2", sw2, positive=True) * float(pf)
        value *= _power(scale, L * k, f"(sw2·p)^(L·k) = {scale:g}^{L * k}")
    return Prediction(
        value=check.result(f"m_{k}", value),
        tag="D",
        cite="derived",
        section="§3.5",
        what=f"exact m_{k}, piecewise-linear p={float(pf):g}, {w}, L={L}",
    )


def fuss_catalan(*, depth: int, k: int) -> Prediction:
    """Fuss–Catalan number ``FC_L(k) = C((L+1)k, k)/(Lk + 1)``: ``m_k`` of a depth-``L`` linear
    Gaussian product at ``σ_w² = 1`` (§3.5) [D; same moments as Penson & Życzkowski 2011 [A]].

    Example:
        >>> fuss_catalan(depth=2, k=3).value
        12
    """
    L = check.integer("depth", depth, minimum=0)
    k = check.integer("k", k, minimum=0)
    return Prediction(
        value=math.comb((L + 1) * k, k) // (L * k + 1),
        tag="D",
        cite="derived",
        section="§3.5",
        what=f"Fuss–Catalan number FC_{L}({k})",
    )


def pl_edge(
    *, depth: int, p: float, weights: str = "gaussian", sw2: float | None = None
) -> Prediction:
    """Upper spectral edge ``λ_max = min_{z>0} M^{−1}(z)`` for piecewise-linear φ (§3.6) [D].

    ``M^{−1}(z) = ((1+z)/z)·(σ_w²(z+p))^L`` (Gaussian) or ``((1+z)/z)·(σ_w²(z+p)/(z+1))^L``
    (orthogonal). Setting ``d log M^{−1}/dz = 0`` gives ``L·z² + (L−1)·z − p = 0`` (Gaussian) and
    ``z = p/(L(1−p) − 1)`` (orthogonal, when ``L(1−p) > 1``; otherwise the infimum is at
    ``z → ∞``, the bound ``σ_w^{2L}``). ``sw2`` defaults to criticality, ``1/p``. Divide by
    ``m1 = (σ_w²·p)^L`` to compare with a measured ``λ_max/m1``.

    Example:
        >>> round(pl_edge(depth=1, p=1.0).value, 12)  # the Marchenko–Pastur edge
        4.0
    """
    L = check.integer("depth", depth, minimum=0)
    p = check.fraction("p", p)
    w = check.weights("weights", weights)
    s = 1.0 / p if sw2 is None else check.variance("sw2", sw2, positive=True)
    if L == 0:
        edge = 1.0
    elif w == "gaussian":
        z = (-(L - 1) + math.sqrt((L - 1) ** 2 + 4 * L * p)) / (2 * L)
        edge = (1 + z) / z * _power(s * (z + p), L, "the edge")
    elif L * (1 - p) > 1:
        z = p / (L * (1 - p) - 1)
        edge = (1 + z) / z * _power(s * (z + p) / (z + 1), L, "the edge")
    else:
        edge = _power(s, L, "the edge")
    return Prediction(
        value=check.result("the edge", edge),
        tag="D",
        cite="derived",
        section="§3.6",
        what=f"upper edge of JJᵀ, piecewise-linear p={p:g}, {w}, L={L}",
    )


@dataclass(frozen=True, kw_only=True)
class FCDensity:
    """Points ``x`` and the Fuss–Catalan density ``ρ(x)`` there.

    Example:
        >>> curve = fc_density(depth=2, theta=np.linspace(0.1, 1.0, 5))
        >>> isinstance(curve, FCDensity), curve.x.value.shape == curve.density.value.shape
        (True, True)
    """

    x: Prediction
    density: Prediction


def _fc_curve(L: int, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s1, sL, sL1 = np.sin(theta), np.sin(L * theta), np.sin((L + 1) * theta)
    return sL1 ** (L + 1) / (s1 * sL**L), s1**2 * sL ** (L - 1) / (np.pi * sL1**L)


def fc_density(
    *, depth: int, theta: np.ndarray | None = None, x: np.ndarray | None = None
) -> FCDensity:
    """Fuss–Catalan density of a depth-``L`` linear Gaussian product (§3.6) [R: Haagerup &
    Möller; Neuschel].

    For ``0 < θ < π/(L+1)``: ``x(θ) = sin^{L+1}((L+1)θ)/(sin θ·sin^L(Lθ))`` and
    ``ρ(x(θ)) = (1/π)·sin²θ·sin^{L−1}(Lθ)/sin^L((L+1)θ)``. Give ``theta`` for the parametric
    curve, or ``x`` for the density at given points (θ found by bisection, as ``x(θ)`` decreases
    from the edge ``(L+1)^{L+1}/L^L`` to 0; ``ρ = 0`` outside). ``L = 1`` is Marchenko–Pastur.

    Example:
        >>> rho = fc_density(depth=1, x=np.array([1.0, 5.0])).density.value
        >>> rho.round(4)  # Marchenko–Pastur: √((4 − x)/x)/(2π) inside [0, 4], 0 outside
        array([0.2757, 0.    ])
    """
    L = check.integer("depth", depth, minimum=1)
    if (theta is None) == (x is None):
        raise ValueError("give exactly one of theta= (parametric curve) or x= (points)")
    top = math.pi / (L + 1)
    if theta is not None:
        th = check.reals("theta", theta)
        if np.any((th <= 0) | (th >= top)):
            raise ValueError(f"theta must lie in (0, π/(L+1)) = (0, {top:.6g})")
        xs, rho = _fc_curve(L, th)
    else:
        xs = check.reals("x", x)
        edge = (L + 1) ** (L + 1) / L**L
        inside = (xs > 0) & (xs < edge)
        lo, hi = np.zeros(xs.shape), np.full(xs.shape, top)
        for _ in range(200):  # bisection to machine precision on θ
            mid = (lo + hi) / 2
            go_right = _fc_curve(L, mid)[0] > xs  # x(θ) decreasing: the root lies right of mid
            lo, hi = np.where(go_right, mid, lo), np.where(go_right, hi, mid)
        # Points within rounding of the edge bisect to θ = 0, where ρ → 0 (ρ ~ θ^{L+1}).
        theta_x = np.maximum((lo + hi) / 2, 1e-12 * top)
        rho = np.where(inside, _fc_curve(L, theta_x)[1], 0.0)
    what = f"Fuss–Catalan density, L={L}"
    return FCDensity(
        x=Prediction(value=xs, tag="R", cite="haagerup-neuschel", section="§3.6", what=what),
        density=Prediction(value=rho, tag="R", cite="haagerup-neuschel", section="§3.6", what=what),
    )


# ---------------------------------------------------------------- finite width (§3.6, §6)


def linear_gaussian_m2_finite(*, depth: int, width: int) -> Prediction:
    """Exact ``E m2`` of a depth-``L`` linear net with real Gaussian ``N×N`` weights, ``σ_w² = 1``.

    By Wick's theorem (§6) [D]: ``m2(L) = e(L−1) + (1 + 1/N)·m2(L−1)`` and
    ``e(L) = e(L−1) + 2·m2(L−1)/N²`` with ``e(L) = E[(tr JJᵀ/N)²]`` and ``m2(0) = e(0) = 1``;
    ``≈ (L+1) + L(L+1)/(2N)``. Scale by ``σ_w^{4L}`` for other ``σ_w²``.

    Example:
        >>> round(linear_gaussian_m2_finite(depth=1, width=10).value, 12)  # 2 + 1/N
        2.1
    """
    L = check.integer("depth", depth, minimum=0)
    N = check.integer("width", width, minimum=1)
    m2, e = 1.0, 1.0
    for _ in range(L):
        m2, e = e + (1 + 1 / N) * m2, e + 2 * m2 / N**2
    return Prediction(
        value=m2,
        tag="D",
        cite="derived",
        section="§6",
        what=f"exact finite-width E m2, linear Gaussian, L={L}, N={N}",
    )


def _expected_max_normal(n: int) -> float:
    # E max of n i.i.d. N(0,1) = ∫ x·n·ϕ(x)·Φ(x)^{n−1} dx
    if n == 1:
        return 0.0

    def f(x: float) -> float:
        return (
            x
            * n
            * math.exp(-x * x / 2)
            / math.sqrt(2 * math.pi)
            * (0.5 * math.erfc(-x / math.sqrt(2))) ** (n - 1)
        )

    return float(integrate.quad(f, -12, 12, limit=200)[0])


def zero_atom(*, p: float, width: int | None = None, depth: int = 1) -> Prediction:
    """Mass of ``JJᵀ`` at ``λ = 0`` for piecewise-linear φ (§3.6) [D].

    ``1 − p`` as ``N → ∞`` (free multiplicative convolution keeps the largest atom). With
    ``width`` the finite-``N`` heuristic ``1 − p + √(p(1−p)/N)·E[max of L i.i.d. N(0,1)]``
    (``rank J ≤ min_l rank D^l``, ``rank D^l ~ Bin(N, p)``).

    Example:
        >>> zero_atom(p=0.5).value  # half the units of a ReLU layer are off
        0.5
        >>> zero_atom(p=0.5, width=100, depth=1).value  # one layer: no finite-N excess
        0.5
    """
    p = check.fraction("p", p)
    L = check.integer("depth", depth, minimum=1)
    if width is None:
        return Prediction(
            value=1 - p,
            tag="D",
            cite="derived",
            section="§3.6",
            what=f"zero atom 1 − p of JJᵀ (p={p:g}, N → ∞)",
        )
    N = check.integer("width", width, minimum=1)
    value = 1 - p + math.sqrt(p * (1 - p) / N) * _expected_max_normal(L)
    return Prediction(
        value=value,
        tag="D",
        cite="derived",
        section="§3.6",
        what=f"zero fraction heuristic (p={p:g}, N={N}, L={L})",
    )
