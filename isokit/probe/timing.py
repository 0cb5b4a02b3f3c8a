"""Time of the probe tiers before they run (``docs/probes.md §3.7``): :func:`estimate_exact_cost`.

``method="auto"`` compares the exact tier's estimate with ``ProbeOptions.max_seconds``. Per
example, with ``n_in`` inputs, taps of output sizes ``D_l`` and ``r_l = min(D_l, n_in)``:

    T_exact ≈ n_cols·t_col + Σ_l max(D_l, n_in)·r_l² / R_mm + Σ_l c_eig·r_l³

- the tangent pass: ``n_cols = n_in`` tangent columns through the model (plus ``D_l`` rows for
  each trailing tap done in reverse mode), at ``t_col`` seconds per column, timed on the model
  itself by one ``vmap``-ped ``jvp`` of a few basis tangents (:func:`column_time`);
- the Grams: ``max(D_l, n_in)·r_l²`` float64 multiply-adds per tap (``B = JJᵀ`` or
  ``A = JᵀJ``), at ``R_mm`` multiply-adds per second;
- ``eigvalsh`` of each ``r_l × r_l`` Gram, ``c_eig`` seconds per ``r³``.

``R_mm`` and ``c_eig`` (:class:`LinalgRates`) are measured once per process and device by one
small float64 matmul and one small ``eigvalsh`` (a few milliseconds; the Grams are float64
whatever the probe dtype) and cached. A small solve runs at a lower rate than a large one, so the
estimate errs high for large Grams. Not foreseen: the ``svdvals`` fallback of unreliable Grams
(``docs/probes.md §3.4``), which depends on the spectrum.

The matrix-free tier (:func:`lanczos_cost`) costs ``K·t_col`` for the moments (``K`` probes, all
taps at once) and, at an SLQ tap, ``SLQ_PASSES·m_l·K·f_l·t_col`` for ``m_l = min(steps, r_l)``
Lanczos steps of ``K`` probes, each a ``Jv`` and a ``Jᵀu`` through the prefix up to the tap,
whose share ``f_l`` of the forward pass the same timing measures.

Example:
    >>> rates = LinalgRates(macs_per_s=1e10, eigvalsh_s_per_r3=1e-9)
    >>> cost = exact_cost(256, [256] * 8, n_examples=4, column_s=1e-4, rates=rates)
    >>> round(cost.tangents_s, 4), round(cost.grams_s, 4), round(cost.eigvalsh_s, 4)
    (0.1024, 0.0537, 0.5369)
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.func import jvp, vmap

from isokit.probe.grams import _F64, _basis
from isokit.probe.plan import reverse_split
from isokit.probe.start import StartView
from isokit.probe.taps import run_with_taps

if TYPE_CHECKING:
    from isokit.probe.prepare import Prepared

__all__ = [
    "SLQ_PASSES",
    "ColumnTime",
    "ExactCost",
    "LanczosCost",
    "LinalgRates",
    "column_time",
    "estimate_exact_cost",
    "estimate_lanczos_cost",
    "exact_cost",
    "lanczos_cost",
    "linalg_rates",
    "measure_linalg_rates",
]

#: Basis tangents of the first timed ``jvp`` (the per-column cost levels off from about 8 on CPU
#: ResNets); a call faster than ``_CHEAP_CALL_S`` is timed again with 4× as many, up to
#: ``_MAX_COLUMNS``, so that the per-call overhead of small layers is spread as in the sweep.
CALIBRATION_COLUMNS = 8
_CHEAP_CALL_S = 0.02
_MAX_COLUMNS = 256
#: Tangent columns per vector of one Lanczos step at full depth: ``Jv`` by double vjp and ``Jᵀu``
#: (measured: 2.7 on a CIFAR ResNet-20 on CPU).
SLQ_PASSES = 3.0
#: Sizes of the calibration: a ``[512, 256]`` matrix's Gram and a ``128 × 128`` ``eigvalsh``.
_MM_SHAPE = (512, 256)
_EIG_SIZE = 128
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
        seconds: per tangent column through every tap.
        fractions: per tap, the share of that time spent up to the tap (the last is 1).
    """

    seconds: float
    fractions: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class ExactCost:
    """Estimated seconds of an exact probe, by part (module docstring).

    Example:
        >>> cost = ExactCost(tangents_s=1.0, grams_s=2.0, eigvalsh_s=0.5)
        >>> cost.seconds, cost.describe()
        (3.5, '~3.5 s (tangent pass 1 s, Grams 2 s, eigvalsh 0.5 s)')
    """

    tangents_s: float
    grams_s: float
    eigvalsh_s: float
    column: ColumnTime | None = None

    @property
    def seconds(self) -> float:
        """The total, ``tangents_s + grams_s + eigvalsh_s``."""
        return self.tangents_s + self.grams_s + self.eigvalsh_s

    def describe(self) -> str:
        """The total and its parts, for ``Profile.meta["method_reason"]``."""
        return (
            f"~{self.seconds:.3g} s (tangent pass {self.tangents_s:.3g} s, Grams "
            f"{self.grams_s:.3g} s, eigvalsh {self.eigvalsh_s:.3g} s)"
        )


@dataclass(frozen=True, kw_only=True)
class LanczosCost:
    """Estimated seconds of a matrix-free probe: the moments, and SLQ per tap index."""

    moments_s: float
    slq_s: dict[int, float]

    def within(self, candidates: Sequence[int], budget: float) -> list[int]:
        """The SLQ taps among ``candidates`` that fit ``budget`` with the moments, cheapest
        first (in tap order).

        Example:
            >>> LanczosCost(moments_s=1.0, slq_s={0: 2.0, 1: 5.0, 2: 3.0}).within([0, 1, 2], 6.5)
            [0, 2]
        """
        left, out = budget - self.moments_s, []
        for i in sorted(candidates, key=lambda i: (self.slq_s[i], i)):
            if self.slq_s[i] > left:
                break
            left -= self.slq_s[i]
            out.append(i)
        return sorted(out)


def exact_cost(
    n_in: int,
    dims: Sequence[int],
    *,
    n_examples: int,
    column_s: float,
    rates: LinalgRates,
    svd: bool = False,
) -> ExactCost:
    """The exact tier's cost model (module docstring) for given sizes and measured speeds.

    ``svd=True`` (``svdvals`` of every ``J_l``) counts a bidiagonalization of twice the Gram's
    multiply-adds plus an ``r³`` solve per tap.

    Example:
        >>> rates = LinalgRates(macs_per_s=1e9, eigvalsh_s_per_r3=1e-9)
        >>> exact_cost(100, [400, 10], n_examples=1, column_s=1e-3, rates=rates).describe()
        '~0.115 s (tangent pass 0.11 s, Grams 0.00401 s, eigvalsh 0.001 s)'
    """
    fwd, rev = reverse_split(n_in, dims, "auto")
    columns = (n_in if fwd else 0) + sum(dims[i] for i in rev)
    ranks = [min(d, n_in) for d in dims]
    macs = sum(max(d, n_in) * r * r for d, r in zip(dims, ranks, strict=True))
    cubes = sum(r**3 for r in ranks)
    return ExactCost(
        tangents_s=n_examples * columns * column_s,
        grams_s=n_examples * (2 if svd else 1) * macs / rates.macs_per_s,
        eigvalsh_s=n_examples * cubes * rates.eigvalsh_s_per_r3,
    )


def lanczos_cost(
    n_in: int,
    dims: Sequence[int],
    *,
    n_examples: int,
    column: ColumnTime,
    n_probes: int,
    steps: int,
) -> LanczosCost:
    """The matrix-free tier's cost model (module docstring), SLQ priced at every tap.

    Example:
        >>> col = ColumnTime(seconds=1e-3, fractions=(0.5, 1.0))
        >>> cost = lanczos_cost(100, [100, 10], n_examples=2, column=col, n_probes=4, steps=16)
        >>> cost.moments_s, {i: round(s, 4) for i, s in cost.slq_s.items()}
        (0.008, {0: 0.192, 1: 0.24})
    """
    per_column = n_examples * column.seconds
    slq = {
        i: SLQ_PASSES * min(steps, d, n_in) * n_probes * f * per_column
        for i, (d, f) in enumerate(zip(dims, column.fractions, strict=True))
    }
    return LanczosCost(moments_s=n_probes * per_column, slq_s=slq)


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
    """Time one ``[512, 256]`` Gram and one ``128 × 128`` ``eigvalsh`` in float64 on ``device``
    (fastest of 5 each, after one untimed call).

    Example:
        >>> rates = measure_linalg_rates("cpu")
        >>> rates.macs_per_s > 0 and rates.eigvalsh_s_per_r3 > 0
        True
    """
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(0)
    C = torch.randn(*_MM_SHAPE, generator=gen, dtype=_F64, device=device)
    G = torch.randn(_EIG_SIZE, _EIG_SIZE, generator=gen, dtype=_F64, device=device)
    G = G @ G.T
    rows, cols = _MM_SHAPE
    timings = []
    for fn in (lambda: C.T @ C, lambda: torch.linalg.eigvalsh(G)):
        fn()  # first call: allocation, kernel selection
        # A zero reading (a coarse clock) stands for one nanosecond, so rates stay finite.
        timings.append(max(min(_elapsed(fn, device, timer) for _ in range(_REPEATS)), 1e-9))
    mm_s, eig_s = timings
    return LinalgRates(macs_per_s=rows * cols * cols / mm_s, eigvalsh_s_per_r3=eig_s / _EIG_SIZE**3)


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

    Times ``vmap(v ↦ jvp(g, (x,), (v,)))`` of ``k = min(columns, n_in)`` input basis vectors,
    with ``g`` returning every tap of ``mods`` as the joint sweep does (fastest of ``repeats``,
    after one untimed call with one column), with ``k`` grown while a call is cheap (constants
    above). Forward hooks on the taps read the clock as each tap finishes: the shares of the
    time up to each tap, relative to the last, are :attr:`ColumnTime.fractions`.

    Example:
        >>> from isokit.models import MLP
        >>> model = MLP(16, 16, depth=3).double()
        >>> t = column_time(model, list(model.acts), torch.randn(16, dtype=torch.float64))
        >>> t.seconds > 0, len(t.fractions), t.fractions[-1]
        (True, 3, 1.0)
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

    k = max(1, min(columns, n_in))
    handles = [m.register_forward_hook(mark) for m in mods]
    try:
        with warnings.catch_warnings():
            # The exact tier reports vmap's slow-path warnings itself, once.
            warnings.filterwarnings("ignore", message=r".*(performance drop|batching rule)")
            # Untimed: the first forward-mode call of a process loads torch.func's decompositions
            # (seconds), and the model's first call selects its kernels.
            push(1)
            while True:
                seconds, fractions = min(timed(k) for _ in range(max(1, repeats)))
                if seconds >= _CHEAP_CALL_S or k >= min(n_in, _MAX_COLUMNS):
                    break
                k = min(4 * k, n_in, _MAX_COLUMNS)
    finally:
        for h in handles:
            h.remove()
    return ColumnTime(seconds=max(seconds, 1e-9) / k, fractions=fractions)


def estimate_exact_cost(
    prep: Prepared, *, budget: float | None = None, timer: Timer = time.perf_counter
) -> ExactCost:
    """:func:`exact_cost` of a prepared probe, its tangent pass timed on the probe copy
    (:func:`column_time`, kept in :attr:`ExactCost.column`).

    One timing is enough far from ``budget``; within a factor 3 of it, two more are taken and the
    fastest is kept, so that one stall on a shared machine does not decide the tier.

    Example:
        >>> from isokit.models import MLP
        >>> from isokit.probe.options import ProbeOptions
        >>> from isokit.probe.prepare import prepare
        >>> with prepare(MLP(8, 8, depth=2), torch.randn(2, 8), ProbeOptions()) as prep:
        ...     cost = estimate_exact_cost(prep)
        >>> 0 < cost.seconds < 20, cost.column.fractions[-1]
        (True, 1.0)
    """
    model = prep.copy
    if isinstance(model, StartView):
        model = model.at(0)  # each example's function is its own view (docs/probes.md §3.6)
    x0 = prep.x[0]

    def cost(column: ColumnTime) -> ExactCost:
        est = exact_cost(
            x0.numel(),
            prep.dims,
            n_examples=int(prep.x.shape[0]),
            column_s=column.seconds,
            rates=linalg_rates(prep.device),
            svd=prep.options.svd,
        )
        return ExactCost(
            tangents_s=est.tangents_s, grams_s=est.grams_s, eigvalsh_s=est.eigvalsh_s, column=column
        )

    column = column_time(model, prep.mods, x0, timer=timer)
    est = cost(column)
    if budget is not None and budget / 3 < est.seconds < 3 * budget:
        again = column_time(model, prep.mods, x0, repeats=2, timer=timer)
        est = cost(min(column, again, key=lambda c: c.seconds))
    return est


def estimate_lanczos_cost(prep: Prepared, column: ColumnTime) -> LanczosCost:
    """:func:`lanczos_cost` of a prepared probe with the options' probes and steps.

    Example:
        >>> from isokit.models import MLP
        >>> from isokit.probe.options import ProbeOptions
        >>> from isokit.probe.prepare import prepare
        >>> with prepare(MLP(8, 8, depth=2), torch.randn(1, 8), ProbeOptions()) as prep:
        ...     cost = estimate_lanczos_cost(prep, ColumnTime(seconds=1e-3, fractions=(0.5, 1)))
        >>> round(cost.moments_s, 4), sorted(cost.slq_s)
        (0.016, [0, 1])
    """
    return lanczos_cost(
        int(prep.x[0].numel()),
        prep.dims,
        n_examples=int(prep.x.shape[0]),
        column=column,
        n_probes=prep.options.n_probes,
        steps=prep.options.lanczos_steps,
    )
