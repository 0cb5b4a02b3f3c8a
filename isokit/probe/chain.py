"""Whether the taps form a chain (``docs/probes.md §3.1``), checked before the chain rule is used.

The chained sweep (:func:`isokit.probe.sweeps._run_chained`) obtains ``J_l = ∂h_l/∂h_b · J_b``
by pushing the columns of a tap ``b`` through the forward from it. That holds where ``h_l``
depends on the input ``x`` only through ``h_b``, which a skip connection over ``b`` breaks.

- :func:`check_chain`: at every tap (segments of one tap), two random tangents pushed through
  the full model (:func:`_joint_push`) and through the chain (:func:`_segment_push`) agree.
- :func:`check_segments`: at the boundaries of longer segments only, by one primal forward
  each from a perturbed input with the boundary's output held at its value.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    >>> _ = model.requires_grad_(False)
    >>> mods = list(model)
    >>> x = torch.randn(3, dtype=torch.float64)
    >>> primal = run_with_taps(model, mods, x.unsqueeze(0)).outputs
    >>> check_chain(model, mods, x), check_segments(model, mods, [[0], [1, 2]], x, primal)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import jvp, vmap

from isokit.probe.grams import _F64
from isokit.probe.taps import TapError, run_with_taps

__all__ = ["check_chain", "check_segments"]


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


def check_segments(
    model: nn.Module,
    mods: Sequence[nn.Module],
    segments: Sequence[Sequence[int]],
    x: Tensor,
    primal: Sequence[Tensor],
    *,
    rtol: float | None = None,
) -> bool:
    """Whether, at example ``x``, the taps of every segment but the first depend on the input
    only through the last tap ``b`` of the segment before: the forward from a perturbed input
    ``x'``, with tap ``b``'s output replaced by its value ``primal[b]`` at ``x``, must give the
    segment's tap outputs ``primal[l]`` at ``x``.

    Then ``h_l = F_l(h_b)`` near ``x`` and ``J_l = ∂F_l/∂h_b · J_b``. A connection that skips
    over ``b`` (``h_l = F_l(h_b, x)``) shows as ``F_l(h_b, x') ≠ F_l(h_b, x)``; without one both
    runs do the same operations on the same values after ``b``. The runs for all boundaries are
    one forward ``vmap``-ped over which boundary is held (``torch.where`` with a one-hot mask),
    far cheaper than pushing tangents through every tap (:func:`check_chain`).
    """
    bounds = [seg[-1] for seg in segments[:-1]]
    if not bounds:
        return True
    if rtol is None:
        rtol = 1e-12 if x.dtype == _F64 else 1e-6
    gen = torch.Generator(device=x.device).manual_seed(12345)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    scale = float(x.pow(2).mean().sqrt()) or 1.0
    xp = (x + 0.1 * scale * noise).unsqueeze(0)
    later = [i for seg in segments[1:] for i in seg]
    order = sorted(set(bounds) | set(later))
    pos = {i: k for k, i in enumerate(order)}

    def held(k: int, mask: Tensor):
        return lambda h: torch.where(mask[k], primal[bounds[k]].reshape(h.shape), h)

    def run(mask: Tensor) -> tuple[Tensor, ...]:
        replace = {pos[b]: held(k, mask) for k, b in enumerate(bounds)}
        call = run_with_taps(
            model, [mods[i] for i in order], xp, replace=replace, stop_after=len(order) - 1
        )
        return tuple(call.outputs[pos[i]].reshape(-1) for i in later)

    masks = torch.eye(len(bounds), dtype=torch.bool, device=x.device)
    try:
        outs = dict(zip(later, vmap(run)(masks), strict=True))
    except TapError:
        return False
    for k, seg in enumerate(segments[1:]):
        for i in seg:
            ref = primal[i].reshape(-1)
            if outs[i].shape[-1] != ref.shape[0]:
                return False
            if not float((outs[i][k] - ref).norm()) <= rtol * float(ref.norm()) + 1e-300:
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
