"""Gram accumulators of the exact probe and their spectra (``docs/probes.md §3.3``, ``§3.4``).

Float64 Grams (``C Cᵀ`` or ``CᵀC``), ``eigvalsh`` with negative round-off clamped to 0, the
``λ_min/λ_max < GRAM_RTOL`` reliability flag with the ``svdvals`` fallback, the input basis
chunks, and :class:`_Slot`, the per-tap accumulator that a sweep streams its columns into (the
output-side Gram ``B_l += J_l[:, S] J_l[:, S]ᵀ`` when ``D_l ≤ n_in``, else the columns).

**Upper triangle only.** ``eigvalsh`` reads one triangle of a symmetric matrix, so a Gram
``G = AᵀA`` is formed as its upper triangle (with the diagonal blocks): ``k`` row strips of
height ``w = r/k``, strip ``j`` being ``G[jw:(j+1)w, jw:] = A[:, jw:(j+1)w]ᵀ A[:, jw:]``, which
costs ``(k+1)/(2k)`` of the full product (5/8 for ``k = 4``; when it pays, :func:`_strips`).
Row strips are contiguous rows of the output, which BLAS writes in place; column strips of the
lower triangle are not, and came out slower than the full product. Below the diagonal blocks a
Gram holds anything; :func:`_symmetric` gives the full matrix where one is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from isokit.probe.checks import NonFiniteError

__all__ = ["GRAM_RTOL"]

#: ``λ_min/λ_max`` below this makes a Gram unreliable (§3.4): recompute with ``svdvals``.
GRAM_RTOL = 1e-12
_F64 = torch.float64


def _svdvals(M: Tensor) -> Tensor:
    if M.is_cuda:
        return torch.linalg.svdvals(M, driver="gesvd")
    return torch.linalg.svdvals(M)


def _eigvalsh(G: Tensor, *, upper: bool = False) -> Tensor:
    """Ascending eigenvalues of a batch of symmetric ``[b, r, r]`` float64 matrices, read from
    their upper triangle with ``upper=True`` (else the lower one).

    Always ``torch.linalg.eigvalsh`` (LAPACK ``syevd`` through torch's BLAS). SciPy's LAPACK is
    no faster single-threaded, and mixing its OpenBLAS thread pool with torch's OpenMP pool
    oversubscribes the cores (both spin-wait), which made whole probes 10–50× slower on a
    loaded 2-core machine.
    """
    return torch.linalg.eigvalsh(G, UPLO="U" if upper else "L")


def _strips(r: int) -> int:
    """Row strips of an ``r × r`` Gram. Measured on 2 CPU cores (float64, MKL): 4 strips save
    25–30 % from ``r = 512`` on and 20 % at ``r = 256`` on one thread, where two threads split
    the smaller products badly (10 % slower than one product); below 256 one product is as fast."""
    if r < 256:
        return 1
    if r < 512:
        return 4 if torch.get_num_threads() == 1 else 1
    return 4


def _gram_of(C: Tensor, *, rows: bool, out: Tensor | None = None) -> Tensor:
    """The upper triangle (module docstring) of ``C Cᵀ`` (``rows=True``) or ``CᵀC`` of a batch
    ``[b, p, q]``, in float64; with ``out`` (a Gram of the same size) it is added to ``out``."""
    C = C.to(_F64)
    A = C.transpose(1, 2) if rows else C  # G = AᵀA, A: [b, m, r]
    r = A.shape[-1]
    w = -(-r // _strips(r))
    G = torch.empty(A.shape[0], r, r, dtype=_F64, device=C.device) if out is None else out
    for a in range(0, r, w):
        if out is None:
            torch.matmul(A[:, :, a : a + w].transpose(1, 2), A[:, :, a:], out=G[:, a : a + w, a:])
        else:
            G[:, a : a + w, a:].baddbmm_(A[:, :, a : a + w].transpose(1, 2), A[:, :, a:])
    return G


def _symmetric(G: Tensor) -> Tensor:
    """The full symmetric matrices of Grams that hold their upper triangle (``[b, r, r]``)."""
    return torch.triu(G) + torch.triu(G, 1).transpose(1, 2)


def _from_gram(G: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """``[b, r, r]`` Gram of tap ``name`` → (descending ``s`` ``[b, r]``, unreliable ``[b]``).

    ``eigvalsh`` reads the upper triangle only (the one :func:`_gram_of` forms). A Gram
    with NaN or inf (the Jacobian overflowed) is refused here, before LAPACK fails on it. Its
    diagonal tells: a NaN or inf entry of the factor ``C`` makes the diagonal entry of its column
    NaN or inf, and otherwise ``|G_ij| ≤ Σ_k |C_ki C_kj| ≤ max(G_ii, G_jj)`` (Cauchy–Schwarz)
    keeps every entry finite; reading ``r`` entries instead of ``r²`` matters beside ``eigvalsh``.
    """
    if not bool(torch.isfinite(G.diagonal(dim1=-2, dim2=-1)).all()):
        raise NonFiniteError(
            f"the Jacobian at tap {name!r} holds NaN or inf for some example (the tangents "
            "overflow); its spectrum cannot be measured: check the initialization's scale, or "
            "probe in float64"
        )
    lam = _eigvalsh(G, upper=True)
    lmax, lmin = lam[:, -1], lam[:, 0]
    unreliable = (lmax > 0) & (lmin < GRAM_RTOL * lmax)
    # clamp_min(0) before the square root: negative round-off of a zero eigenvalue
    return lam.flip(-1).clamp_min_(0).sqrt_(), unreliable


def _basis(start: int, stop: int, n_in: int, in_shape, *, dtype, device) -> Tensor:
    E = torch.zeros(stop - start, n_in, dtype=dtype, device=device)
    E[torch.arange(stop - start, device=device), torch.arange(start, stop, device=device)] = 1
    return E.reshape(stop - start, *in_shape)


class _Slot:
    """Per-tap, per-example-chunk accumulator: a Gram or the columns."""

    @classmethod
    def of_columns(cls, cols: Tensor, D: int) -> _Slot:
        """A finished slot holding the columns ``[bc, n_in, D]`` (the chained sweep's)."""
        slot = cls.__new__(cls)
        slot.D, slot.n_in, slot.keep_cols = D, cols.shape[1], True
        slot.cols, slot.gram = cols.to(_F64), None
        return slot

    def __init__(self, bc: int, D: int, n_in: int, keep_cols: bool, device) -> None:
        self.D, self.n_in, self.keep_cols = D, n_in, keep_cols
        if keep_cols:
            self.cols = torch.zeros(bc, n_in, D, dtype=_F64, device=device)
            self.gram = None
        else:
            self.cols = None
            self.gram = None  # allocated by the first chunk

    def add(self, start: int, Y: Tensor) -> None:  # Y: [bc, c, D] = (J E_S)ᵀ
        if self.keep_cols:
            self.cols[:, start : start + Y.shape[1]] = Y
        else:  # B = Σ_S YᵀY over the chunks, formed by the first and added to by the others
            self.gram = _gram_of(Y, rows=False, out=self.gram)

    def finish(self, *, svd: bool, name: str) -> tuple[Tensor, Tensor, Tensor, Tensor | None, bool]:
        """(s, unreliable, svd_used, gram, needs_resweep) of tap ``name``."""
        # cols: [bc, n_in, D]; the r-side Gram is A = JᵀJ when D > n_in
        G = _gram_of(self.cols, rows=self.n_in < self.D) if self.keep_cols else self.gram
        s, bad = _from_gram(G, name)
        use_svd = torch.ones_like(bad) if svd else bad
        if bool(use_svd.any()):
            if self.keep_cols:
                s = s.clone()
                s[use_svd] = _svdvals(self.cols[use_svd])
            else:
                return s, bad, use_svd, G, True
        return s, bad, use_svd, G, False
