"""Node statistics of the matrix-free tier at its SLQ taps (``docs/probes.md §4.3``).

From the Lanczos nodes ``θ`` (Ritz values of the ``r``-side Gram) and weights ``w`` of each probe:
the quadrature estimates of the node statistics of :mod:`isokit.probe.statistics` with their
standard errors across probes, and the Ritz bounds on ``σ_max``/``σ_min``. The zero rule is the
one of :func:`~isokit.probe.statistics.zero_mask`, applied to ``θ`` relative to ``θ_max`` over
the probes of one example.
"""

from __future__ import annotations

import math

import numpy as np

from isokit.probe.statistics import saturated_mask, zero_mask

__all__ = ["saturated_from_ritz", "slq_statistics"]


def saturated_from_ritz(ritz: dict[str, np.ndarray], eps: float) -> np.ndarray:
    """The saturation rule of :func:`~isokit.probe.statistics.saturated_mask` on the Ritz bounds."""
    bounds = np.stack([ritz["sigma_max_lower"], ritz["sigma_min_upper"]], axis=-1)
    return np.asarray(saturated_mask(bounds, eps=eps), dtype=bool)


#: Statistics of the SLQ taps: from the nodes (with standard errors across probes) ...
NODE_STATS: tuple[str, ...] = (
    "gap",
    "mean_log_s",
    "near",
    "near_rel",
    "zero_fraction",
    "gap_nonzero",
)
#: ... and from the nodes, the Ritz bounds and the trace moments together (no standard error).
_OTHER_STATS: tuple[str, ...] = ("erank", "sigma_max", "sigma_min", "cond", "cond_nonzero")


def _per_probe(theta: np.ndarray, w: np.ndarray, mask: np.ndarray, zero: np.ndarray, lim: float):
    """Per-probe quadrature values of the node statistics (``[P]`` arrays)."""
    kept = mask & ~zero
    with np.errstate(divide="ignore"):
        log_s = np.where(kept, 0.5 * np.log(np.where(theta > 0, theta, 1.0)), 0.0)
    m1_q = (w * theta).sum(1)
    rel = log_s - 0.5 * np.log(np.where(m1_q > 0, m1_q, 1.0))[:, None]
    w_kept = w * kept
    mass = np.maximum(w_kept.sum(1), np.finfo(np.float64).tiny)
    return {
        "zero_fraction": (w * zero).sum(1),
        "mean_log_s": (w * log_s).sum(1),
        "m1_q": m1_q,
        "near": (w * ((np.abs(log_s) <= lim) & kept)).sum(1),
        "near_rel": (w * ((np.abs(rel) <= lim) & kept)).sum(1),
        # the same quadratures restricted to the non-zero nodes, renormalized
        "m1_q_nonzero": (w_kept * theta).sum(1) / mass,
        "mean_log_s_nonzero": (w_kept * log_s).sum(1) / mass,
    }


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    n = v.shape[0]
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf)


def _gap(m1_q: np.ndarray, mean_log_s: np.ndarray) -> tuple[float, float]:
    """``log m1 − 2·mean log s`` from the probes' quadratures, with its SE across probes."""
    g = float(math.log(m1_q.mean()) - 2 * mean_log_s.mean())
    return max(g, 0.0), _mean_se(np.log(m1_q) - 2 * mean_log_s)[1]


def _erank(theta: np.ndarray, w: np.ndarray, mask: np.ndarray, r: int) -> float:
    """Effective rank from the pooled quadrature: ``p_i ∝ s_i`` over ``r`` values."""
    n_probes = theta.shape[0]
    s_nodes = np.sqrt(theta) * mask
    es = float((w * s_nodes).sum() / n_probes)
    with np.errstate(divide="ignore", invalid="ignore"):
        eslogs = float((w * np.where(s_nodes > 0, s_nodes * np.log(s_nodes), 0.0)).sum() / n_probes)
    return math.exp(math.log(r * es) - eslogs / es) if es > 0 else 0.0


def slq_statistics(per_example, *, r, moments, n_probes, steps, band, eps, D, n_in):
    """Node statistics, their SEs across probes, the quadratures and the Ritz bounds.

    ``moments`` holds the trace-estimator ``m1``, ``m2`` and ``var`` (``[B]``) of the tap, from
    which the statistics that combine nodes and moments (``*_nonzero``, ``*_bulk``,
    ``lmax_over_m1``) are formed.
    """
    B = len(per_example)
    st = {k: np.zeros(B) for k in NODE_STATS + _OTHER_STATS}
    se = {k: np.zeros(B) for k in NODE_STATS}
    theta_max = np.zeros(B)
    nodes = np.zeros((B, n_probes, steps))
    weights = np.zeros((B, n_probes, steps))
    ritz = {
        k: np.zeros(B)
        for k in ("sigma_max_lower", "sigma_min_upper", "residual_max", "residual_min")
    }
    ritz["converged"] = np.zeros(B, dtype=bool)
    lim = math.log1p(band)
    prods = 0
    for b, item in enumerate(per_example):
        if item is None:  # degenerate example: the documented zero-spectrum values
            for key in ("gap", "cond", "gap_nonzero", "cond_nonzero"):
                st[key][b] = math.inf
            st["mean_log_s"][b] = -math.inf
            st["zero_fraction"][b] = 1.0
            continue
        res, _, rb = item
        prods += res.n_products
        theta = res.nodes.clamp_min(0).numpy()
        w = res.weights.numpy()
        nodes[b, :, : theta.shape[1]] = theta
        weights[b, :, : w.shape[1]] = w
        mask = res.mask.numpy()
        # The zero rule on Gram eigenvalues θ = s², relative to θ_max over the probes.
        zero = zero_mask(theta, n_rows=D, n_cols=n_in, eps=eps, axis=None, where=mask)
        q = _per_probe(theta, w, mask, zero, lim)
        for key in ("zero_fraction", "near", "near_rel"):
            st[key][b], se[key][b] = _mean_se(q[key])
        if (q["zero_fraction"] > 0).any():
            st["mean_log_s"][b], st["gap"][b] = -math.inf, math.inf
        else:
            st["mean_log_s"][b], se["mean_log_s"][b] = _mean_se(q["mean_log_s"])
            st["gap"][b], se["gap"][b] = _gap(q["m1_q"], q["mean_log_s"])
        st["gap_nonzero"][b], se["gap_nonzero"][b] = _gap(
            q["m1_q_nonzero"], q["mean_log_s_nonzero"]
        )
        st["erank"][b] = _erank(theta, w, mask, r)
        st["sigma_max"][b] = rb.sigma_max_lower
        st["sigma_min"][b] = rb.sigma_min_upper
        # The smallest node is the Ritz value θ_min behind σ_min_upper: infinite if it is zero.
        st["cond"][b] = math.inf if zero.any() else rb.sigma_max_lower / rb.sigma_min_upper
        smallest_kept = float(np.min(theta, where=mask & ~zero, initial=math.inf))
        st["cond_nonzero"][b] = rb.sigma_max_lower / math.sqrt(smallest_kept)
        theta_max[b] = rb.theta_max
        ritz["sigma_max_lower"][b] = rb.sigma_max_lower
        ritz["sigma_min_upper"][b] = rb.sigma_min_upper
        ritz["residual_max"][b] = rb.residual_max
        ritz["residual_min"][b] = rb.residual_min
        ritz["converged"][b] = rb.converged
    st |= _with_moments(st, se, moments, theta_max, r)
    return st, se, {"nodes": nodes, "weights": weights}, ritz, prods


def _with_moments(st, se, moments, theta_max: np.ndarray, r: int) -> dict[str, np.ndarray]:
    """Statistics from the nodes' zero mass and ``λ_max`` together with the trace moments.

    With ``k = r·(1 − zero_fraction)`` non-zero eigenvalues, zeros add nothing to ``Σλ^j``, so
    ``m_j' = r·m_j/k``; the bulk drops ``λ_max ≈ θ_max`` (the top Ritz value) from the sums.
    """
    m1, m2, var = (np.asarray(moments[k], dtype=np.float64) for k in ("m1", "m2", "var"))
    kept = 1.0 - st["zero_fraction"]
    safe_kept = np.where(kept > 0, kept, 1.0)
    se["rank_fraction"] = se["zero_fraction"]
    se["rank"] = r * se["zero_fraction"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = {
            "rank": r * kept,
            "rank_fraction": kept,
            "m1_nonzero": np.where(kept > 0, m1 / safe_kept, 0.0),
            "var_nonzero": np.where(kept > 0, np.maximum(kept * (1.0 + var) - 1.0, 0.0), math.inf),
        }
        out["lmax_over_m1"] = np.where(m1 > 0, theta_max / np.where(m1 > 0, m1, 1.0), 0.0)
        if r >= 2:
            bulk1 = np.maximum((r * m1 - theta_max) / (r - 1), 0.0)
            bulk2 = np.maximum((r * m2 - theta_max**2) / (r - 1), 0.0)
            out["m1_bulk"] = bulk1
            out["var_bulk"] = np.where(
                bulk1 > 0,
                np.maximum(bulk2 / np.where(bulk1 > 0, bulk1, 1.0) ** 2 - 1.0, 0.0),
                math.inf,
            )
    return out
