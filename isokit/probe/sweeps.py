"""Forward and reverse sweeps of the exact probe and their Gram accumulators (``probes.md`` §3).

- :func:`_joint_sweep`: one forward-mode sweep for a group of taps; each input-basis chunk ``S``
  gives ``J_l[:, S]`` of every tap through ``vmap(jvp)``, streamed into a :class:`_Slot` per tap
  (the output-side Gram ``B_l += J_l[:, S] J_l[:, S]ᵀ`` when ``D_l ≤ n_in``, else the columns).
- :func:`_segment_push` and :func:`_primal_taps`: the chained sweep, pushing the columns of
  ``J_{l−1}`` through the segment between taps ``l−1`` and ``l``; :func:`check_chain` verifies
  numerically that the taps form a chain before the chained sweep is used.
- :func:`_reverse_rows`: reverse mode for trailing narrow taps (``vmap`` of one ``vjp_fn``).
- Gram helpers: float64 Grams, ``eigvalsh`` with negative round-off clamped to 0, the
  ``λ_min/λ_max < GRAM_RTOL`` reliability flag and the ``svdvals`` fallback (§3.4).

The driver that combines them is :func:`isokit.probe.exact.exact_spectra`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from isokit.probe.taps import TapError, run_with_taps

__all__ = ["GRAM_RTOL", "check_chain"]

#: ``λ_min/λ_max`` below this makes a Gram unreliable (§3.4): recompute with ``svdvals``.
GRAM_RTOL = 1e-12
_F64 = torch.float64


# --------------------------------------------------------------------------------------- helpers


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


def _from_gram(G: Tensor) -> tuple[Tensor, Tensor]:
    """``[b, r, r]`` Gram → (descending ``s`` ``[b, r]``, unreliable ``[b]``).

    ``eigvalsh`` reads one triangle only, so round-off asymmetry of ``G`` needs no fixing.
    """
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

    def finish(self, *, svd: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None, bool]:
        """(s, unreliable, svd_used, gram, needs_resweep)."""
        # cols: [bc, n_in, D]; the r-side Gram is A = JᵀJ when D > n_in
        G = _gram_of(self.cols, rows=self.n_in < self.D) if self.keep_cols else self.gram
        s, bad = _from_gram(G)
        use_svd = torch.ones_like(bad) if svd else bad
        if bool(use_svd.any()):
            if self.keep_cols:
                s = s.clone()
                s[use_svd] = _svdvals(self.cols[use_svd])
            else:
                return s, bad, use_svd, G, True
        return s, bad, use_svd, G, False


# --------------------------------------------------------------------------------------- sweeps


def _joint_sweep(
    model: nn.Module,
    mods: Sequence[nn.Module],
    X: Tensor,
    c: int,
    keep_cols: Sequence[bool],
    progress=None,
    on_done=None,
) -> list:
    """One forward sweep over all input basis chunks for the taps ``mods`` (stops after the last).

    ``X`` is ``[bc, *in_shape]``; returns one filled slot per tap, or, with ``on_done``, what
    ``on_done(slot)`` returns for each slot, called as soon as the last chunk is in (the slot and
    that tap's chunk are released right away, so the Grams never pile up).
    """
    in_shape = tuple(X.shape[1:])
    n_in = math.prod(in_shape)
    last = len(mods) - 1

    def g(x: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, mods, x.unsqueeze(0), stop_after=last)
        return tuple(h.reshape(-1) for h in call.outputs)

    def push(x: Tensor, V: Tensor) -> tuple[Tensor, ...]:
        return vmap(lambda v: jvp(g, (x,), (v,))[1])(V)

    if X.shape[0] == 1:  # one example: skip a vmap level (less dispatch per op)

        def batched(X: Tensor, V: Tensor) -> tuple[Tensor, ...]:
            return tuple(Y.unsqueeze(0) for Y in push(X[0], V))

    else:
        batched = vmap(push, in_dims=(0, None))
    slots: list[_Slot | None] | None = None
    done: list = [None] * len(mods)
    for start in range(0, n_in, c):
        stop = min(n_in, start + c)
        V = _basis(start, stop, n_in, in_shape, dtype=X.dtype, device=X.device)
        Ys = list(batched(X, V))
        del V
        if slots is None:
            slots = [
                _Slot(X.shape[0], Y.shape[-1], n_in, keep, X.device)
                for Y, keep in zip(Ys, keep_cols, strict=True)
            ]
        for k, slot in enumerate(slots):
            slot.add(start, Ys[k])
            Ys[k] = None
            if on_done is not None and stop == n_in:
                done[k] = on_done(slot)
                slots[k] = None
        del Ys
        if progress is not None:
            progress.update(stop - start)
    assert slots is not None
    return done if on_done is not None else slots


def _primal_taps(model: nn.Module, mods: Sequence[nn.Module], X: Tensor) -> list[Tensor]:
    call = run_with_taps(model, mods, X)
    out = []
    for h in call.outputs:
        if h.shape[0] != X.shape[0]:
            raise TapError("a tap output has no leading batch axis; the chained sweep needs one")
        out.append(h.reshape(X.shape[0], -1))
    return out


def _segment_push(model, mods, i: int, X: Tensor, H_prev: Tensor | None, T: Tensor) -> Tensor:
    """Push tangents ``T`` (``[bc, k, D_{i−1}]``, or ``[bc, k, *in_shape]`` for ``i = 0``)
    through the segment that ends at tap ``i``; returns ``[bc, k, D_i]``."""
    if i == 0:

        def seg0(x: Tensor) -> Tensor:
            call = run_with_taps(model, [mods[0]], x.unsqueeze(0), stop_after=0)
            return call.outputs[0].reshape(-1)

        def push0(x, V):
            return vmap(lambda v: jvp(seg0, (x,), (v,))[1])(V)

        return vmap(push0)(X, T)
    pair = [mods[i - 1], mods[i]]

    def push(x, h, V):
        def seg(hh: Tensor) -> Tensor:
            call = run_with_taps(model, pair, x.unsqueeze(0), replace={0: hh}, stop_after=1)
            return call.outputs[1].reshape(-1)

        return vmap(lambda v: jvp(seg, (h,), (v,))[1])(V)

    return vmap(push)(X, H_prev, T)


def check_chain(
    model: nn.Module, mods: Sequence[nn.Module], x: Tensor, *, rtol: float | None = None
) -> bool:
    """Whether the taps form a chain at example ``x`` (``[*in_shape]``): two random tangents give
    the same tap tangents through the full model and through the segments."""
    if rtol is None:
        rtol = 1e-8 if x.dtype == _F64 else 1e-3
    X = x.unsqueeze(0)
    gen = torch.Generator(device=x.device).manual_seed(12345)
    V = torch.randn(2, *x.shape, generator=gen, dtype=x.dtype, device=x.device)
    try:
        H = _primal_taps(model, mods, X)
        full = _joint_push(model, mods, X, V)
        T = V.unsqueeze(0)
        for i in range(len(mods)):
            T = _segment_push(model, mods, i, X, H[i - 1] if i else None, T)
            ref = full[i]
            err = float((T - ref).norm())
            if not err <= rtol * float(ref.norm()) + 1e-300:
                return False
    except TapError:
        return False
    return True


def _joint_push(model, mods, X: Tensor, V: Tensor) -> list[Tensor]:
    last = len(mods) - 1

    def g(x: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, mods, x.unsqueeze(0), stop_after=last)
        return tuple(h.reshape(-1) for h in call.outputs)

    def push(x: Tensor, Vs: Tensor):
        return vmap(lambda v: jvp(g, (x,), (v,))[1])(Vs)

    return list(vmap(push, in_dims=(0, None))(X, V))


def _reverse_rows(model, mods: Sequence[nn.Module], X: Tensor, c: int) -> list[Tensor]:
    """Rows ``J_l`` (``[bc, D_l, n_in]``) of every tap in ``mods`` by reverse mode."""
    last = len(mods) - 1

    def g(x: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, mods, x.unsqueeze(0), stop_after=last)
        return tuple(h.reshape(-1) for h in call.outputs)

    def per_example(x: Tensor) -> tuple[Tensor, ...]:
        outs, vjp_fn = vjp(g, x)
        rows = []
        for i, out in enumerate(outs):
            zeros = [torch.zeros_like(o) for o in outs]

            def pull(u, i=i, zeros=zeros):
                cot = tuple(u if j == i else z for j, z in enumerate(zeros))
                return vjp_fn(cot)[0].reshape(-1)

            eye = torch.eye(out.shape[0], dtype=out.dtype, device=out.device)
            rows.append(vmap(pull, chunk_size=c)(eye))
        return tuple(rows)

    return list(vmap(per_example)(X))
