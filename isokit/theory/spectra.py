"""Free-probability moments of ``JJᵀ`` for fully connected networks (``docs/theory.md`` §3, §6).

``J = D^L W^L ⋯ D^1 W^1`` with ``D^l = diag(φ'(h^l))``; ``m_k = (1/N)·tr(JJᵀ)^k``, the
scale-free variance ``var = m2/m1² − 1`` and the raw variance ``var_raw = m2 − m1² = m1²·var``
(the probe statistics of the same names). The product rule
``S_{JJᵀ} = Π_l S_{W_lW_lᵀ}·S_{D_l²}`` [S: Pennington et al. 2017, eq. (12) per the secondary
source] gives:

- ``m1 = Π_l σ_{w,l}²·μ1(q^l)`` and ``var = Σ_l [μ2(q^l)/μ1(q^l)² − 1 − s1]`` with ``s1 = −1``
  (Gaussian) or ``0`` (orthogonal) (§3.2–§3.3; [R] at criticality, [D] otherwise);
- per-depth predictions for a whole MLP (``predict_mlp``), the entry point for overlays.

Every moment to order ``K`` by the series method lives in :mod:`isokit.theory.series`, exact
results for piecewise-linear φ in :mod:`isokit.theory.piecewise_linear`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from isokit.theory import _validate as check
from isokit.theory._layers import S1, Layers, layer_mus, provenance, setup_layers
from isokit.theory.activations import ActLike
from isokit.theory.piecewise_linear import linear_gaussian_m2_finite, pl_edge, zero_atom
from isokit.theory.prediction import Prediction, weakest_tag
from isokit.theory.series import _layer_series, _moments_from_s, _mul, _w_series

__all__ = ["JacobianMoments", "MLPPrediction", "jacobian_moments", "predict_mlp"]


@dataclass(frozen=True, kw_only=True)
class JacobianMoments:
    """``m1 = (1/N)·tr JJᵀ``, the scale-free variance ``var = m2/m1² − 1`` and the raw
    variance ``var_raw = m2 − m1²`` of the eigenvalues of ``JJᵀ``.

    Example:
        >>> moments = jacobian_moments(act="linear", sw2=1.0, sb2=0.0, depth=4,
        ...                            weights="orthogonal")
        >>> isinstance(moments, JacobianMoments), moments.var.value  # an exact isometry
        (True, 0.0)
    """

    m1: Prediction
    var: Prediction
    var_raw: Prediction


def _var_raw(m1: Prediction, var: Prediction, what: str, section: str) -> Prediction:
    """``var_raw = m2 − m1² = m1²·var``, sourced no better than its two factors."""
    value = np.asarray(m1.value, dtype=float) ** 2 * np.asarray(var.value, dtype=float)
    return Prediction(
        value=float(value) if value.ndim == 0 else value,
        tag=weakest_tag(m1.tag, var.tag),
        cite=var.cite if var.cite != "derived" else m1.cite,
        section=section,
        what=what,
        statistic="var_raw",
    )


def jacobian_moments(
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
    """``m1``, ``var`` and ``var_raw`` of ``JJᵀ`` for a depth-``L`` MLP (§3.2–§3.3).

    - ``tap="post"`` (``∂x^L/∂x^0``): ``m1 = Π_l σ_{w,l}²·μ1(q^l)``,
      ``var = Σ_l [μ2/μ1² − 1 − s1]``.
    - ``tap="pre"`` (``∂h^L/∂x^0 = W^L D^{L−1} ⋯ W^1``): ``m1 = Π_l σ_{w,l}²·Π_{l<L} μ1(q^l)``,
      ``var = −L·s1 + Σ_{l<L} (μ2/μ1² − 1)``.

    ``var_raw = m1²·var``. ``q^l`` is ``q*`` (input at the fixed point, §0) unless ``q_profile``
    (``q^1..q^L``) or ``q1`` (then the length map gives the rest) is passed. ``sw2``, ``sb2``
    may be per layer.

    Example:
        >>> moments = jacobian_moments(act="relu", sw2=2.0, sb2=0.0, depth=4)  # He, critical
        >>> moments.m1.value, moments.var.value, moments.var_raw.value  # var = 2L (Gaussian)
        (1.0, 8.0, 8.0)
    """
    lay = setup_layers(act, sw2, sb2, depth, q_profile, q1)
    s1 = S1[check.weights("weights", weights)]
    if tap not in ("post", "pre"):
        raise ValueError(f"tap must be 'post' (∂x^L/∂x^0) or 'pre' (∂h^L/∂x^0), got {tap!r}")
    mu1, mu2 = layer_mus(lay, 1), layer_mus(lay, 2)
    n = lay.depth if tap == "post" else max(lay.depth - 1, 0)
    m1 = check.result("m1", float(np.prod(lay.sw2) * np.prod(mu1[:n])))
    var = check.result("var", float(-lay.depth * s1 + np.sum(mu2[:n] / mu1[:n] ** 2 - 1)))
    critical = bool(np.allclose(lay.sw2 * mu1, 1.0, rtol=0, atol=1e-8))
    (t1, c1), (t2, c2) = provenance(lay, tap, critical)
    desc = f"{lay.act.name}, {weights}, L={lay.depth}, tap={tap}"
    m1_pred = Prediction(
        value=m1, tag=t1, cite=c1, section="§3.2", what=f"m1 = Π sw2·μ1 ({desc})", statistic="m1"
    )
    var_pred = Prediction(
        value=var,
        tag=t2,
        cite=c2,
        section="§3.2",
        what=f"var = Σ (μ2/μ1² − 1 − s1) ({desc})",
        statistic="var",
    )
    return JacobianMoments(
        m1=m1_pred,
        var=var_pred,
        var_raw=_var_raw(m1_pred, var_pred, f"var_raw = m1²·var ({desc})", "§3.2"),
    )


@dataclass(frozen=True, kw_only=True)
class MLPPrediction:
    """Per-depth predictions for the Jacobians ``∂(layer l)/∂x^0``, ``l = 1..L``.

    Every array is indexed by ``l − 1``. ``edge_norm`` (``λ_max/m1``), ``zero_fraction`` and
    ``var_finite`` are ``None`` where the theory has no formula (non-piecewise-linear φ,
    ``p = 1``, or not a linear Gaussian net with a given width). ``q`` is NaN where the length
    map has no fixed point and the moments need none (ReLU with ``σ_w² > 2``: ``μ_k`` does not
    depend on ``q``).

    Example:
        >>> pred = predict_mlp(act="linear", sw2=1.0, sb2=0.0, depth=3, width=100)
        >>> isinstance(pred, MLPPrediction), sorted(pred.as_dict())[:5]
        (True, ['depths', 'edge_norm', 'm1', 'm3_norm', 'q'])
        >>> sorted(pred.as_dict())[5:]
        ['var', 'var_finite', 'var_raw']
    """

    depths: np.ndarray
    q: Prediction
    m1: Prediction
    var: Prediction
    var_raw: Prediction
    m3_norm: Prediction
    edge_norm: Prediction | None = None
    zero_fraction: Prediction | None = None
    var_finite: Prediction | None = None

    def as_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays keyed by field name (the ``None`` fields left out)."""
        out: dict[str, np.ndarray] = {"depths": self.depths}
        names = ("q", "m1", "var", "var_raw", "m3_norm", "edge_norm", "zero_fraction", "var_finite")
        for name in names:
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

    ``m1``, ``var`` and ``var_raw`` as in :func:`jacobian_moments`, ``m3/m1³`` by the series
    method (§3.4), and for piecewise-linear φ at constant ``p`` the edge ``λ_max/m1`` and the
    zero atom (with the finite-``width`` heuristic when ``width`` is given). For linear Gaussian
    nets with ``width``, ``var_finite`` uses the exact finite-``N`` ``m2`` (use it when
    ``L/N > 0.01``, §6). The input is at the fixed point unless ``q1`` is given.

    Example:
        >>> pred = predict_mlp(act="relu", sw2=2.0, sb2=0.0, depth=3)  # He init, critical
        >>> pred.depths, pred.m1.value, pred.var.value
        (array([1, 2, 3]), array([1., 1., 1.]), array([2., 4., 6.]))
    """
    lay = setup_layers(act, sw2, sb2, depth, None, q1)
    w = check.weights("weights", weights)
    if tap not in ("post", "pre"):
        raise ValueError(f"tap must be 'post' or 'pre', got {tap!r}")
    N = None if width is None else check.integer("width", width, minimum=1)
    L, a, s1 = lay.depth, lay.act, S1[w]
    mu1, mu2 = layer_mus(lay, 1), layer_mus(lay, 2)
    ratio = mu2 / mu1**2 - 1
    post_m1 = np.cumprod(lay.sw2 * mu1)
    post_var = np.cumsum(ratio - s1)
    if tap == "post":
        m1, var = post_m1, post_var
    else:  # depth l: layers 1..l−1 complete, then W^l alone
        prev_m1, prev_r = np.concatenate([[1.0], post_m1[:-1]]), np.concatenate([[0], ratio])
        m1, var = prev_m1 * lay.sw2, np.cumsum(prev_r[:-1] - s1)
    m3 = np.empty(L)
    s = np.array([1.0, 0.0, 0.0])
    for layer, factor in enumerate(_layer_series(lay, w, 3, "post")):
        if tap == "pre":
            head = _mul(s, _w_series(float(lay.sw2[layer]), w, 3))
            m3[layer] = _ratio3(_moments_from_s(head))
        s = _mul(s, factor)
        if tap == "post":
            m3[layer] = _ratio3(_moments_from_s(s))
    m1, var = check.result("m1 per depth", m1), check.result("var per depth", var)
    critical = bool(np.allclose(lay.sw2 * mu1, 1.0, rtol=0, atol=1e-8))
    (t1, c1), (t2, c2) = provenance(lay, tap, critical)
    desc = f"{a.name}, {w}, tap={tap}, per depth"
    m1_pred = Prediction(
        value=m1, tag=t1, cite=c1, section="§3.2", what=f"m1 ({desc})", statistic="m1"
    )
    var_pred = Prediction(
        value=var, tag=t2, cite=c2, section="§3.2", what=f"var ({desc})", statistic="var"
    )
    pred = MLPPrediction(
        depths=np.arange(1, L + 1),
        q=Prediction(value=lay.q, tag="R", cite="poole2016", section="§1.2", what=f"q^l ({desc})"),
        m1=m1_pred,
        var=var_pred,
        var_raw=_var_raw(m1_pred, var_pred, f"var_raw = m1²·var ({desc})", "§3.2"),
        m3_norm=Prediction(
            value=m3, tag="D", cite="derived", section="§3.4", what=f"m3/m1³ by series ({desc})"
        ),
    )
    extra = _extras(lay, w, N, tap, m1, desc)
    return dataclasses.replace(pred, **extra)


def _extras(
    lay: Layers, w: str, N: int | None, tap: str, m1: np.ndarray, desc: str
) -> dict[str, Prediction]:
    """The optional fields of :class:`MLPPrediction` where their formulas apply (§3.6, §6)."""
    L, a = lay.depth, lay.act
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
            statistic="lmax_over_m1",
        )
        if p < 1:
            zf = [float(zero_atom(p=p, width=N, depth=d).value) for d in range(1, L + 1)]
            extra["zero_fraction"] = Prediction(
                value=np.array(zf),
                tag="D",
                cite="derived",
                section="§3.6",
                what=f"zero fraction of JJᵀ ({desc}, N={N})",
                statistic="zero_fraction",
            )
    if a.name == "linear" and w == "gaussian" and N is not None and tap == "post":
        m2 = [float(linear_gaussian_m2_finite(depth=d, width=N).value) for d in range(1, L + 1)]
        extra["var_finite"] = Prediction(
            value=np.array(m2) - 1,
            tag="D",
            cite="derived",
            section="§6",
            what=f"var with the exact finite-N m2 (linear Gaussian, N={N})",
            statistic="var",
        )
    return extra


def _ratio3(m: np.ndarray) -> float:
    return float(m[2] / m[0] ** 3)
