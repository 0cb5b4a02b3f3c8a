"""The speeds the probes' time estimates are built on (``docs/probes.md §3.7``).

:func:`linalg_rates`: float64 Gram products and ``eigvalsh`` on a device, measured once per
process by one small matmul and one small ``eigvalsh`` (a few milliseconds; the exact tier's
Grams are float64 whatever the probe dtype) and cached. :func:`column_time`: the tangent pass of
one model, timed by ``vmap``-ped ``jvp`` of 1 and of a few input basis tangents, with the share
of the forward pass up to each tap. :mod:`isokit.probe.timing` turns them into seconds.

Both keep the fastest of a few timings: a shared machine only ever slows a timing down.

Example:
    >>> rates = linalg_rates("cpu")
    >>> rates.macs_per_s > 0 and rates.eigvalsh_s_per_r3 > 0
    True
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import jvp, vmap

from isokit.probe.grams import _F64, _basis
from isokit.probe.taps import run_with_taps

__all__ = [
    "CALIBRATION_COLUMNS",
    "ColumnTime",
    "LinalgRates",
    "column_time",
    "linalg_rates",
    "measure_linalg_rates",
]

#: Basis tangents of the timed ``jvp`` beside the one-column call (the per-column cost of CPU
#: ResNets levels off from about 8).
CALIBRATION_COLUMNS = 8
#: Sizes of the calibration: a ``[512, 256]`` matrix's Gram and ``eigvalsh`` of ``64 × 64`` and
#: ``128 × 128``, the faster per ``r³`` kept: with 2 threads on a loaded 2-core machine a
#: descheduled thread stalled every 128 × 128 solve (0.76 s instead of 1 ms), not the 64 × 64
#: ones nor the rate of large solves.
_MM_SHAPE = (512, 256)
_EIG_SIZES = (64, 128)
#: Timings per calibration; the fastest is kept (a shared machine only ever slows one down).
_REPEATS = 5

Timer = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class LinalgRates:
    """Float64 linear-algebra speed of one device.

    Attributes:
        macs_per_s: multiply-adds per second of a Gram product ``CᵀC``.
        eigvalsh_s_per_r3: seconds per ``r³`` of ``torch.linalg.eigvalsh`` of an ``r × r``
            matrix.
    """

    macs_per_s: float
    eigvalsh_s_per_r3: float


@dataclass(frozen=True, kw_only=True)
class ColumnTime:
    """The timed tangent pass of one example.

    Attributes:
        seconds: per tangent column through every tap (the marginal cost).
        fractions: per tap, the share of a call's time spent up to the tap (the last is 1).
        call_s: per ``vmap``-ped call, whatever its columns (dispatch, the primal pass).
    """

    seconds: float
    fractions: tuple[float, ...]
    call_s: float = 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _elapsed(fn: Callable[[], object], device: torch.device, timer: Timer) -> float:
    """Seconds of one call of ``fn``, the device's queue drained before and after."""
    _sync(device)
    t0 = timer()
    fn()
    _sync(device)
    return max(timer() - t0, 0.0)


def measure_linalg_rates(
    device: torch.device | str = "cpu", *, timer: Timer = time.perf_counter
) -> LinalgRates:
    """Time one ``[512, 256]`` Gram and ``eigvalsh`` of ``64 × 64`` and ``128 × 128`` in float64
    on ``device`` (fastest of 5 each, after one untimed call; the faster ``eigvalsh`` per ``r³``).

    Example:
        >>> rates = measure_linalg_rates("cpu")
        >>> rates.macs_per_s > 0 and rates.eigvalsh_s_per_r3 > 0
        True
    """
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(0)
    C = torch.randn(*_MM_SHAPE, generator=gen, dtype=_F64, device=device)
    Gs = [torch.randn(n, n, generator=gen, dtype=_F64, device=device) for n in _EIG_SIZES]
    Gs = [G @ G.T for G in Gs]

    def fastest(fn: Callable[[], object]) -> float:
        fn()  # first call: allocation, kernel selection
        # A zero reading (a coarse clock) stands for one nanosecond, so rates stay finite.
        return max(min(_elapsed(fn, device, timer) for _ in range(_REPEATS)), 1e-9)

    rows, cols = _MM_SHAPE
    mm_s = fastest(lambda: C.T @ C)
    eig = min(fastest(lambda G=G: torch.linalg.eigvalsh(G)) / G.shape[0] ** 3 for G in Gs)
    return LinalgRates(macs_per_s=rows * cols * cols / mm_s, eigvalsh_s_per_r3=eig)


@functools.cache
def _cached_rates(device: str) -> LinalgRates:
    return measure_linalg_rates(device)


def linalg_rates(device: torch.device | str = "cpu") -> LinalgRates:
    """:func:`measure_linalg_rates` of ``device``, measured once per process and cached.

    Example:
        >>> linalg_rates("cpu") is linalg_rates(torch.device("cpu"))
        True
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _cached_rates(str(device))


def column_time(
    model: nn.Module,
    mods: Sequence[nn.Module],
    x: Tensor,
    *,
    columns: int = CALIBRATION_COLUMNS,
    repeats: int = 1,
    timer: Timer = time.perf_counter,
) -> ColumnTime:
    """The tangent pass of the exact sweep at one example ``x`` (``[*in_shape]``), timed.

    Times ``vmap(v ↦ jvp(g, (x,), (v,)))`` of 1 and of ``k = min(columns, n_in)`` input basis
    vectors, with ``g`` returning every tap of ``mods`` as the joint sweep does (fastest of
    ``repeats`` each, after one untimed call). The two calls give the cost per column,
    ``(t_k − t_1)/(k − 1)``, and per call, ``t_1`` less one column; when they contradict each
    other (``t_k < t_1``, a stall) the cost per column is ``t_k/k`` and the call is free.
    Forward hooks on the taps read the clock as each tap finishes: the shares of the
    ``k``-column call's time up to each tap, relative to the last, are
    :attr:`ColumnTime.fractions`.

    Example:
        >>> from isokit.models import MLP
        >>> model = MLP(16, 16, depth=3).double()
        >>> t = column_time(model, list(model.acts), torch.randn(16, dtype=torch.float64))
        >>> t.seconds >= 0, t.call_s >= 0, len(t.fractions), t.fractions[-1]
        (True, True, 3, 1.0)
    """
    n_in, n_taps = x.numel(), len(mods)
    marks: list[float] = []

    def mark(module, args, out) -> None:
        _sync(x.device)
        marks.append(timer())

    def g(xx: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, mods, xx.unsqueeze(0), stop_after=n_taps - 1)
        return tuple(h.reshape(-1) for h in call.outputs)

    def push(k: int) -> None:
        V = _basis(0, k, n_in, tuple(x.shape), dtype=x.dtype, device=x.device)
        vmap(lambda v: jvp(g, (x,), (v,))[1])(V)

    def timed(k: int) -> tuple[float, tuple[float, ...]]:
        marks.clear()
        _sync(x.device)
        t0 = timer()
        push(k)
        _sync(x.device)
        seconds = max(timer() - t0, 0.0)
        span = marks[-1] - t0 if len(marks) == n_taps else 0.0
        if span <= 0:  # a clock too coarse, or a tap that did not run once: no shares
            return seconds, (1.0,) * n_taps
        return seconds, tuple(min(max((m - t0) / span, 0.0), 1.0) for m in marks)

    def fastest(k: int) -> tuple[float, tuple[float, ...]]:
        return min(timed(k) for _ in range(max(1, repeats)))

    k = max(1, min(columns, n_in))
    handles = [m.register_forward_hook(mark) for m in mods]
    try:
        with warnings.catch_warnings():
            # The exact tier reports vmap's slow-path warnings itself, once.
            warnings.filterwarnings("ignore", message=r".*(performance drop|batching rule)")
            # Untimed: the first forward-mode call of a process loads torch.func's decompositions
            # (seconds), and the model's first call selects its kernels. Both sizes, because a
            # batch of tangents can take batching rules a single one does not (attention's:
            # measured 0.016 s against 0.0006 s per column on a small BERT when only 1 warmed).
            push(1)
            if k > 1:
                push(k)
            one, fractions = fastest(1)
            many, fractions = fastest(k) if k > 1 else (one, fractions)
    finally:
        for h in handles:
            h.remove()
    if k == 1 or many < one:
        return ColumnTime(seconds=many / k, fractions=fractions)
    per_column = (many - one) / (k - 1)
    return ColumnTime(seconds=per_column, fractions=fractions, call_s=max(one - per_column, 0.0))
