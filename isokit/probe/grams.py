"""Gram accumulators of the exact probe and their spectra (``docs/probes.md §3.3``, ``§3.4``).

Float64 Grams (``C Cᵀ`` or ``CᵀC``), ``eigvalsh`` with negative round-off clamped to 0, the
``λ_min/λ_max < GRAM_RTOL`` reliability flag with the ``svdvals`` fallback, the input basis
chunks, and :class:`_Slot`, the per-tap accumulator that a sweep streams its columns into (the
output-side Gram ``B_l += J_l[:, S] J_l[:, S]ᵀ`` when ``D_l ≤ n_in``, else the columns).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GRAM_RTOL"]

#: ``λ_min/λ_max`` below this makes a Gram unreliable (§3.4): recompute with ``svdvals``.
GRAM_RTOL = 1e-12
_F64 = torch.float64


def _svdvals(M: Tensor) -> Tensor:
    if M.is_cuda:
        return torch.linalg.svdvals(M, driver="gesvd")
    return torch.linalg.svdvals(M)


def _eigvalsh(G: Tensor) -> Tensor:
    """Ascending eigenvalues of a batch of symmetric ``[b, r, r]`` float64 matrices.

    Always ``torch.linalg.eigvalsh`` (LAPACK ``syevd`` through torch's BLAS). SciPy's LAPACK is
    no faster single-threaded, and mixing its OpenBLAS thread pool with torch's OpenMP pool
    oversubscribes the cores (both spin-wait), which made whole probes 10–50× slower on a
    loaded 2-core machine.
    """
    return torch.linalg.eigvalsh(G)


def _gram_of(C: Tensor, *, rows: bool) -> Tensor:
    """``C Cᵀ`` (``rows=True``) or ``CᵀC`` of a batch ``[b, p, q]`` in float64, symmetric."""
    C = C.to(_F64)
    return C @ C.transpose(1, 2) if rows else C.transpose(1, 2) @ C


def _from_gram(G: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """``[b, r, r]`` Gram of tap ``name`` → (descending ``s`` ``[b, r]``, unreliable ``[b]``).

    ``eigvalsh`` reads one triangle only, so round-off asymmetry of ``G`` needs no fixing. A Gram
    with NaN or inf (the Jacobian overflowed) is refused here, before LAPACK fails on it.
    """
    if not bool(torch.isfinite(G).all()):
        raise ValueError(
            f"the Jacobian at tap {name!r} holds NaN or inf for some example (the tangents "
            "overflow); its spectrum cannot be measured: check the initialization's scale, or "
            "probe in float64"
        )
    lam = _eigvalsh(G).clamp_min(0)
    lmax, lmin = lam[:, -1], lam[:, 0]
    unreliable = (lmax > 0) & (lmin < GRAM_RTOL * lmax)
    return lam.flip(-1).sqrt(), unreliable


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
        Y = Y.to(_F64)
        if self.keep_cols:
            self.cols[:, start : start + Y.shape[1]] = Y
        elif start == 0 and Y.shape[1] == self.n_in:
            self.gram = _gram_of(Y, rows=False)  # one chunk: B = YᵀY
        elif self.gram is None:
            self.gram = Y.transpose(1, 2) @ Y
        else:
            self.gram.baddbmm_(Y.transpose(1, 2), Y)

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
