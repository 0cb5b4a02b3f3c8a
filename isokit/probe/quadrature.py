"""Quadratures of a Lanczos run: SLQ moments and densities, Ritz bounds (``docs/probes.md §4.3``).

From the per-probe tridiagonals of :func:`isokit.probe.krylov.lanczos` (nodes ``θ_i`` and
weights ``w_i = S_{1i}²``):

- :func:`slq_moments`: ``m_j ≈ (1/P)·Σ_p Σ_i w_i θ_i^j`` with standard errors across probes;
- :func:`slq_density`: the kernel-smoothed density of ``s = √θ`` (or ``log s``) with a separate
  zero atom, by the zero rule of :func:`isokit.probe.statistics.zero_mask` applied to ``θ``;
- :func:`ritz_bounds`: certified bounds ``√θ_max ≤ σ_max`` and ``σ_min ≤ √θ_min`` with their
  residuals ``β_k·|S_{k,i}|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from isokit.probe.checks import positive_int
from isokit.probe.krylov import LanczosResult
from isokit.probe.statistics import dtype_eps, zero_mask

__all__ = [
    "RitzBounds",
    "SLQDensity",
    "SLQMoments",
    "ritz_bounds",
    "slq_density",
    "slq_moments",
]

_F64 = torch.float64


@dataclass(frozen=True, kw_only=True)
class SLQMoments:
    """SLQ estimates of ``m_j = (1/r)·tr M^j`` for ``j = 1..k_max``.

    Attributes:
        moments: ``(m_1, …, m_kmax)``, the probe average of ``Σ_i w_i θ_i^j``.
        standard_errors: standard errors across probes (``std/√P``; ``nan`` for one probe).
        per_probe: ``[P, k_max]`` float64, ``Σ_i w_i θ_i^j = q_1ᵀ M^j q_1`` per probe.
    """

    moments: tuple[float, ...]
    standard_errors: tuple[float, ...]
    per_probe: Tensor


@dataclass(frozen=True, kw_only=True)
class SLQDensity:
    """Kernel-smoothed singular-value density from the SLQ nodes.

    Attributes:
        grid: evaluation points (``log s`` if ``log`` else ``s``), float64.
        density: ``ρ(x) = (1/P)·Σ_{p,i} w_i φ_h(x − x_i)`` over non-zero nodes; integrates to
            ``1 − zero_mass``.
        zero_mass: total weight of nodes at or below the zero threshold (the separate atom).
        bandwidth: the Gaussian kernel's standard deviation ``h`` (not a variance).
        log: whether the axis is ``log s = ½·log θ`` (else ``s = √θ``).
    """

    grid: Tensor
    density: Tensor
    zero_mass: float
    bandwidth: float
    log: bool


@dataclass(frozen=True, kw_only=True)
class RitzBounds:
    """Certified bounds on the extreme singular values from Ritz values (``r``-side operator).

    Attributes:
        theta_max, theta_min: the largest and smallest active Ritz values over all probes.
        sigma_max_lower: ``√θ_max ≤ σ_max``.
        sigma_min_upper: ``√max(θ_min, 0) ≥ σ_min``.
        residual_max, residual_min: residuals ``β_k·|S_{k,i}|`` of those two Ritz pairs.
        residuals: all residuals (``[P, m]``, padding 0).
        converged_max, converged_min: residual ``≤ tol·θ_max`` for each pair.
        tol: the relative convergence tolerance.
    """

    theta_max: float
    theta_min: float
    sigma_max_lower: float
    sigma_min_upper: float
    residual_max: float
    residual_min: float
    residuals: Tensor
    converged_max: bool
    converged_min: bool
    tol: float

    @property
    def converged(self) -> bool:
        """Both extreme Ritz pairs have converged."""
        return self.converged_max and self.converged_min


def slq_moments(result: LanczosResult, k_max: int = 3) -> SLQMoments:
    """``m_j ≈ (1/P)·Σ_p Σ_i w_i^(p) (θ_i^(p))^j`` for ``j = 1..k_max``, with standard errors.

    Each probe's sum equals ``q_1ᵀ M^j q_1`` exactly for ``j ≤ 2k − 1``; its expectation over
    the Rademacher start is ``tr(M^j)/r``. Padding nodes carry zero weight and do not contribute.

    Example:
        >>> from isokit.probe.krylov import lanczos
        >>> M = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> res = lanczos(lambda V: V @ M, 2, steps=2, n_probes=4,
        ...               generator=torch.Generator().manual_seed(0))
        >>> [round(m, 6) for m in slq_moments(res, 2).moments]  # (1 + 4)/2, (1 + 16)/2
        [2.5, 8.5]
    """
    k_max = positive_int("k_max", k_max)
    powers = torch.arange(1, k_max + 1, dtype=_F64)
    per_probe = (result.weights[:, :, None] * result.nodes[:, :, None] ** powers).sum(dim=1)
    P = result.n_probes
    mean = per_probe.mean(dim=0)
    se = per_probe.std(dim=0) / math.sqrt(P) if P > 1 else torch.full((k_max,), math.nan)
    return SLQMoments(
        moments=tuple(mean.tolist()), standard_errors=tuple(se.tolist()), per_probe=per_probe
    )


def slq_density(
    result: LanczosResult,
    grid: Tensor,
    *,
    bandwidth: float,
    log: bool = True,
    n_rows: int | None = None,
    n_cols: int | None = None,
) -> SLQDensity:
    """Gaussian-kernel density of singular values ``s = √θ`` (or of ``log s = ½·log θ``).

    ``ρ(x) = (1/P)·Σ_{p,i} w_i^(p)·exp(−(x − x_i)²/(2h²)) / (h·√(2π))`` over the nodes that are
    not zero, where ``h = bandwidth`` is a **standard deviation**. The nodes that count as zero
    by the zero rule of :func:`~isokit.probe.statistics.zero_mask` applied to ``θ``
    (``θ ≤ max(n_rows, n_cols)·ε·θ_max``, ``θ_max`` over all probes, ``ε`` of the operator dtype:
    the absolute accuracy of Lanczos on a Gram) form a separate zero atom of mass ``zero_mass``.
    ``n_rows``, ``n_cols`` are ``D`` and ``n_in`` of the Jacobian; without them ``dim`` (``r``)
    stands in, as in :func:`~isokit.probe.stats`.

    Example:
        >>> from isokit.probe.krylov import lanczos
        >>> M = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> res = lanczos(lambda V: V @ M, 2, steps=2, n_probes=4,
        ...               generator=torch.Generator().manual_seed(0))
        >>> rho = slq_density(res, torch.linspace(-1.0, 1.5, 251), bandwidth=0.05)
        >>> round(float(rho.density.sum() * 0.01), 3), rho.zero_mass  # integrates to 1
        (1.0, 0.0)
    """
    bandwidth = float(bandwidth)
    if not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive standard deviation, got {bandwidth}")
    grid = torch.as_tensor(grid, dtype=_F64).cpu()
    if grid.ndim != 1:
        raise ValueError(f"grid must be 1-D, got shape {tuple(grid.shape)}")
    theta, w = result.quadrature()
    theta = theta.clamp_min(0)  # PSD operator: negative nodes are round-off
    if n_rows is None and n_cols is None:  # r stands in for max(D, n_in)
        n_rows = n_cols = result.dim
    n_rows = None if n_rows is None else positive_int("n_rows", n_rows)
    n_cols = None if n_cols is None else positive_int("n_cols", n_cols)
    zero = zero_mask(theta.numpy(), n_rows=n_rows, n_cols=n_cols, eps=dtype_eps(result.dtype))
    nonzero = torch.from_numpy(~zero)
    zero_mass = float(w[~nonzero].sum())
    theta, w = theta[nonzero], w[nonzero]
    x = 0.5 * torch.log(theta) if log else torch.sqrt(theta)
    z = (grid[:, None] - x[None, :]) / bandwidth
    kernel = torch.exp(-0.5 * z**2) / (bandwidth * math.sqrt(2 * math.pi))
    return SLQDensity(
        grid=grid,
        density=kernel @ w,
        zero_mass=zero_mass,
        bandwidth=bandwidth,
        log=log,
    )


def ritz_bounds(result: LanczosResult, *, tol: float = 1e-8) -> RitzBounds:
    """Ritz bounds ``√θ_max ≤ σ_max`` and ``σ_min ≤ √θ_min`` over all probes (``r``-side ``M``).

    ``converged_*`` holds when the pair's residual ``β_k·|S_{k,i}| ≤ tol·θ_max``. A zero operator
    gives zero bounds with zero residuals.

    Example:
        >>> from isokit.probe.krylov import lanczos
        >>> M = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> res = lanczos(lambda V: V @ M, 2, steps=2, n_probes=4,
        ...               generator=torch.Generator().manual_seed(0))
        >>> rb = ritz_bounds(res)
        >>> round(rb.sigma_max_lower, 6), round(rb.sigma_min_upper, 6), rb.converged
        (2.0, 1.0, True)
    """
    if not (tol >= 0):
        raise ValueError(f"tol must be non-negative, got {tol}")
    mask = result.mask
    lo = torch.where(mask, result.nodes, math.inf)
    hi = torch.where(mask, result.nodes, -math.inf)
    i_max, i_min = int(hi.argmax()), int(lo.argmin())
    theta_max = float(hi.flatten()[i_max])
    theta_min = float(lo.flatten()[i_min])
    res_max = float(result.residuals.flatten()[i_max])
    res_min = float(result.residuals.flatten()[i_min])
    scale = tol * max(theta_max, 0.0)
    return RitzBounds(
        theta_max=theta_max,
        theta_min=theta_min,
        sigma_max_lower=math.sqrt(max(theta_max, 0.0)),
        sigma_min_upper=math.sqrt(max(theta_min, 0.0)),
        residual_max=res_max,
        residual_min=res_min,
        residuals=result.residuals,
        converged_max=res_max <= scale,
        converged_min=res_min <= scale,
        tol=float(tol),
    )
