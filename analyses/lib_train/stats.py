"""Rank correlation with a cluster-bootstrap interval, and paired seed differences.

Spearman's ρ is the Pearson correlation of the ranks (ties get their average rank, ``inf``
ranks above every finite value), as :func:`scipy.stats.spearmanr` computes it; here it is
vectorized over bootstrap resamples. The resampling unit is a *cluster* (a scheme): the seeds
of one scheme share its weight law, so they are not independent draws of "an initialization",
and resampling runs one by one would understate the uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["bootstrap_spearman", "paired_effect", "spearman_rows"]


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row of ``x`` [R, n] against the same row of ``y``; NaN where a
    row is constant.

    Example:
        >>> float(spearman_rows(np.array([[1, 2, 3, np.inf]]), np.array([[4, 3, 2, 1]]))[0])
        -1.0
    """
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_spearman(
    x: Sequence[float],
    y: Sequence[float],
    clusters: Sequence[Any],
    *,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """ρ(x, y) with a percentile interval from ``resamples`` cluster-bootstrap resamples.

    Each resample draws as many clusters as there are, with replacement, and takes every run
    of each drawn cluster; resamples whose x or y is constant (ρ undefined) are dropped and
    counted. NaN inputs are refused: the caller decides what a missing value means.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("NaN in the values: map missing outcomes to a stated value first")
    names = list(dict.fromkeys(clusters))
    members = [np.flatnonzero(np.array([c == n for c in clusters])) for n in names]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), size=(resamples, len(names)))
    sizes = {len(m) for m in members}
    if len(sizes) == 1:  # equal clusters: one index array for every resample
        rows = np.stack([np.concatenate([members[j] for j in p]) for p in picks])
        rhos = spearman_rows(x[rows], y[rows])
    else:
        rhos = np.array(
            [
                spearman_rows(x[None, idx], y[None, idx])[0]
                for idx in (np.concatenate([members[j] for j in p]) for p in picks)
            ]
        )
    kept = rhos[~np.isnan(rhos)]
    rho = float(spearman_rows(x[None], y[None])[0])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(kept, [alpha, 1.0 - alpha]) if kept.size else (math.nan, math.nan)
    return {
        "rho": rho,
        "ci": [float(lo), float(hi)],
        "level": level,
        "n_runs": int(x.size),
        "n_clusters": len(names),
        "resamples": resamples,
        "undefined_resamples": int(rhos.size - kept.size),
        "seed": seed,
    }


def paired_effect(diffs: Sequence[float], *, level: float = 0.95) -> dict[str, Any]:
    """Mean of per-seed differences with its Student-t interval (n − 1 degrees of freedom).

    Example:
        >>> e = paired_effect([0.01, 0.03])
        >>> round(e["mean"], 3), e["n"]
        (0.02, 2)
    """
    d = np.asarray(diffs, float)
    mean = float(d.mean())
    if d.size < 2:
        return {"mean": mean, "ci": [math.nan, math.nan], "n": int(d.size), "level": level}
    half = float(stats.t.ppf(0.5 + level / 2.0, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return {"mean": mean, "ci": [mean - half, mean + half], "n": int(d.size), "level": level}
