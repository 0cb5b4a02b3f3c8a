"""Unbiased trace moments of a Jacobian Gram from forward-only probes (``docs/probes.md §4.2``).

Draw ``K`` i.i.d. isotropic probes ``v_i`` (``E vvᵀ = I``; Rademacher by default, Gaussian
allowed), push them through the Jacobian, ``y_i = J v_i``, and form the probe Gram
``G = Y Yᵀ`` (``K × K``, ``G_ij = v_iᵀ A v_j`` with ``A = JᵀJ``) in float64. Let ``H`` be ``G``
with its diagonal set to zero. Then

- ``T1 = (1/K)·Σ_i G_ii``                                  estimates ``tr A``,
- ``T2 = Σ_{i≠j} G_ij² / (K(K−1)) = ‖H‖_F² / (K(K−1))``    estimates ``tr A²``,
- ``T3 = Σ_{i,j,k distinct} G_ij G_jk G_ki / (K(K−1)(K−2))
       = [tr G³ − 3·Σ_i G_ii (G²)_ii + 2·Σ_i G_ii³] / (K(K−1)(K−2))
       = tr H³ / (K(K−1)(K−2))``                           estimates ``tr A³``,

because for distinct indices the expectation factorizes, e.g.
``E[v_iᵀA v_j v_jᵀA v_k v_kᵀA v_i] = tr A³``. The moments are ``m_k = T_k / r`` with
``r = min(D, n_in)``. The estimators are U-statistics: they need independent probes, so the
probes must never be orthonormalized.

Ratios such as the scale-free variance ``var = m2/m1² − 1 = r·T2/T1² − 1`` are biased at order
``1/K``; they are reported with a leave-one-probe-out jackknife (bias-corrected value and standard
error). The jackknife also gives standard errors for ``T1..T3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from isokit.probe.checks import NonFiniteError, positive_int
from isokit.probe.statistics import DEGENERATE_BELOW

__all__ = ["TraceMoments", "rademacher", "trace_moments", "trace_moments_from_gram"]

# Elements of float64 scratch per chunk when forming ``G`` from a low-precision ``Y``: bounds the
# temporary float64 copy of ``Y`` to ~128 MiB whatever ``D`` is.
_GRAM_CHUNK_ELEMENTS = 2**24
_R_IS = " (min(D, n_in) of the Jacobian)"


@dataclass(frozen=True, kw_only=True)
class TraceMoments:
    """Trace estimates ``T1..T3`` of ``A = JᵀJ`` with jackknife standard errors.

    Attributes:
        n_probes: number of probes ``K``.
        r: spectrum length ``min(D, n_in)`` used to normalize ``m_k = T_k / r``.
        t1, t2, t3: unbiased estimates of ``tr A``, ``tr A²``, ``tr A³``.
        t1_se, t2_se, t3_se: leave-one-probe-out jackknife standard errors of ``t1..t3``.
        var: jackknife bias-corrected ``m2/m1² − 1 = r·T2/T1² − 1`` (``nan`` if degenerate).
        var_se: jackknife standard error of ``var`` (``nan`` if degenerate).
        var_plugin: the plug-in ratio ``r·T2/T1² − 1`` without bias correction.
        degenerate: ``True`` when ``T1`` is at or below ``zero_tol`` (e.g. an all-dead ReLU net).

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> V = rademacher((64, 10), generator=gen)
        >>> tm = trace_moments(V @ (2 * torch.eye(10, dtype=torch.float64)), r=10)
        >>> round(tm.m1, 6), round(tm.m1_se, 6)  # J = 2·I: every λ = 4, with no spread
        (4.0, 0.0)
    """

    n_probes: int
    r: int
    t1: float
    t2: float
    t3: float
    t1_se: float
    t2_se: float
    t3_se: float
    var: float
    var_se: float
    var_plugin: float
    degenerate: bool

    @property
    def m1(self) -> float:
        """Mean squared singular value ``T1 / r``."""
        return self.t1 / self.r

    @property
    def m2(self) -> float:
        """``T2 / r``."""
        return self.t2 / self.r

    @property
    def m3(self) -> float:
        """``T3 / r``."""
        return self.t3 / self.r

    @property
    def m1_se(self) -> float:
        """Standard error of ``m1``."""
        return self.t1_se / self.r

    @property
    def m2_se(self) -> float:
        """Standard error of ``m2``."""
        return self.t2_se / self.r

    @property
    def m3_se(self) -> float:
        """Standard error of ``m3``."""
        return self.t3_se / self.r


def rademacher(
    shape: tuple[int, ...] | torch.Size,
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """I.i.d. Rademacher entries (``±1`` with probability ½ each), so ``E vvᵀ = I``.

    Args:
        shape: output shape, probes first (``[K, *input_shape]``).
        generator: the explicit, recorded source of randomness (``None`` uses the global RNG).
        dtype: floating dtype of the result.
        device: device of the result; defaults to the generator's device.

    Example:
        >>> rademacher((2, 3), generator=torch.Generator().manual_seed(0)).abs().tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if not dtype.is_floating_point:
        raise ValueError(f"rademacher needs a floating dtype, got {dtype}; pass e.g. torch.float64")
    if device is None and generator is not None:
        device = generator.device
    bits = torch.randint(0, 2, tuple(shape), generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def trace_moments(Y: Tensor, *, r: int, zero_tol: float | None = None) -> TraceMoments:
    """Estimate ``tr A``, ``tr A²``, ``tr A³`` from probe images ``Y`` (see the module docstring).

    Args:
        Y: ``[K, D]`` (or ``[K, *tap_shape]``, flattened) holding ``J v_i`` for ``K`` i.i.d.
            isotropic probes ``v_i``. Any dtype; the Gram is formed in float64.
        r: spectrum length ``min(D, n_in)``, which normalizes ``m_k`` and ``var``.
        zero_tol: ``T1`` at or below this marks the result ``degenerate``; defaults to the
            smallest normal float64 (only an exactly vanishing Jacobian is degenerate).

    Example:
        >>> J = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> V = rademacher((16, 3), generator=torch.Generator().manual_seed(0))
        >>> tm = trace_moments(V @ J.T, r=3)  # rows J v_i
        >>> round(tm.m1, 9), tm.n_probes  # (1 + 4 + 9)/3: exact for a diagonal J (vᵢ² = 1)
        (4.666666667, 16)
    """
    if Y.ndim < 2:
        raise ValueError(
            f"Y must be [K, D] with probes first, got shape {tuple(Y.shape)}; "
            "stack the probe images J v_i as rows"
        )
    Y = Y.reshape(Y.shape[0], -1)
    K, D = Y.shape
    if positive_int("r", r, why=_R_IS) > D:
        raise ValueError(
            f"r={r} exceeds the probe-image length D={D}; r must be min(D, n_in) of the Jacobian"
        )
    return trace_moments_from_gram(_gram64(Y), r=r, zero_tol=zero_tol)


def trace_moments_from_gram(G: Tensor, *, r: int, zero_tol: float | None = None) -> TraceMoments:
    """Same as :func:`trace_moments`, from an already accumulated probe Gram ``G = Y Yᵀ``.

    Useful when ``G`` is streamed over column chunks of ``Y``. ``G`` is cast to float64.
    """
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"G must be a square [K, K] probe Gram, got shape {tuple(G.shape)}")
    K = G.shape[0]
    if K < 4:
        raise ValueError(
            f"trace_moments needs at least 4 probes (T3 needs 3 distinct probes, and its "
            f"jackknife leaves one out), got K={K}; draw more probes"
        )
    r = positive_int("r", r, why=_R_IS)
    G = G.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(G).all():
        raise NonFiniteError(
            "the probe Gram contains NaN or inf; check the probe images (overflow in the "
            "forward pass? then renormalize blocks, docs/probes.md §6)"
        )
    # Symmetrize: a Gram accumulated in pieces may carry round-off asymmetry.
    G = 0.5 * (G + G.T)
    zero_tol = DEGENERATE_BELOW if zero_tol is None else float(zero_tol)

    diag = torch.diagonal(G).clone()
    H = G - torch.diag(diag)
    H2 = H @ H
    # (H³)_pp is the sum over distinct triples that contain probe p (p fixed at one position).
    h3_diag = torch.einsum("ij,ji->i", H2, H)
    row_sq = (H * H).sum(dim=1)

    s1, s2, s3 = diag.sum(), row_sq.sum(), h3_diag.sum()
    t1, t2, t3 = s1 / K, s2 / (K * (K - 1)), s3 / (K * (K - 1) * (K - 2))

    # Leave probe p out: drop its diagonal entry, the 2·(K−1) ordered pairs that contain it, and
    # the triples that contain it (3 cyclic positions, each worth (H³)_pp).
    k = K - 1
    t1_loo = (s1 - diag) / k
    t2_loo = (s2 - 2 * row_sq) / (k * (k - 1))
    t3_loo = (s3 - 3 * h3_diag) / (k * (k - 1) * (k - 2))

    t1_f, t2_f, t3_f = float(t1), float(t2), float(t3)
    if not all(math.isfinite(t) for t in (t1_f, t2_f, t3_f)) or abs(t1_f) > _T1_MAX:
        # The Gram itself is finite, but m2 and m3 (its square and cube) are not in float64.
        raise NonFiniteError(
            f"the Jacobian's trace moments overflow float64 (m1 ≈ {t1_f:.3g}: m2 and m3, of "
            "order its square and cube, do not fit); its spectrum cannot be measured: check "
            "the initialization's scale, or rescale the model (docs/probes.md §6)"
        )
    degenerate = not t1_f > zero_tol
    if degenerate:
        var = var_se = var_plugin = math.nan
    else:
        var_plugin = r * t2_f / t1_f**2 - 1.0
        sf_loo = r * t2_loo / t1_loo**2 - 1.0
        if (t1_loo > zero_tol).all():
            var = K * var_plugin - (K - 1) * float(sf_loo.mean())
            var_se = _jackknife_se(sf_loo)
        else:
            # Some leave-one-out Gram has no signal: the ratio's jackknife is undefined.
            var, var_se = var_plugin, math.nan
    return TraceMoments(
        n_probes=K,
        r=r,
        t1=t1_f,
        t2=t2_f,
        t3=t3_f,
        t1_se=_jackknife_se(t1_loo),
        t2_se=_jackknife_se(t2_loo),
        t3_se=_jackknife_se(t3_loo),
        var=var,
        var_se=var_se,
        var_plugin=var_plugin,
        degenerate=degenerate,
    )


#: Above this, ``t1²`` (the scale-free variance's denominator) overflows float64.
_T1_MAX = 1e150


def _jackknife_se(loo: Tensor) -> float:
    """Jackknife standard error ``√((K−1)/K · Σ_i (θ_(i) − θ̄)²)`` from leave-one-out values."""
    K = loo.numel()
    return float(torch.sqrt((K - 1) / K * ((loo - loo.mean()) ** 2).sum()))


def _gram64(Y: Tensor) -> Tensor:
    """``Y Yᵀ`` in float64, chunked over columns so a low-precision ``Y`` is never copied whole."""
    Y = Y.detach()
    if Y.dtype == torch.float64:
        return Y @ Y.T
    if not Y.dtype.is_floating_point:
        raise ValueError(f"Y must be a real floating tensor, got dtype {Y.dtype}")
    K, D = Y.shape
    step = max(1, _GRAM_CHUNK_ELEMENTS // max(K, 1))
    G = torch.zeros(K, K, dtype=torch.float64, device=Y.device)
    for start in range(0, D, step):
        chunk = Y[:, start : start + step].to(torch.float64)
        G += chunk @ chunk.T
    return G
