"""Batched Lanczos on a symmetric PSD operator (its quadratures: :mod:`isokit.probe.quadrature`).

``docs/probes.md §4.3``, ``§4.4``. The operator ``M`` (``A = JᵀJ`` or ``B = JJᵀ``, on the side whose
dimension is ``r = min(D, n_in)``) is given only through a batched product
``matvec(V: [P, dim]) -> [P, dim]``, so callers can ``vmap`` their ``jvp``/``vjp``.

For each of ``P`` probes, ``m`` steps build an orthonormal Krylov basis ``Q_m`` and the tridiagonal
``T_m = Q_mᵀ M Q_m`` (diagonal ``α``, off-diagonal ``β``):

1. ``q_1 = u/‖u‖`` with ``u`` Rademacher (``‖u‖² = r``).
2. ``w = M q_j``, ``α_j = q_jᵀw``; subtract ``Q_j(Q_jᵀw)`` twice (full reorthogonalization by
   repeated classical Gram–Schmidt); ``β_j = ‖w‖``, ``q_{j+1} = w/β_j``. ``α``, ``β`` in float64.
3. Breakdown: if ``β_j ≤ tol·max(|α|, β)`` over the probe's history (``tol = 1e-12`` in float64,
   ``1e-6`` in float32), the Krylov space is invariant. Set ``β_j = 0`` and freeze the probe: it
   continues with ``q_{j+1} = 0`` in the batch and its later (decoupled) nodes get zero weight.
4. ``T_k = S diag(θ) Sᵀ`` (``k`` = the probe's active steps) with ``torch.linalg.eigh`` in float64.
5. Gauss quadrature: nodes ``θ_i``, weights ``w_i = S_{1i}²`` (``Σ_i w_i = 1``), exact for
   polynomials of degree ``≤ 2k − 1``: ``Σ_i w_i θ_i^j = q_1ᵀ M^j q_1``.
6. ``(1/r)·tr f(M) ≈ (1/P)·Σ_p Σ_i w_i^(p) f(θ_i^(p))``, since ``E[q_1 q_1ᵀ] = I/r``.

Ritz values satisfy ``λ_min ≤ θ_min ≤ θ_max ≤ λ_max`` and the residual
``‖M y_i − θ_i y_i‖ = β_k·|S_{k,i}|`` (``y_i = Q_k S_{:,i}``) certifies an eigenvalue within that
distance of ``θ_i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from isokit.probe.checks import NonFiniteError, positive_int
from isokit.probe.moments import rademacher
from isokit.probe.statistics import DEGENERATE_BELOW

__all__ = ["LanczosResult", "lanczos"]

_F64 = torch.float64


@dataclass(frozen=True, kw_only=True, eq=False)
class LanczosResult:
    """Per-probe Lanczos tridiagonals and their Gauss quadratures.

    Example:
        >>> M = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> res = lanczos(lambda V: V @ M, 2, steps=3, n_probes=2,
        ...               generator=torch.Generator().manual_seed(0))
        >>> res.n_steps.tolist(), res.mask.shape  # the third step breaks down: padding
        ([2, 2], torch.Size([2, 3]))

    All ``[P, m]`` tensors are float64 on the CPU. Entries past a probe's ``n_steps`` (after a
    breakdown) are padding: node ``0``, weight ``0``, residual ``0``; :attr:`mask` marks the rest.
    Within the active part, nodes are ascending.

    Attributes:
        dim: dimension ``r`` of the operator.
        alpha: diagonals ``α_j`` of ``T``.
        beta: off-diagonals ``β_j`` (``β_k`` of the last active step feeds the residuals; ``0`` at
            breakdown).
        nodes: Ritz values ``θ_i``.
        weights: quadrature weights ``S_{1i}²``; each probe's row sums to 1.
        residuals: Ritz residuals ``β_k·|S_{k,i}|``.
        eigvecs: eigenvectors ``S`` of each active ``T_k`` (``[P, m, m]``, zero-padded).
        n_steps: active steps ``k`` per probe (``< m`` after a breakdown).
        n_products: single-vector products computed, frozen probes included.
        dtype: dtype the operator was applied in.
        breakdown_tol: the relative breakdown threshold used.
        degenerate: every product vanished (zero operator): moments are 0, no division by 0.
        basis: the Krylov bases ``Q`` (``[P, m, dim]``, operator dtype and device) if requested.
    """

    dim: int
    alpha: Tensor
    beta: Tensor
    nodes: Tensor
    weights: Tensor
    residuals: Tensor
    eigvecs: Tensor
    n_steps: Tensor
    n_products: int
    dtype: torch.dtype
    breakdown_tol: float
    degenerate: bool
    basis: Tensor | None = None

    @property
    def n_probes(self) -> int:
        """Number of probes ``P``."""
        return self.nodes.shape[0]

    @property
    def steps(self) -> int:
        """Requested steps ``m``."""
        return self.nodes.shape[1]

    @property
    def mask(self) -> Tensor:
        """``[P, m]`` boolean: ``True`` on the active (non-padding) nodes."""
        return torch.arange(self.steps) < self.n_steps[:, None]

    def quadrature(self) -> tuple[Tensor, Tensor]:
        """The pooled quadrature measure: active nodes ``θ`` and weights ``w/P`` (sum 1)."""
        mask = self.mask
        return self.nodes[mask], self.weights[mask] / self.n_probes

    def ritz_vectors(self) -> Tensor:
        """Ritz vectors ``y_i = Q_k S_{:,i}`` as ``[P, m, dim]`` (needs ``keep_basis=True``)."""
        if self.basis is None:
            raise ValueError(
                "this result kept no Krylov basis; rerun lanczos(..., keep_basis=True)"
            )
        S = self.eigvecs.to(device=self.basis.device, dtype=self.basis.dtype)
        return torch.einsum("pji,pjd->pid", S, self.basis)


def lanczos(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    *,
    steps: int,
    n_probes: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = _F64,
    device: torch.device | str | None = None,
    start: Tensor | None = None,
    keep_basis: bool = False,
    breakdown_tol: float | None = None,
) -> LanczosResult:
    """Run ``steps`` Lanczos steps on ``P`` probes at once (see the module docstring).

    Example:
        >>> M = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> res = lanczos(lambda V: V @ M, 3, steps=3, n_probes=2,
        ...               generator=torch.Generator().manual_seed(0))
        >>> [round(t, 12) for t in res.nodes[0].tolist()]  # 3 steps on 3×3: its eigenvalues
        [1.0, 2.0, 3.0]
        >>> [round(w, 12) for w in res.weights.sum(dim=1).tolist()]  # Gauss weights sum to 1
        [1.0, 1.0]

    Args:
        matvec: batched product ``V ↦ V M`` for symmetric PSD ``M``: ``[P, dim] -> [P, dim]``.
        dim: operator dimension ``r``.
        steps: Lanczos steps ``m`` (typically 64–128; more than ``dim`` just breaks down).
        n_probes: number of Rademacher start vectors ``P`` (implied by ``start`` if given).
        generator: explicit generator for the Rademacher starts (required unless ``start``).
        dtype: dtype in which ``matvec`` is applied and the basis is stored.
        device: device of the basis; defaults to the generator's (or ``start``'s) device.
        start: optional ``[P, dim]`` start block instead of Rademacher draws; rows are normalized.
        keep_basis: keep the Krylov bases in the result (for :meth:`LanczosResult.ritz_vectors`).
        breakdown_tol: relative breakdown threshold; default ``1e-12`` in float64, ``1e-6`` in
            float32, ``1e-3`` in half precision.
    """
    dim = positive_int("dim", dim)
    steps = positive_int("steps", steps)
    if start is None:
        if n_probes is None:
            raise ValueError("pass n_probes (the number of start vectors) or a start block")
        n_probes = positive_int("n_probes", n_probes)
        if generator is None:
            raise ValueError(
                "lanczos draws its Rademacher starts from an explicit generator; pass "
                "generator=torch.Generator().manual_seed(seed) (or a start block)"
            )
        start = rademacher((n_probes, dim), generator=generator, dtype=dtype, device=device)
    else:
        if start.ndim != 2 or start.shape[1] != dim:
            raise ValueError(f"start must be [n_probes, dim={dim}], got {tuple(start.shape)}")
        if n_probes is not None and start.shape[0] != n_probes:
            raise ValueError(f"start has {start.shape[0]} rows but n_probes={n_probes}")
        start = start.detach().to(dtype=dtype, device=device if device is not None else None)
    n_probes = start.shape[0]
    if breakdown_tol is None:
        breakdown_tol = {_F64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-3)

    dev = start.device
    norms = start.to(_F64).norm(dim=1)
    if not (torch.isfinite(norms).all() and (norms > 0).all()):
        raise ValueError("every start vector must be finite and non-zero")
    q = (start.to(_F64) / norms[:, None]).to(dtype)

    Q = torch.zeros(n_probes, steps, dim, dtype=dtype, device=dev)
    alpha = torch.zeros(n_probes, steps, dtype=_F64, device=dev)
    beta = torch.zeros(n_probes, steps, dtype=_F64, device=dev)
    scale = torch.zeros(n_probes, dtype=_F64, device=dev)
    n_steps = torch.zeros(n_probes, dtype=torch.long, device=dev)
    active = torch.ones(n_probes, dtype=torch.bool, device=dev)
    n_calls = 0
    for j in range(steps):
        if not bool(active.any()):
            break  # every probe has found an invariant subspace: the rest is padding
        Q[:, j] = q
        w = matvec(q)
        n_calls += 1
        if tuple(w.shape) != (n_probes, dim):
            raise ValueError(
                f"matvec must map [n_probes, dim] = {[n_probes, dim]} to the same shape, got "
                f"{list(w.shape)}; batch the product over the leading axis (e.g. with vmap)"
            )
        # Frozen probes stay exactly zero even if matvec(0) has round-off.
        w = torch.where(active[:, None], w.detach().to(dtype=dtype, device=dev), 0)
        a = (q.to(_F64) * w.to(_F64)).sum(dim=1)
        basis = Q[:, : j + 1]
        for _ in range(2):  # classical Gram–Schmidt twice ("twice is enough")
            w = w - torch.einsum("pk,pkd->pd", torch.einsum("pkd,pd->pk", basis, w), basis)
        b = w.to(_F64).norm(dim=1)
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise NonFiniteError(
                f"matvec returned NaN or inf at Lanczos step {j + 1}; check the operator "
                "(overflow? then use float64 or renormalize, docs/probes.md §6)"
            )
        scale = torch.maximum(scale, torch.maximum(a.abs(), b))
        broke = active & (b <= breakdown_tol * scale)
        n_steps += active.long()
        alpha[:, j] = a
        beta[:, j] = torch.where(active & ~broke, b, 0)
        active = active & ~broke
        safe = torch.where(active, b, 1.0)
        q = torch.where(active[:, None], (w.to(_F64) / safe[:, None]).to(dtype), 0)

    alpha, beta, n_steps = alpha.cpu(), beta.cpu(), n_steps.cpu()
    nodes, weights, residuals, eigvecs = _solve_tridiagonals(alpha, beta, n_steps)
    return LanczosResult(
        dim=dim,
        alpha=alpha,
        beta=beta,
        nodes=nodes,
        weights=weights,
        residuals=residuals,
        eigvecs=eigvecs,
        n_steps=n_steps,
        n_products=n_calls * n_probes,
        dtype=dtype,
        breakdown_tol=float(breakdown_tol),
        degenerate=bool((scale <= DEGENERATE_BELOW).all()),
        basis=Q if keep_basis else None,
    )


def _solve_tridiagonals(
    alpha: Tensor, beta: Tensor, n_steps: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Eigendecompose each probe's active ``T_k`` (symmetric solver, float64)."""
    P, m = alpha.shape
    nodes = torch.zeros(P, m, dtype=_F64)
    weights = torch.zeros(P, m, dtype=_F64)
    residuals = torch.zeros(P, m, dtype=_F64)
    eigvecs = torch.zeros(P, m, m, dtype=_F64)
    for p in range(P):
        k = int(n_steps[p])
        off = beta[p, : k - 1]
        T = torch.diag(alpha[p, :k]) + torch.diag(off, 1) + torch.diag(off, -1)
        theta, S = torch.linalg.eigh(T)
        nodes[p, :k] = theta
        weights[p, :k] = S[0] ** 2  # first components: q_1 is the first basis vector
        residuals[p, :k] = beta[p, k - 1] * S[k - 1].abs()
        eigvecs[p, :k, :k] = S
    return nodes, weights, residuals, eigvecs
