"""Free-probability moments of ``JJᵀ`` for fully connected networks (reference/theory.md §3, §6).

``J = D^L W^L ⋯ D^1 W^1`` with ``D^l = diag(φ'(h^l))``; ``m_k = (1/N)·tr(JJᵀ)^k`` and the
scale-free variance ``v = m2/m1² − 1``. The product rule ``S_{JJᵀ} = Π_l S_{W_lW_lᵀ}·S_{D_l²}``
[S: Pennington et al. 2017, eq. (12) per the secondary source] gives:

- ``m1 = Π_l σ_{w,l}²·μ1(q^l)`` and ``v = Σ_l [μ2(q^l)/μ1(q^l)² − 1 − s1]`` with ``s1 = −1``
  (Gaussian) or ``0`` (orthogonal) (§3.2–§3.3; [R] at criticality, [D] otherwise);
- every moment to order ``K`` by power series of the S-transforms (§3.4, [D]);
- per-depth predictions for a whole MLP (``predict_mlp``), the entry point for overlays.

Exact results for piecewise-linear φ live in :mod:`isokit.theory.piecewise_linear`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from isokit.theory import _validate as check
from isokit.theory.activations import Activation, get_activation
from isokit.theory.gaussian import _e_phi2, _mu
from isokit.theory.meanfield import _q_star
from isokit.theory.piecewise_linear import linear_gaussian_m2_finite, pl_edge, zero_atom
from isokit.theory.prediction import Prediction

__all__ = ["JacobianMoments", "MLPPrediction", "jacobian_m1_v", "predict_mlp", "series_moments"]

ActLike = str | Activation | Callable[[np.ndarray], np.ndarray]
S1 = {"gaussian": -1.0, "orthogonal": 0.0}  # S_{WWᵀ} = σ_w^{−2}·(1 + s1·z + O(z²)) (§3.1)
_MAX_ORDER = 8  # §3.4: series inversion in float64 is trustworthy to K = 8


# ---------------------------------------------------------------- layer set-up


@dataclass(frozen=True, kw_only=True)
class _Layers:
    act: Activation
    sw2: np.ndarray  # per layer
    q: np.ndarray  # per layer pre-activation variance q^l (nan when μ does not depend on q)
    at_fixed_point: bool

    @property
    def depth(self) -> int:
        return len(self.sw2)


def _layers(act, sw2, sb2, depth, q_profile, q1) -> _Layers:
    """Per-layer ``σ_w²`` and ``q^l``: given, from ``q1`` by the length map, or ``q*`` (§3.3)."""
    a = get_activation(act)
    depth = check.integer(depth, "depth", minimum=0)
    sw2s = check.variances(sw2, "sw2", depth, positive=True)
    sb2s = check.variances(sb2, "sb2", depth)
    if q_profile is not None and q1 is not None:
        raise ValueError("give q_profile= or q1=, not both")
    if q_profile is not None:
        qs = np.array([check.variance(q, f"q_profile[{i}]") for i, q in enumerate(q_profile)])
        if len(qs) != depth:
            raise ValueError(f"q_profile has {len(qs)} entries but depth={depth}; give q^1..q^L")
        return _Layers(act=a, sw2=sw2s, q=qs, at_fixed_point=False)
    if q1 is not None:
        qs = np.empty(depth)
        q = check.variance(q1, "q1")
        for layer in range(depth):
            qs[layer] = q
            if layer + 1 < depth:
                q = sw2s[layer + 1] * _e_phi2(a, q) + sb2s[layer + 1]
        return _Layers(act=a, sw2=sw2s, q=qs, at_fixed_point=False)
    if depth and (np.ptp(sw2s) > 0 or np.ptp(sb2s) > 0):
        raise ValueError("per-layer sw2/sb2 have no common fixed point; give q_profile= or q1=")
    if depth == 0:
        return _Layers(act=a, sw2=sw2s, q=np.empty(0), at_fixed_point=True)
    try:
        q = _q_star(a, float(sw2s[0]), float(sb2s[0]))
    except ValueError:
        if not a.q_free:
            raise
        q = math.nan  # μ_k does not depend on q, so the moments need no fixed point
    qs = np.full(depth, q)
    return _Layers(act=a, sw2=sw2s, q=qs, at_fixed_point=True)


def _mus(lay: _Layers, k: int) -> np.ndarray:
    """``μ_k(q^l)`` per layer; rejects ``μ1 = 0`` (a layer that kills the Jacobian)."""
    q = np.where(np.isnan(lay.q), 1.0, lay.q)
    out = np.array([_mu(lay.act, float(qq), k) for qq in q])
    if k == 1 and np.any(out <= 0):
        raise ValueError(f"μ1 = 0 at some layer for {lay.act.name}: JJᵀ vanishes, m_k = 0")
    return out


def _tags(lay: _Layers, tap: str, critical: bool) -> tuple[tuple[str, str], tuple[str, str]]:
    if not lay.at_fixed_point or tap != "post":
        return ("D", "derived"), ("D", "derived")
    m1_tag = ("S" if lay.act.piecewise_linear else "R", "pennington2017")
    return m1_tag, (("R", "pennington2017") if critical else ("D", "derived"))


@dataclass(frozen=True, kw_only=True)
class JacobianMoments:
    """``m1 = (1/N)·tr JJᵀ`` and the scale-free variance ``v = m2/m1² − 1``."""

    m1: Prediction
    v: Prediction


def jacobian_m1_v(
    *,
    act: ActLike,
    sw2: float | np.ndarray,
    sb2: float | np.ndarray,
    depth: int,
    weights: str = "gaussian",
    q_profile: np.ndarray | None = None,
    q1: float | None = None,
    tap: str = "post",
) -> JacobianMoments:
    """``m1`` and ``v`` of ``JJᵀ`` for a depth-``L`` MLP (§3.2–§3.3).

    - ``tap="post"`` (``∂x^L/∂x^0``): ``m1 = Π_l σ_{w,l}²·μ1(q^l)``,
      ``v = Σ_l [μ2/μ1² − 1 − s1]``.
    - ``tap="pre"`` (``∂h^L/∂x^0 = W^L D^{L−1} ⋯ W^1``): ``m1 = Π_l σ_{w,l}²·Π_{l<L} μ1(q^l)``,
      ``v = −L·s1 + Σ_{l<L} (μ2/μ1² − 1)``.

    ``q^l`` is ``q*`` (input at the fixed point, §0) unless ``q_profile`` (``q^1..q^L``) or
    ``q1`` (then the length map gives the rest) is passed. ``sw2``, ``sb2`` may be per layer.
    """
    lay = _layers(act, sw2, sb2, depth, q_profile, q1)
    s1 = S1[check.weights(weights)]
    if tap not in ("post", "pre"):
        raise ValueError(f"tap must be 'post' (∂x^L/∂x^0) or 'pre' (∂h^L/∂x^0), got {tap!r}")
    mu1, mu2 = _mus(lay, 1), _mus(lay, 2)
    n = lay.depth if tap == "post" else max(lay.depth - 1, 0)
    m1 = float(np.prod(lay.sw2) * np.prod(mu1[:n]))
    v = float(-lay.depth * s1 + np.sum(mu2[:n] / mu1[:n] ** 2 - 1))
    critical = bool(np.allclose(lay.sw2 * mu1, 1.0, rtol=0, atol=1e-8))
    (t1, c1), (t2, c2) = _tags(lay, tap, critical)
    name = lay.act.name
    return JacobianMoments(
        m1=Prediction(
            value=m1,
            tag=t1,
            cite=c1,
            section="§3.2",
            what=f"m1 = Π sw2·μ1 ({name}, {weights}, L={lay.depth}, tap={tap})",
        ),
        v=Prediction(
            value=v,
            tag=t2,
            cite=c2,
            section="§3.2",
            what=f"v = Σ (μ2/μ1² − 1 − s1) ({name}, {weights}, L={lay.depth}, tap={tap})",
        ),
    )


# ---------------------------------------------------------------- truncated power series (§3.4)


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


def _layer_series(lay: _Layers, weights: str, order: int, tap: str) -> list[np.ndarray]:
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
    order ``K`` in the ``N → ∞`` limit; ``K ≤ 8``. Layers as in :func:`jacobian_m1_v`.
    """
    lay = _layers(act, sw2, sb2, depth, q_profile, q1)
    w = check.weights(weights)
    order = check.integer(order, "order", minimum=1)
    if order > _MAX_ORDER:
        raise ValueError(f"order={order} > {_MAX_ORDER}: float64 series reversion is unreliable")
    if tap not in ("post", "pre"):
        raise ValueError(f"tap must be 'post' or 'pre', got {tap!r}")
    _mus(lay, 1)  # rejects μ1 = 0
    s = np.concatenate([[1.0], np.zeros(order - 1)])
    for factor in _layer_series(lay, w, order, tap):
        s = _mul(s, factor)
    return Prediction(
        value=_moments_from_s(s),
        tag="D",
        cite="derived",
        section="§3.4",
        what=f"m_1..m_{order} by S-transform series ({lay.act.name}, {w}, L={lay.depth}, {tap})",
    )


# ---------------------------------------------------------------- per-depth predictions


@dataclass(frozen=True, kw_only=True)
class MLPPrediction:
    """Per-depth predictions for the Jacobians ``∂(layer l)/∂x^0``, ``l = 1..L``.

    Every array is indexed by ``l − 1``. ``edge_norm`` (``λ_max/m1``), ``zero_fraction`` and
    ``v_finite`` are ``None`` where the theory has no formula (non-piecewise-linear φ, ``p = 1``,
    or not a linear Gaussian net with a given width).
    """

    depths: np.ndarray
    q: Prediction
    m1: Prediction
    v: Prediction
    m3_norm: Prediction
    edge_norm: Prediction | None = None
    zero_fraction: Prediction | None = None
    v_finite: Prediction | None = None

    def as_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays keyed by field name (the ``None`` fields left out)."""
        out: dict[str, np.ndarray] = {"depths": self.depths}
        for name in ("q", "m1", "v", "m3_norm", "edge_norm", "zero_fraction", "v_finite"):
            pred = getattr(self, name)
            if pred is not None:
                out[name] = np.asarray(pred.value)
        return out


def predict_mlp(
    *,
    act: ActLike,
    sw2: float | np.ndarray,
    sb2: float | np.ndarray,
    depth: int,
    weights: str = "gaussian",
    width: int | None = None,
    q1: float | None = None,
    tap: str = "post",
) -> MLPPrediction:
    """Everything the theory predicts for each depth ``l = 1..L`` of one MLP (§3.2–§3.6, §6).

    ``m1`` and ``v`` as in :func:`jacobian_m1_v`, ``m3/m1³`` by the series method (§3.4), and
    for piecewise-linear φ at constant ``p`` the edge ``λ_max/m1`` and the zero atom (with the
    finite-``width`` heuristic when ``width`` is given). For linear Gaussian nets with ``width``,
    ``v_finite`` uses the exact finite-``N`` ``m2`` (use it when ``L/N > 0.01``, §6). The input
    is at the fixed point unless ``q1`` is given.
    """
    lay = _layers(act, sw2, sb2, depth, None, q1)
    w = check.weights(weights)
    if tap not in ("post", "pre"):
        raise ValueError(f"tap must be 'post' or 'pre', got {tap!r}")
    N = None if width is None else check.integer(width, "width", minimum=1)
    L, a, s1 = lay.depth, lay.act, S1[w]
    mu1, mu2 = _mus(lay, 1), _mus(lay, 2)
    ratio = mu2 / mu1**2 - 1
    post_m1 = np.cumprod(lay.sw2 * mu1)
    post_v = np.cumsum(ratio - s1)
    if tap == "post":
        m1, v = post_m1, post_v
    else:  # depth l: layers 1..l−1 complete, then W^l alone
        prev_m1, prev_r = np.concatenate([[1.0], post_m1[:-1]]), np.concatenate([[0], ratio])
        m1, v = prev_m1 * lay.sw2, np.cumsum(prev_r[:-1] - s1)
    m3 = np.empty(L)
    s = np.array([1.0, 0.0, 0.0])
    for layer, factor in enumerate(_layer_series(lay, w, 3, "post")):
        if tap == "pre":
            head = _mul(s, _w_series(float(lay.sw2[layer]), w, 3))
            m3[layer] = _ratio3(_moments_from_s(head))
        s = _mul(s, factor)
        if tap == "post":
            m3[layer] = _ratio3(_moments_from_s(s))
    critical = bool(np.allclose(lay.sw2 * mu1, 1.0, rtol=0, atol=1e-8))
    (t1, c1), (t2, c2) = _tags(lay, tap, critical)
    desc = f"{a.name}, {w}, tap={tap}, per depth"
    pred = MLPPrediction(
        depths=np.arange(1, L + 1),
        q=Prediction(value=lay.q, tag="R", cite="poole2016", section="§1.2", what=f"q^l ({desc})"),
        m1=Prediction(value=m1, tag=t1, cite=c1, section="§3.2", what=f"m1 ({desc})"),
        v=Prediction(value=v, tag=t2, cite=c2, section="§3.2", what=f"v ({desc})"),
        m3_norm=Prediction(
            value=m3, tag="D", cite="derived", section="§3.4", what=f"m3/m1³ by series ({desc})"
        ),
    )
    extra: dict[str, Prediction] = {}
    ps = [] if L == 0 or a.active_fraction is None else [a.active_fraction(q) for q in lay.q]
    constant_p = bool(ps) and np.ptp(ps) == 0 and np.ptp(lay.sw2) == 0
    if constant_p and tap == "post":
        p, sw = float(ps[0]), float(lay.sw2[0])
        edges = [float(pl_edge(depth=d, p=p, weights=w, sw2=sw).value) for d in range(1, L + 1)]
        extra["edge_norm"] = Prediction(
            value=np.array(edges) / m1,
            tag="D",
            cite="derived",
            section="§3.6",
            what=f"λ_max/m1 edge ({desc})",
        )
        if p < 1:
            zf = [float(zero_atom(p=p, width=N, depth=d).value) for d in range(1, L + 1)]
            extra["zero_fraction"] = Prediction(
                value=np.array(zf),
                tag="D",
                cite="derived",
                section="§3.6",
                what=f"zero fraction of JJᵀ ({desc}, N={N})",
            )
    if a.name == "linear" and w == "gaussian" and N is not None and tap == "post":
        m2 = [float(linear_gaussian_m2_finite(depth=d, width=N).value) for d in range(1, L + 1)]
        extra["v_finite"] = Prediction(
            value=np.array(m2) - 1,
            tag="D",
            cite="derived",
            section="§6",
            what=f"v with the exact finite-N m2 (linear Gaussian, N={N})",
        )
    return dataclasses.replace(pred, **extra)


def _ratio3(m: np.ndarray) -> float:
    return float(m[2] / m[0] ** 3)
