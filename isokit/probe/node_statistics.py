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


def slq_statistics(per_example, *, r, m1, n_probes, steps, band, eps, D, n_in):
    """Node statistics, their SEs across probes, the quadratures and the Ritz bounds."""
    B = len(per_example)
    names = (
        "gap",
        "mean_log_s",
        "near",
        "near_rel",
        "erank",
        "zero_frac",
        "sigma_max",
        "sigma_min",
        "cond",
        "lmax_over_m1",
    )
    st = {k: np.zeros(B) for k in names}
    se = {k: np.zeros(B) for k in ("gap", "mean_log_s", "near", "near_rel", "zero_frac")}
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
            st["gap"][b] = st["cond"][b] = math.inf
            st["mean_log_s"][b] = -math.inf
            st["zero_frac"][b] = 1.0
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
        with np.errstate(divide="ignore"):
            log_s = np.where(mask & ~zero, 0.5 * np.log(np.where(theta > 0, theta, 1.0)), 0.0)
        zmass = (w * zero).sum(1)  # per probe
        mlog = (w * log_s).sum(1)
        m1_q = (w * theta).sum(1)
        near = (w * ((np.abs(log_s) <= lim) & mask & ~zero)).sum(1)
        rel = log_s - 0.5 * np.log(np.where(m1_q > 0, m1_q, 1.0))[:, None]
        near_rel = (w * ((np.abs(rel) <= lim) & mask & ~zero)).sum(1)
        any_zero = bool((zmass > 0).any())

        def mean_se(v, n=n_probes):
            return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf)

        st["zero_frac"][b], se["zero_frac"][b] = mean_se(zmass)
        st["near"][b], se["near"][b] = mean_se(near)
        st["near_rel"][b], se["near_rel"][b] = mean_se(near_rel)
        if any_zero:
            st["mean_log_s"][b], st["gap"][b] = -math.inf, math.inf
            se["mean_log_s"][b] = se["gap"][b] = 0.0
        else:
            st["mean_log_s"][b], se["mean_log_s"][b] = mean_se(mlog)
            gap_p = np.log(m1_q) - 2 * mlog
            g = float(math.log(m1_q.mean()) - 2 * mlog.mean())
            st["gap"][b], se["gap"][b] = max(g, 0.0), mean_se(gap_p)[1]
        # Effective rank from the pooled quadrature: p_i ∝ s_i over r values.
        s_nodes = np.sqrt(theta) * mask
        es = float((w * s_nodes).sum() / n_probes)
        with np.errstate(divide="ignore", invalid="ignore"):
            eslogs = float(
                (w * np.where(s_nodes > 0, s_nodes * np.log(s_nodes), 0.0)).sum() / n_probes
            )
        st["erank"][b] = math.exp(math.log(r * es) - eslogs / es) if es > 0 else 0.0
        st["sigma_max"][b] = rb.sigma_max_lower
        st["sigma_min"][b] = rb.sigma_min_upper
        # The smallest node is the Ritz value θ_min behind σ_min_upper: infinite if it is zero.
        st["cond"][b] = math.inf if zero.any() else rb.sigma_max_lower / rb.sigma_min_upper
        st["lmax_over_m1"][b] = rb.theta_max / m1[b] if m1[b] > 0 else 0.0
        ritz["sigma_max_lower"][b] = rb.sigma_max_lower
        ritz["sigma_min_upper"][b] = rb.sigma_min_upper
        ritz["residual_max"][b] = rb.residual_max
        ritz["residual_min"][b] = rb.residual_min
        ritz["converged"][b] = rb.converged
    return st, se, {"nodes": nodes, "weights": weights}, ritz, prods
