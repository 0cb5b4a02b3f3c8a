"""Every moment of ``JJᵀ`` to a given order by the series method (``docs/theory.md`` §3.4).

Factor moments (``μ_k`` for ``D²``; the Marchenko–Pastur or orthogonal S-transform for ``WWᵀ``)
become truncated S-series by series reversion, multiply over the layers by the product rule
``S_{JJᵀ} = Π_l S_{W_lW_lᵀ}·S_{D_l²}`` (§3.1) and turn back into moments [D].
"""

from __future__ import annotations

import math

import numpy as np

from isokit.theory import _validate as check
from isokit.theory._layers import Layers, layer_mus, setup_layers
from isokit.theory.activations import Activation, ActLike
from isokit.theory.gaussian import _mu
from isokit.theory.prediction import Prediction

__all__ = ["series_moments"]

_MAX_ORDER = 8  # §3.4: series inversion in float64 is trustworthy to K = 8


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.convolve(a, b)[: len(a)]


def _revert(a: np.ndarray) -> np.ndarray:
    """Compositional inverse ``c`` of ``a`` (``a[0] = 0 ≠ a[1]``): ``a(c(x)) = x + O(x^{K+1})``.

    Solved order by order: with ``c_1..c_{n−1}`` fixed, ``[x^n] a(c) = a1·c_n + (known)``.
    """
    c = np.zeros_like(a)
    c[1] = 1.0 / a[1]
    for n in range(2, len(a)):
        comp, power = np.zeros_like(a), c.copy()
        for i in range(1, n + 1):
            comp += a[i] * power
            power = _mul(power, c)
        c[n] = -comp[n] / a[1]
    return c


def _s_from_moments(m: np.ndarray) -> np.ndarray:
    """S-series ``(χ/x)·(1 + x)`` (orders ``0..K−1``) from moments ``m_1..m_K`` (§3.1)."""
    chi = _revert(np.concatenate([[0.0], m]))
    t = chi[1:]
    return t + np.concatenate([[0.0], t[:-1]])


def _moments_from_s(s: np.ndarray) -> np.ndarray:
    """``m_1..m_K`` from an S-series: ``χ = x·S/(1+x)``, ``ψ = χ^{⟨−1⟩}``, ``m_k = [x^k]ψ``."""
    t = _mul(s, (-1.0) ** np.arange(len(s)))
    return _revert(np.concatenate([[0.0], t]))[1:]


def _w_series(sw2: float, weights: str, order: int) -> np.ndarray:
    # Gaussian: S = 1/(σ_w²(1+z)) (Marchenko–Pastur) [S]; orthogonal: S = σ_w^{−2} [D].
    if weights == "gaussian":
        return (-1.0) ** np.arange(order) / sw2
    return np.concatenate([[1.0 / sw2], np.zeros(order - 1)])


def _d_series(a: Activation, q: float, order: int) -> np.ndarray:
    qq = 1.0 if math.isnan(q) else q
    return _s_from_moments(np.array([_mu(a, qq, k) for k in range(1, order + 1)]))


def _layer_series(lay: Layers, weights: str, order: int, tap: str) -> list[np.ndarray]:
    """The per-layer S-series ``S_W·S_D`` (the last ``S_D`` omitted for ``tap='pre'``)."""
    cache: dict[float, np.ndarray] = {}
    out = []
    for layer, (sw2, q) in enumerate(zip(lay.sw2, lay.q, strict=True)):
        s = _w_series(float(sw2), weights, order)
        if tap == "post" or layer + 1 < lay.depth:
            key = float(q)
            if key not in cache:
                cache[key] = _d_series(lay.act, key, order)
            s = _mul(s, cache[key])
        out.append(s)
    return out


def series_moments(
    *,
    act: ActLike,
    sw2: float | np.ndarray,
    sb2: float | np.ndarray,
    depth: int,
    weights: str = "gaussian",
    order: int = 4,
    q_profile: np.ndarray | None = None,
    q1: float | None = None,
    tap: str = "post",
) -> Prediction:
    """``m_1..m_K`` of ``JJᵀ`` (``K = order``) by the S-transform series method (§3.4) [D].

    Factor moments (``μ_k`` for ``D²``; the Marchenko–Pastur or orthogonal S-transform for
    ``WWᵀ``) → S-series by series reversion → product over layers → back to moments. Exact to
    order ``K`` in the ``N → ∞`` limit; ``K ≤ 8``. Layers as in
    :func:`isokit.theory.jacobian_moments`.

    Example:
        >>> m = series_moments(act="linear", sw2=1.0, sb2=0.0, depth=2, order=3).value
        >>> m.round(8)  # the Fuss–Catalan numbers FC_2(k)
        array([ 1.,  3., 12.])
    """
    lay = setup_layers(act, sw2, sb2, depth, q_profile, q1)
    w = check.weights("weights", weights)
    order = check.integer("order", order, minimum=1)
    if order > _MAX_ORDER:
        raise ValueError(f"order={order} > {_MAX_ORDER}: float64 series reversion is unreliable")
    if tap not in ("post", "pre"):
        raise ValueError(f"tap must be 'post' or 'pre', got {tap!r}")
    layer_mus(lay, 1)  # rejects μ1 = 0
    s = np.concatenate([[1.0], np.zeros(order - 1)])
    for factor in _layer_series(lay, w, order, tap):
        s = _mul(s, factor)
    return Prediction(
        value=check.result(f"m_1..m_{order}", _moments_from_s(s)),
        tag="D",
        cite="derived",
        section="§3.4",
        what=f"m_1..m_{order} by S-transform series ({lay.act.name}, {w}, L={lay.depth}, {tap})",
    )
