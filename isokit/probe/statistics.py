"""Spectral statistics of a Jacobian from its singular values (``docs/probes.md §5``).

For one tap and one example, ``s_1 ≥ … ≥ s_r ≥ 0`` are the ``r = min(D, n_in)`` singular values of
``J = ∂h/∂x`` (structural zeros of the larger Gram are never included) and ``λ_i = s_i²``.

========================  =========================================================================
name                      formula
========================  =========================================================================
``m1``, ``m2``, ``m3``    ``m_k = (1/r)·Σ λ_i^k``; ``m1 = ‖J‖_F²/r``
``var``                   scale-free variance ``m2/m1² − 1 = Var(λ)/mean(λ)²``
``sigma_max``             ``s_1``
``sigma_min``             ``s_r``
``cond``                  ``s_1/s_r``; ``+inf`` when ``s_r ≤ τ``
``gap``                   isometry gap ``log m1 − (1/r)·Σ log λ_i``; ``+inf`` when some ``s_i ≤ τ``
``mean_log_s``            ``(1/r)·Σ log s_i``; ``−inf`` when some ``s_i ≤ τ``
``near``                  ``(1/r)·#{i : |log s_i| ≤ log(1 + band)}``, i.e. ``s_i ∈ [1/1.1, 1.1]``
                          (inclusive, 1e-12 relative slack for round-off)
``near_rel``              the same for ``s_i/√m1`` (shape only)
``erank``                 Roy–Vetterli effective rank ``exp(−Σ p_i log p_i)``, ``p_i = s_i/Σ_j s_j``
``pr``                    participation ratio ``(Σλ)²/Σλ² = r·m1²/m2 = r/(1 + var)``
``lmax_over_m1``          ``s_1²/m1``
``var_raw``               raw variance of ``λ``: ``m2 − m1² = Var(λ)``
``rank``                  numerical rank ``k = #{i : s_i > τ}`` (the zero rule below)
``rank_fraction``         ``k/r``
``zero_fraction``         ``(r − k)/r = (1/r)·#{i : s_i ≤ τ}``, the mass of the atom at zero
``m1_nonzero``            ``(1/k)·Σ_{i≤k} λ_i = r·m1/k``: the mean over the non-zero part
``var_nonzero``           ``m2'/m1'² − 1`` over the non-zero part (``m_j' = (1/k)·Σ_{i≤k} λ_i^j``)
``gap_nonzero``           ``log m1' − (1/k)·Σ_{i≤k} log λ_i``, finite whenever ``k ≥ 1``
``cond_nonzero``          ``s_1/s_k``
``m1_bulk``               ``(1/(r−1))·Σ_{i≥2} λ_i``: the mean without the largest eigenvalue
``var_bulk``              ``m2''/m1''² − 1`` over ``λ_2..λ_r`` (the bulk; ``r ≥ 2`` only)
========================  =========================================================================

**The non-zero part.** A ReLU mask, a patch-reading stem or any bottleneck makes ``J`` rank
deficient; then ``cond``, ``gap`` and ``mean_log_s`` are infinite whatever the rest of the spectrum
does. The ``*_nonzero`` statistics measure isometry on the ``k`` non-zero singular values only and
``rank_fraction`` says how much of the spectrum that is, so the two together separate "loses
directions" from "distorts the ones it keeps". **The bulk** statistics drop ``λ_1``: for ReLU
residual networks the theory predicts the bulk of the spectrum, with one outlier eigenvalue
outside it (``docs/theory.md §4``).

**The zero rule** (:func:`zero_mask`, the one place it lives): a value ``v`` of a spectrum counts
as zero when ``v/v_max ≤ max(n_rows, n_cols)·ε`` (NumPy's ``matrix_rank`` rule), with ``ε`` the
machine epsilon of the probe dtype (float64 by default) and ``v_max`` the largest value of the
same spectrum (one example), i.e. ``s ≤ τ = max(n_rows, n_cols)·ε·s_1`` in the table; without
``n_rows``/``n_cols`` the spectrum length ``r`` stands in for ``max(D, n_in)``. For singular
values (exact tier) the values are ``s`` and ``v_max = s_1``; for eigenvalues of a Gram found by
Lanczos, whose absolute error is about ``ε·θ_max``, the values are the nodes ``θ = s²`` of all
probes of one example and ``v_max = θ_max``. Values that count as zero do so in every
logarithmic statistic, every density's zero atom and every figure, so round-off noise never
turns an infinite gap into a large finite one. A spectrum is *degenerate* (``J = 0``) when
``s_1`` is at or below :data:`DEGENERATE_BELOW`, the smallest normal float64
(:func:`degenerate_mask`).

``near`` uses the band ``[1/(1+band), 1+band]`` (``[1/1.1, 1.1]`` for the default ``band = 0.1``),
symmetric in ``log s``. ``docs/probes.md §5`` writes the band as ``|log s| ≤ δ``, i.e.
``[e^{−0.1}, e^{0.1}] = [0.905, 1.105]``; the two differ by 0.5 % at the edges.

**Degenerate spectra** (``s_1`` at or below the smallest normal float64, i.e. ``J = 0``, e.g. an
all-dead ReLU network): every moment (``var_raw`` and the ``*_nonzero``/``*_bulk`` means too),
``sigma_*``, ``near``, ``near_rel``, ``erank``, ``pr``, ``lmax_over_m1``, ``rank`` and
``rank_fraction`` are 0, ``zero_fraction = 1``, ``cond = gap = cond_nonzero = gap_nonzero = +inf``,
``mean_log_s = −inf``, and ``var = var_nonzero = var_bulk = degenerate_var``. Following
``docs/probes.md §6`` the default is NaN (``0/0``); the :class:`~isokit.probe.Profile` passes
``degenerate_var=+inf`` instead so that it carries no NaN: a dead Jacobian is infinitely far from
isometry by every distance-to-isometry measure (``var``, ``gap``, ``cond``), and ``+inf`` neither
poisons means over depth into NaN nor breaks plots (matplotlib skips non-finite points). Test
:func:`degenerate_mask` (or the Profile's ``degenerate`` flag) rather than the values.

Every statistic is computed from ``t = s/s_1`` and rescaled, so spectra near the float64 range
limits (``s ~ 1e-200`` deep in an ordered phase) give finite, correct scale-free statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BULK_STAT_NAMES",
    "DEGENERATE_BELOW",
    "STAT_NAMES",
    "degenerate_mask",
    "dtype_eps",
    "saturated_mask",
    "stats",
    "zero_mask",
]

#: Names of the statistics returned by :func:`stats`, in a stable order.
STAT_NAMES: tuple[str, ...] = (
    "m1",
    "m2",
    "m3",
    "var",
    "sigma_max",
    "sigma_min",
    "cond",
    "gap",
    "mean_log_s",
    "near",
    "near_rel",
    "erank",
    "pr",
    "lmax_over_m1",
    "var_raw",
    "rank",
    "rank_fraction",
    "zero_fraction",
    "m1_nonzero",
    "var_nonzero",
    "gap_nonzero",
    "cond_nonzero",
    "m1_bulk",
    "var_bulk",
)

#: The statistics of the bulk (``λ_2..λ_r``), defined only when ``r ≥ 2``.
BULK_STAT_NAMES: tuple[str, ...] = ("m1_bulk", "var_bulk")

_F64_EPS = float(np.finfo(np.float64).eps)
#: ``s_1`` at or below this (the smallest normal float64) makes a spectrum degenerate (``J = 0``).
DEGENERATE_BELOW = float(np.finfo(np.float64).tiny)


def dtype_eps(dtype: Any) -> float:
    """Machine epsilon of a torch or numpy floating dtype, the ``ε`` of the zero rule.

    Example:
        >>> import torch
        >>> dtype_eps(torch.float32) == float(np.finfo(np.float32).eps)
        True
    """
    name = str(dtype).replace("torch.", "")
    return float(np.finfo(np.dtype(name)).eps)


def _as_spectra(singular_values: np.ndarray | Sequence[float]) -> np.ndarray:
    s = np.asarray(
        singular_values.detach().cpu().numpy()
        if hasattr(singular_values, "detach")
        else singular_values,
        dtype=np.float64,
    )
    if s.ndim == 0 or s.shape[-1] == 0:
        raise ValueError(
            f"stats needs at least one singular value along the last axis, got shape {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("singular values must be finite (overflow in the forward pass?)")
    if np.any(s < 0):
        raise ValueError("singular values must be non-negative")
    return -np.sort(-s, axis=-1)  # descending


def zero_mask(
    values: np.ndarray | Sequence[float],
    *,
    n_rows: int | None = None,
    n_cols: int | None = None,
    eps: float = _F64_EPS,
    axis: int | tuple[int, ...] | None = -1,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """``True`` where a value counts as zero by the zero rule (module docstring).

    Args:
        values: singular values ``s`` (exact tier), or Gram eigenvalues ``θ = s²`` (Lanczos
            nodes, clamped at 0): the rule is applied to what was computed.
        n_rows, n_cols: ``D`` and ``n_in`` of the Jacobian; if both are ``None`` the length of
            ``values`` along ``axis`` (``r``) stands in.
        eps: machine epsilon of the probe dtype (:func:`dtype_eps`).
        axis: the axes of one spectrum, whose largest value is the scale (``None``: all).
        where: ``True`` on the entries that are part of the spectrum (padding is ``False``: it
            sets no scale and is never zero).

    A spectrum whose largest value is at or below :data:`DEGENERATE_BELOW` (``J = 0``) is zero
    throughout.

    Example:
        >>> zero_mask([1.0, 1e-20, 0.5]).tolist()
        [False, True, False]
        >>> theta = np.array([[1.0, 1e-20], [4.0, 0.0]])  # Lanczos nodes of two probes
        >>> zero_mask(theta, n_rows=3, n_cols=2, axis=None, where=[[True, True], [True, False]])
        array([[False,  True],
               [False, False]])
    """
    v = np.asarray(values, dtype=np.float64)
    big = max(n_rows or 0, n_cols or 0)
    if not big:
        if not isinstance(axis, int):
            raise ValueError("zero_mask over several axes needs n_rows and n_cols")
        big = v.shape[axis]
    valid = np.ones(v.shape, dtype=bool) if where is None else np.broadcast_to(where, v.shape)
    scale = np.max(np.where(valid, v, -math.inf), axis=axis, keepdims=True, initial=-math.inf)
    safe = np.where(scale > DEGENERATE_BELOW, scale, 1.0)
    return (v / safe <= big * eps) & valid


def degenerate_mask(singular_values: np.ndarray | Sequence[float]) -> np.ndarray | bool:
    """``True`` where the spectrum vanishes (``s_1`` at or below :data:`DEGENERATE_BELOW`).

    Example:
        >>> degenerate_mask([[1.0, 0.5], [0.0, 0.0]]).tolist()
        [False, True]
    """
    s = _as_spectra(singular_values)
    out = s[..., 0] <= DEGENERATE_BELOW
    return bool(out) if out.ndim == 0 else out


def saturated_mask(
    singular_values: np.ndarray | Sequence[float], *, eps: float = _F64_EPS
) -> np.ndarray | bool:
    """``True`` where ``s_r/s_1 < 1e3·ε`` (``docs/probes.md §6``): statistics using ``s_r`` are
    unreliable.

    Degenerate spectra are saturated too.

    Example:
        >>> saturated_mask([1.0, 1e-20]), saturated_mask([1.0, 0.5])
        (True, False)
    """
    s = _as_spectra(singular_values)
    out = ~(s[..., -1] >= 1e3 * eps * s[..., 0]) | (s[..., 0] <= DEGENERATE_BELOW)
    return bool(out) if out.ndim == 0 else out


def stats(
    singular_values: np.ndarray | Sequence[float],
    *,
    n_rows: int | None = None,
    n_cols: int | None = None,
    band: float = 0.1,
    eps: float = _F64_EPS,
    degenerate_var: float = math.nan,
) -> dict[str, float] | dict[str, np.ndarray]:
    """The statistics of the module docstring for one spectrum or a batch of spectra.

    Args:
        singular_values: ``[r]`` or ``[..., r]`` non-negative values (any order; sorted here).
        n_rows, n_cols: ``D`` and ``n_in`` of the Jacobian, for the zero threshold ``τ``.
        band: half-width of ``near`` in ``log(1 + band)`` units (``[1/1.1, 1.1]`` for 0.1).
        eps: machine epsilon of the dtype the Jacobian was computed in.
        degenerate_var: ``var`` of a vanishing spectrum (NaN per ``docs/probes.md §6``; the Profile
            stores ``+inf``).

    Returns:
        ``{name: value}`` over :data:`STAT_NAMES` (without :data:`BULK_STAT_NAMES` when
        ``r = 1``): Python floats for one spectrum, arrays of the leading shape for a batch.

    Example:
        >>> st = stats([1.0, 1.0, 0.5])
        >>> round(st["m1"], 4), st["sigma_min"], st["cond"]
        (0.75, 0.5, 2.0)
        >>> st = stats([[1.0, 0.0]])  # a zero singular value: infinitely far ...
        >>> st["gap"].tolist(), st["rank_fraction"].tolist(), st["gap_nonzero"].tolist()
        ([inf], [0.5], [0.0])
    """
    if not band > 0:
        raise ValueError(f"band must be positive, got {band}")
    s = _as_spectra(singular_values)
    r = s.shape[-1]
    s1 = s[..., 0]
    degenerate = s1 <= DEGENERATE_BELOW
    safe1 = np.where(degenerate, 1.0, s1)
    t = s / safe1[..., None]  # in [0, 1], t_1 = 1 unless degenerate
    t2 = t * t
    mu1, mu2, mu3 = t2.mean(-1), (t2 * t2).mean(-1), (t2 * t2 * t2).mean(-1)
    scale2 = safe1 * safe1
    with np.errstate(over="ignore", under="ignore"):
        m1 = mu1 * scale2
        m2 = mu2 * scale2**2
        m3 = mu3 * scale2**3
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(mu2 / mu1**2 - 1.0, 0.0)  # ≥ 0 by Cauchy–Schwarz; clip round-off

    is_zero = zero_mask(s, n_rows=n_rows, n_cols=n_cols, eps=eps)
    any_zero = is_zero.any(-1)
    sr = s[..., -1]
    cond = np.where(is_zero[..., -1], math.inf, safe1 / np.where(sr > 0, sr, 1.0))

    with np.errstate(divide="ignore"):
        log_t = np.where(is_zero, -math.inf, np.log(np.where(is_zero, 1.0, t)))
    finite_mean_log_t = np.where(is_zero, 0.0, log_t).mean(-1)
    mean_log_s = np.where(any_zero, -math.inf, finite_mean_log_t + np.log(safe1))
    # gap = log mean(λ) − mean(log λ), scale-free: log mu1 − 2·mean(log t)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(any_zero, math.inf, np.log(mu1) - 2.0 * finite_mean_log_t)
    gap = np.where(np.isinf(gap), gap, np.maximum(gap, 0.0))

    lim = math.log1p(band) * (1 + 1e-12)  # inclusive band, with slack for round-off
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.where(is_zero | (s <= 0), -math.inf, np.log(np.where(s > 0, s, 1.0)))
        log_rel = log_t - 0.5 * np.log(mu1)[..., None]
    near = (np.abs(log_s) <= lim).mean(-1)
    near_rel = (np.abs(np.where(is_zero, -math.inf, log_rel)) <= lim).mean(-1)

    with np.errstate(divide="ignore", invalid="ignore"):
        p = t / t.sum(-1, keepdims=True)
        ent = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1)
        erank = np.exp(ent)
        pr = r * mu1**2 / mu2
        lmax_over_m1 = 1.0 / mu1

    out = {
        "m1": m1,
        "m2": m2,
        "m3": m3,
        "var": var,
        "sigma_max": s1,
        "sigma_min": sr,
        "cond": cond,
        "gap": gap,
        "mean_log_s": mean_log_s,
        "near": near,
        "near_rel": near_rel,
        "erank": erank,
        "pr": pr,
        "lmax_over_m1": lmax_over_m1,
        "var_raw": np.maximum(mu2 - mu1**2, 0.0) * scale2**2,
    }
    out |= _nonzero_part(t, is_zero, scale2)
    if r >= 2:
        out |= _bulk(t, scale2, degenerate_var)
    if np.any(degenerate):
        fill = {
            "var": degenerate_var,
            "cond": math.inf,
            "gap": math.inf,
            "mean_log_s": -math.inf,
            "zero_fraction": 1.0,
            "var_nonzero": degenerate_var,
            "gap_nonzero": math.inf,
            "cond_nonzero": math.inf,
            "var_bulk": degenerate_var,
        }
        for name in out:
            out[name] = np.where(degenerate, fill.get(name, 0.0), out[name])
    if s.ndim == 1:
        return {name: float(value) for name, value in out.items()}
    return {name: np.asarray(value, dtype=np.float64) for name, value in out.items()}


def _nonzero_part(t: np.ndarray, is_zero: np.ndarray, scale2: np.ndarray) -> dict[str, np.ndarray]:
    """Rank and the isometry statistics of the non-zero part of ``t = s/s_1`` (sorted, zeros last).

    A degenerate spectrum has rank 0; its values are replaced by the caller.
    """
    r = t.shape[-1]
    keep = ~is_zero
    k = keep.sum(-1)
    k_safe = np.maximum(k, 1)
    t2 = np.where(keep, t * t, 0.0)
    mu1 = t2.sum(-1) / k_safe
    mu2 = (t2 * t2).sum(-1) / k_safe
    t_k = np.take_along_axis(t, (k_safe - 1)[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        mean_log_t = np.where(keep, np.log(np.where(keep, t, 1.0)), 0.0).sum(-1) / k_safe
        gap = np.maximum(np.log(mu1) - 2.0 * mean_log_t, 0.0)
        var = np.maximum(mu2 / mu1**2 - 1.0, 0.0)
        return {
            "rank": k.astype(np.float64),
            "rank_fraction": k / r,
            "zero_fraction": is_zero.mean(-1),
            "m1_nonzero": mu1 * scale2,
            "var_nonzero": var,
            "gap_nonzero": gap,
            "cond_nonzero": 1.0 / t_k,
        }


def _bulk(t: np.ndarray, scale2: np.ndarray, empty_var: float) -> dict[str, np.ndarray]:
    """Mean and scale-free variance of ``λ_2..λ_r`` (the spectrum without its largest eigenvalue).

    A bulk of zeros (``J`` of rank 1) has no scale-free variance: ``empty_var``, as for ``J = 0``.
    """
    t2 = t[..., 1:] ** 2
    mu1, mu2 = t2.mean(-1), (t2 * t2).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        var = np.where(
            mu1 > 0, np.maximum(mu2 / np.where(mu1 > 0, mu1, 1.0) ** 2 - 1.0, 0.0), empty_var
        )
        return {"m1_bulk": mu1 * scale2, "var_bulk": var}
