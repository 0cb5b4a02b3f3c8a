"""Forward and reverse sweeps of the exact probe (``docs/probes.md §3``).

- :func:`_joint_sweep`: one forward-mode sweep for a group of taps; each input-basis chunk ``S``
  gives ``J_l[:, S]`` of every tap through ``vmap(jvp)``, streamed into a
  :class:`~isokit.probe.grams._Slot` per tap; :func:`_run_group` runs it for one tap group and
  re-sweeps the taps whose Gram is unreliable.
- :func:`_segment_push` and :func:`_primal_taps`: the chained sweep (:func:`_run_chained`),
  pushing the columns of ``J_{l−1}`` through the segment between taps ``l−1`` and ``l``;
  :func:`check_chain` verifies numerically that the taps form a chain before it is used.
- :func:`_reverse_rows`: reverse mode for trailing narrow taps (``vmap`` of one ``vjp_fn``,
  :func:`_run_reverse`).

The driver that combines them is :func:`isokit.probe.exact.exact_spectra`; the Gram helpers live
in :mod:`isokit.probe.grams`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from isokit.probe.grams import _F64, _basis, _from_gram, _gram_of, _Slot, _svdvals
from isokit.probe.memory import estimate_exact_memory
from isokit.probe.plan import JOINT_COMFORT_BYTES, ExactPlan, reverse_split
from isokit.probe.taps import TapError, run_with_taps

__all__ = ["check_chain"]


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
    ``on_done(k, slot)`` returns for the slot of the ``k``-th tap, called as soon as the last
    chunk is in (the slot and that tap's chunk are released right away, so the Grams never
    pile up).
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
                done[k] = on_done(k, slot)
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


# --------------------------------------------------------------------------------------- runs


@dataclass(eq=False)
class _Geometry:
    """The sizes of one exact probe, from a dry run on the first example."""

    names: list[str]  # the taps' names in results and messages
    mods: list[nn.Module]
    shapes: list[tuple[int, ...]]
    dims: list[int]
    in_shape: tuple[int, ...]
    n_in: int
    param_bytes: int


def _geometry(
    model: nn.Module, inputs: Tensor, tap_names: Sequence[str], labels: Sequence[str] | None
) -> _Geometry:
    mods = [model.get_submodule(n) for n in tap_names]
    dry = run_with_taps(model, mods, inputs[:1])
    in_shape = tuple(inputs.shape[1:])
    return _Geometry(
        names=list(tap_names if labels is None else labels),
        mods=mods,
        shapes=[tuple(h.shape) for h in dry.outputs],
        dims=[h.numel() for h in dry.outputs],
        in_shape=in_shape,
        n_in=math.prod(in_shape),
        param_bytes=8 * sum(p.numel() for p in model.parameters()),
    )


def _chain_ok(
    model: nn.Module, inputs: Tensor, geo: _Geometry, *, strategy: str, mode: str, svd: bool
) -> bool | None:
    """Whether the forward taps form a chain, checked only when the chained sweep may be used."""
    fwd, _ = reverse_split(geo.n_in, geo.dims, mode)
    if not fwd or strategy not in ("auto", "chained"):
        return None
    # The chain check is only worth running when the joint sweep is not small.
    joint_min = estimate_exact_memory(
        geo.n_in,
        [geo.dims[i] for i in fwd],
        chunk_size=min(geo.n_in, 64),
        svd=svd,
        param_bytes=geo.param_bytes,
    )
    if strategy != "chained" and joint_min <= JOINT_COMFORT_BYTES:
        return None
    ok = check_chain(model, [geo.mods[i] for i in fwd], inputs[0])
    if strategy == "chained" and not ok:
        raise TapError(
            "the taps do not form a chain (some connection skips over a tap boundary); "
            "use strategy='joint' or 'auto'"
        )
    return ok


def _run_chained(model, geo: _Geometry, plan: ExactPlan, X: Tensor, svd: bool, out, bar) -> None:
    """The chained sweep over one example chunk: ``J_{l−1}``'s columns through segment ``l``."""
    idx = plan.groups[0]
    cmods = [geo.mods[i] for i in idx]
    H = _primal_taps(model, cmods, X)
    n_in = geo.n_in
    T_prev = None
    for k, i in enumerate(idx):
        T = torch.empty(X.shape[0], n_in, geo.dims[i], dtype=X.dtype, device=X.device)
        for start in range(0, n_in, plan.chunk_size):
            stop = min(n_in, start + plan.chunk_size)
            if k == 0:
                V = _basis(start, stop, n_in, geo.in_shape, dtype=X.dtype, device=X.device)
                V = V.unsqueeze(0).expand(X.shape[0], *V.shape)
            else:
                V = T_prev[:, start:stop]
            T[:, start:stop] = _segment_push(model, cmods, k, X, H[k - 1] if k else None, V)
            if bar is not None and k == len(idx) - 1:
                bar.update(stop - start)
        s, bad, used, G, _ = _Slot.of_columns(T, geo.dims[i]).finish(svd=svd, name=geo.names[i])
        out.record(i, s, bad, used, G)
        T_prev = T


def _run_group(
    model, geo: _Geometry, plan: ExactPlan, group: list[int], X: Tensor, svd: bool, out, bar
) -> None:
    """One joint sweep over the taps of ``group``; unreliable Grams are re-swept (§3.4)."""
    keep = [svd or geo.dims[i] > geo.n_in for i in group]

    def done(k: int, slot: _Slot) -> tuple:
        s, bad, used, G, again = slot.finish(svd=svd, name=geo.names[group[k]])
        return s, bad, used, (G if out.keep_grams else None), again

    gmods = [geo.mods[i] for i in group]
    finished = _joint_sweep(model, gmods, X, plan.chunk_size, keep, bar, on_done=done)
    results = {i: item[:4] for i, item in zip(group, finished, strict=True)}
    redo = [i for i, item in zip(group, finished, strict=True) if item[4]]
    del finished
    if redo:
        # Re-sweep the unreliable taps keeping their columns (§3.4).
        rmods = [geo.mods[i] for i in redo]
        rslots = _joint_sweep(model, rmods, X, plan.chunk_size, [True] * len(redo))
        for i, slot in zip(redo, rslots, strict=True):
            s, bad, used, G = results[i]
            s = s.clone()
            s[used] = _svdvals(slot.cols[used])
            results[i] = (s, bad, used, G)
        del rslots
    for i in group:
        out.record(i, *results[i])


def _run_reverse(model, geo: _Geometry, plan: ExactPlan, X: Tensor, svd: bool, out) -> None:
    """The trailing narrow taps by reverse mode (§3.2)."""
    rmods = [geo.mods[i] for i in plan.reverse]
    rows = _reverse_rows(model, rmods, X, plan.chunk_size)
    for i, R in zip(plan.reverse, rows, strict=True):
        R = R.to(_F64)  # [bc, D, n_in]
        G = _gram_of(R, rows=geo.dims[i] <= geo.n_in)
        s, bad = _from_gram(G, geo.names[i])
        used = torch.ones_like(bad) if svd else bad
        if bool(used.any()):
            s = s.clone()
            s[used] = _svdvals(R[used])
        out.record(i, s, bad, used, G)
