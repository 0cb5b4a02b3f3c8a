"""Forward and reverse sweeps of the exact probe (``docs/probes.md §3``).

- :func:`_joint_sweep`: one forward-mode sweep for a group of taps; each input-basis chunk ``S``
  gives ``J_l[:, S]`` of every tap through ``vmap(jvp)``, streamed into a
  :class:`~isokit.probe.grams._Slot` per tap; :func:`_run_group` runs it for one tap group and
  re-sweeps the taps whose Gram is unreliable.
- :func:`_run_chained`: the chained sweep, segment by segment: the joint sweep of a segment's
  taps starts from the columns of the tap before it (a :class:`_Boundary`), pushed through the
  forward with that tap's output replaced, after :mod:`isokit.probe.chain` has checked that the
  chain rule holds there.
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

from isokit.probe.chain import check_chain, check_segments
from isokit.probe.grams import _F64, _basis, _from_gram, _gram_of, _Slot, _svdvals
from isokit.probe.memory import estimate_exact_memory
from isokit.probe.plan import JOINT_COMFORT_BYTES, ExactPlan, reverse_split
from isokit.probe.taps import TapError, run_with_taps

__all__ = ["check_chain", "check_segments"]  # re-exported from isokit.probe.chain


# --------------------------------------------------------------------------------------- sweeps


@dataclass(eq=False)
class _Boundary:
    """Where a chained segment starts: the tap before it, its primal output and its columns.

    ``H`` is ``[bc, D_b]``: the tap's output for every example of the chunk; ``T`` is
    ``[bc, n_in, D_b]``: its columns ``J_b`` (float64, as kept by its slot).
    """

    module: nn.Module
    H: Tensor
    T: Tensor


def _tap_function(model: nn.Module, mods: Sequence[nn.Module], source: _Boundary | None):
    """``f(x, z) -> (h_l for l in mods)`` (flattened), the forward stopping after the last tap.

    Without ``source`` the variable ``z`` is the input ``x`` itself; with it, ``z`` replaces the
    output of ``source.module`` and ``x`` only feeds the primal forward up to it.
    """
    if source is None:
        last = len(mods) - 1

        def f(x: Tensor, z: Tensor) -> tuple[Tensor, ...]:
            call = run_with_taps(model, mods, z.unsqueeze(0), stop_after=last)
            return tuple(h.reshape(-1) for h in call.outputs)

        return f
    both = [source.module, *mods]

    def f_seg(x: Tensor, z: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, both, x.unsqueeze(0), replace={0: z}, stop_after=len(mods))
        return tuple(h.reshape(-1) for h in call.outputs[1:])

    return f_seg


def _joint_sweep(
    model: nn.Module,
    mods: Sequence[nn.Module],
    X: Tensor,
    c: int,
    keep_cols: Sequence[bool],
    progress=None,
    on_done=None,
    source: _Boundary | None = None,
) -> list:
    """One forward sweep over all input basis chunks for the taps ``mods`` (stops after the last).

    ``X`` is ``[bc, *in_shape]``; returns one filled slot per tap, or, with ``on_done``, what
    ``on_done(k, slot)`` returns for the slot of the ``k``-th tap, called as soon as the last
    chunk is in (the slot and that tap's chunk are released right away, so the Grams never
    pile up). With ``source`` (a chained segment) the tangents are the columns of the boundary
    tap, pushed through the forward from it (``J_l = ∂h_l/∂h_b · J_b``).
    """
    in_shape = tuple(X.shape[1:])
    n_in = math.prod(in_shape)
    f = _tap_function(model, mods, source)

    def push(x: Tensor, z: Tensor, V: Tensor) -> tuple[Tensor, ...]:
        return vmap(lambda v: jvp(lambda zz: f(x, zz), (z,), (v,))[1])(V)

    Z = X if source is None else source.H
    if X.shape[0] == 1:  # one example: skip a vmap level (less dispatch per op)

        def batched(X: Tensor, Z: Tensor, V: Tensor) -> tuple[Tensor, ...]:
            V0 = V if source is None else V[0]  # the basis is shared, a boundary's columns not
            return tuple(Y.unsqueeze(0) for Y in push(X[0], Z[0], V0))

    else:
        batched = vmap(push, in_dims=(0, 0, None if source is None else 0))
    slots: list[_Slot | None] | None = None
    done: list = [None] * len(mods)
    for start in range(0, n_in, c):
        stop = min(n_in, start + c)
        if source is None:
            V = _basis(start, stop, n_in, in_shape, dtype=X.dtype, device=X.device)
        else:
            V = source.T[:, start:stop].to(X.dtype)
        Ys = list(batched(X, Z, V))
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
    primal: list[Tensor]  # the tap outputs of the first example (the dry run)


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
        primal=list(dry.outputs),
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


def _boundary_primals(model: nn.Module, mods: Sequence[nn.Module], X: Tensor) -> list[Tensor]:
    """``[bc, D_b]`` outputs of the taps ``mods`` for every example, each example run alone
    (batch of one, as inside the sweeps)."""
    if not mods:
        return []

    def prim(x: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, mods, x.unsqueeze(0), stop_after=len(mods) - 1)
        return tuple(h.reshape(-1) for h in call.outputs)

    if X.shape[0] == 1:
        return [h.unsqueeze(0) for h in prim(X[0])]
    return list(vmap(prim)(X))


def _run_chained(model, geo: _Geometry, plan: ExactPlan, X: Tensor, svd: bool, out, bar) -> None:
    """The chained sweep over one example chunk, segment by segment (``plan.groups``).

    The taps of a segment share one joint sweep: the first segment's from the input basis, every
    later one's from the columns of the tap before it (``J_l = ∂h_l/∂h_b · J_b``), whose slot
    keeps them until the next segment has used them. Segments of one tap hold two taps' columns
    at a time; longer ones trade memory for fewer ``vmap`` calls.
    """
    segs = plan.groups
    H = _boundary_primals(model, [geo.mods[seg[-1]] for seg in segs[:-1]], X)
    source = None
    for k, seg in enumerate(segs):
        last = k == len(segs) - 1
        cols = _sweep_taps(
            model, geo, plan, seg, X, svd, out, bar if last else None, source, cols_out=not last
        )
        source = None if last else _Boundary(geo.mods[seg[-1]], H[k], cols)


def _run_group(
    model, geo: _Geometry, plan: ExactPlan, group: list[int], X: Tensor, svd: bool, out, bar
) -> None:
    """One joint sweep over the taps of ``group``; unreliable Grams are re-swept (§3.4)."""
    _sweep_taps(model, geo, plan, group, X, svd, out, bar)


def _sweep_taps(
    model,
    geo: _Geometry,
    plan: ExactPlan,
    group: list[int],
    X: Tensor,
    svd: bool,
    out,
    bar,
    source: _Boundary | None = None,
    cols_out: bool = False,
) -> Tensor | None:
    """One joint sweep over the taps of ``group`` (from ``source`` if given), recorded in
    ``out``; unreliable Grams are re-swept keeping the columns (§3.4). With ``cols_out`` the
    last tap keeps its columns, which are returned."""
    keep = [svd or geo.dims[i] > geo.n_in for i in group]
    keep[-1] = keep[-1] or cols_out

    def done(k: int, slot: _Slot) -> tuple:
        s, bad, used, G, again = slot.finish(svd=svd, name=geo.names[group[k]])
        cols = slot.cols if (cols_out and k == len(group) - 1) else None
        return s, bad, used, (G if out.keep_grams else None), again, cols

    gmods = [geo.mods[i] for i in group]
    finished = _joint_sweep(
        model, gmods, X, plan.chunk_size, keep, bar, on_done=done, source=source
    )
    results = {i: item[:4] for i, item in zip(group, finished, strict=True)}
    redo = [i for i, item in zip(group, finished, strict=True) if item[4]]
    cols = finished[-1][5]
    del finished
    if redo:
        # Re-sweep the unreliable taps keeping their columns (§3.4).
        rmods = [geo.mods[i] for i in redo]
        rslots = _joint_sweep(model, rmods, X, plan.chunk_size, [True] * len(redo), source=source)
        for i, slot in zip(redo, rslots, strict=True):
            s, bad, used, G = results[i]
            s = s.clone()
            s[used] = _svdvals(slot.cols[used])
            results[i] = (s, bad, used, G)
        del rslots
    for i in group:
        out.record(i, *results[i])
    return cols


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
