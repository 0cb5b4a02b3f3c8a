"""Time of the probe tiers before they run (``docs/probes.md §3.7``): :func:`estimate_exact_cost`.

``method="auto"`` compares the exact tier's estimate with ``ProbeOptions.max_seconds``. Per
example, with ``n_in`` inputs, taps of output sizes ``D_l`` and ``r_l = min(D_l, n_in)``:

    T_exact ≈ n_cols·t_col + ⌈n_cols/256⌉·t_call + Σ_l max(D_l, n_in)·r_l²/R_mm + Σ_l c_eig·r_l³

- the tangent pass: ``n_cols = n_in`` tangent columns through the model (plus ``D_l`` rows for
  each trailing tap done in reverse mode), at ``t_col`` seconds per column plus ``t_call`` per
  ``vmap``-ped call of 256 columns (the sweep's batches, :mod:`isokit.probe.plan`), both timed on
  the model itself by ``vmap``-ped ``jvp`` of 1 and of a few basis tangents
  (:func:`~isokit.probe.calibration.column_time`);
- the Grams: ``max(D_l, n_in)·r_l²`` float64 multiply-adds per tap (``B = JJᵀ`` or
  ``A = JᵀJ``), at ``R_mm`` multiply-adds per second;
- ``eigvalsh`` of each ``r_l × r_l`` Gram, ``c_eig`` seconds per ``r³``.

``R_mm`` and ``c_eig`` (:class:`~isokit.probe.calibration.LinalgRates`) are measured once per
process and device (:mod:`isokit.probe.calibration`). Not foreseen: the ``svdvals`` fallback of
unreliable Grams (``docs/probes.md §3.4``), which depends on the spectrum.

The matrix-free tier (:func:`lanczos_cost`) costs ``t_call + K·t_col`` for the moments (``K``
probes, all taps at once) and, at an SLQ tap, ``m_l·f_l·(2·t_call + SLQ_PASSES·K·t_col)`` for
``m_l = min(steps, r_l)`` Lanczos steps of ``K`` probes, each a ``Jv`` and a ``Jᵀu`` through the
prefix up to the tap, whose share ``f_l`` of the forward pass the same timing measures.

Example:
    >>> rates = LinalgRates(macs_per_s=1e10, eigvalsh_s_per_r3=1e-9)
    >>> cost = exact_cost(256, [256] * 8, n_examples=4, column_s=1e-4, rates=rates)
    >>> round(cost.tangents_s, 4), round(cost.grams_s, 4), round(cost.eigvalsh_s, 4)
    (0.1024, 0.0537, 0.5369)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from isokit.probe.calibration import ColumnTime, LinalgRates, Timer, column_time, linalg_rates
from isokit.probe.plan import _TARGET_COLUMNS, reverse_split
from isokit.probe.start import StartView

if TYPE_CHECKING:
    from isokit.probe.prepare import Prepared

__all__ = [
    "SLQ_PASSES",
    "ExactCost",
    "LanczosCost",
    "estimate_exact_cost",
    "estimate_lanczos_cost",
    "exact_cost",
    "lanczos_cost",
]

#: Tangent columns per vector of one Lanczos step at full depth: ``Jv`` by double vjp and ``Jᵀu``
#: (measured: 2.7 on a CIFAR ResNet-20 on CPU).
SLQ_PASSES = 3.0


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
    call_s: float = 0.0,
) -> ExactCost:
    """The exact tier's cost model (module docstring) for given sizes and measured speeds.

    ``svd=True`` (``svdvals`` of every ``J_l``) counts a bidiagonalization of twice the Gram's
    multiply-adds plus an ``r³`` solve per tap. ``call_s`` is paid once per 256 columns.

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
        tangents_s=n_examples * columns * column_s
        + math.ceil(n_examples * columns / _TARGET_COLUMNS) * call_s,
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
    step = 2 * column.call_s + SLQ_PASSES * n_probes * column.seconds
    slq = {
        i: n_examples * min(steps, d, n_in) * f * step
        for i, (d, f) in enumerate(zip(dims, column.fractions, strict=True))
    }
    moments = n_examples * (column.call_s + n_probes * column.seconds)
    return LanczosCost(moments_s=moments, slq_s=slq)


def estimate_exact_cost(
    prep: Prepared, *, budget: float | None = None, timer: Timer = time.perf_counter
) -> ExactCost:
    """:func:`exact_cost` of a prepared probe, its tangent pass timed on the probe copy
    (:func:`~isokit.probe.calibration.column_time`, kept in :attr:`ExactCost.column`).

    One timing is enough far from ``budget``; within a factor 3 of it, two more are taken and the
    fastest is kept, so that one stall on a shared machine does not decide the tier.

    Example:
        >>> import torch
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
            call_s=column.call_s,
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
        >>> import torch
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
