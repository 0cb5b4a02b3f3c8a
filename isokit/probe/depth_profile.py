"""Jacobian spectra across depth: :func:`profile`.

``profile(model, inputs)`` measures, for every example ``x_b`` of the batch and every tap ``l``,
the spectrum of ``J_l = ∂h_l/∂x`` (``docs/probes.md §1``), on a float64 eval-mode copy of the
model with clean global flags (:mod:`isokit.probe.hygiene`), set up once by
:func:`isokit.probe.prepare.prepare`. The input is depth 0; taps are depths ``1..L``.

Methods:

- ``"exact"`` (:mod:`isokit.probe.exact`, memory plan in :mod:`isokit.probe.plan`): one
  forward-mode sweep for all taps with streamed Grams (or the chained sweep), ``eigvalsh`` of the
  ``r×r`` Gram with an ``svdvals`` fallback.
- ``"lanczos"`` (matrix-free, :mod:`isokit.probe.matrix_free` on top of
  :mod:`isokit.probe.moments`, :mod:`isokit.probe.krylov` and :mod:`isokit.probe.quadrature`):
  unbiased ``m1..m3`` with jackknife standard errors at every tap from ``n_probes`` Rademacher
  tangents (one ``vmap``-ped ``jvp`` for all taps), plus stochastic Lanczos quadrature (density,
  node statistics) and Ritz bounds on ``σ_max``/``σ_min`` at the ``slq_taps``. The operator is the
  ``r``-side Gram: ``A v = Jᵀ(J v)`` when ``n_in ≤ D``, else ``B u = J(Jᵀ u)``, both from batched
  ``jvp``/``vjp``.
- ``"auto"`` (``docs/probes.md §3.7``): exact when its estimated time fits ``max_seconds``
  (default 20 s; :mod:`isokit.probe.timing`: tangent pass, Grams and ``eigvalsh``, timed on the
  model and the device) and its memory estimate fits ``max_memory`` in one sweep (default: half
  the free RAM, or 80 % of the free GPU memory), else lanczos at every tap.
  ``meta["method_reason"]`` says why; when the time decides, ``meta["exact_estimate_s"]`` holds
  the estimate. Under a time budget SLQ runs at those of the default SLQ taps that fit it with
  the moments (cheapest first; an explicit ``slq_taps`` is kept). ``max_seconds=None`` chooses by
  memory alone; ``"exact"`` is never switched.

``with_signal`` and ``with_blocks`` run :func:`~isokit.probe.signal` and
:func:`~isokit.probe.block_profile` on the same prepared copy, into ``Profile.signal`` and
``Profile.blocks``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from isokit.probe.checks import boolean, check_meta
from isokit.probe.exact import ProbeMemoryError, exact_spectra, to_spectra
from isokit.probe.forward_signal import measure_signal
from isokit.probe.local import measure_blocks
from isokit.probe.matrix_free import lanczos_taps, resolve_slq_taps
from isokit.probe.options import ProbeOptions, resolve_options
from isokit.probe.prepare import Prepared, prepare
from isokit.probe.result import Profile
from isokit.probe.spectrum import TapSpectrum
from isokit.probe.timing import ExactCost, estimate_exact_cost, estimate_lanczos_cost

__all__ = ["profile"]


def profile(
    model: nn.Module,
    inputs: Tensor,
    options: ProbeOptions | None = None,
    *,
    generator: torch.Generator | None = None,
    meta: dict[str, Any] | None = None,
    with_signal: bool = False,
    with_blocks: bool = False,
    **overrides: Any,
) -> Profile:
    """Spectra of ``J_l = ∂h_l/∂x`` at every tap for every example of ``inputs`` (module doc).

    With ``start="name"`` (an option), ``J_l = ∂h_l/∂h_start`` for the taps after that module,
    at the activations the batch produces (``docs/probes.md §3.6``).

    Args:
        model: any ``nn.Module``; it is never modified (a float64 eval copy is probed).
        inputs: a finite floating batch ``(B, ...)``; each example is probed separately. With
            ``start``, also token ids, a tuple of positional or a dict of keyword inputs
            (``docs/probes.md §3.6``).
        options: a :class:`~isokit.probe.ProbeOptions` (taps, method, dtype, memory budget,
            probes, seed, ...); default ``ProbeOptions()``.
        generator: an explicit ``torch.Generator`` on the model's device for the matrix-free
            probes (its ``initial_seed()`` replaces ``options.seed`` and is recorded).
        meta: extra metadata, e.g. ``{"scheme": "idinit"}``; copied into ``Profile.meta``.
        with_signal: also compute :func:`~isokit.probe.signal` into ``Profile.signal``.
        with_blocks: also compute :func:`~isokit.probe.block_profile` into ``Profile.blocks``.
        **overrides: fields of :class:`~isokit.probe.ProbeOptions` (``method="exact"``) applied
            on top of ``options``.

    Raises:
        ProbeOptionError: a bad option (also an unknown keyword).
        ProbeMemoryError: ``method="exact"`` does not fit ``max_memory``.
        ValueError: inputs that do not fit the model, or non-finite weights or activations.

    Example:
        >>> import torch, isokit
        >>> from isokit.models import MLP
        >>> model = isokit.init.apply(MLP(8, 8, depth=3, activation="tanh"), "orthogonal", seed=0)
        >>> prof = isokit.probe.profile(model, torch.randn(2, 8), method="exact")
        >>> prof.meta["method"], prof.taps[0].singular_values.shape
        ('exact', (2, 8))
    """
    with_signal = boolean("with_signal", with_signal)
    with_blocks = boolean("with_blocks", with_blocks)
    meta = check_meta("meta", meta)
    opts = resolve_options(options, overrides)
    with prepare(model, inputs, opts, generator=generator) as prep:
        # A bad slq_taps is refused whichever tier `auto` picks, not only when it is Lanczos.
        resolve_slq_taps(opts.slq_taps, prep.names)
        taps, method, reason, extra = _measure(prep, generator)
        prof = Profile(
            taps=taps,
            meta=prep.meta(method=method, reason=reason, seed=prep.seed, meta=meta, extra=extra),
        )
        if with_signal:
            prof.signal = measure_signal(prep)
        if with_blocks:
            prof.blocks = measure_blocks(prep)
    return prof


def _measure(
    prep: Prepared, generator: torch.Generator | None
) -> tuple[list[TapSpectrum], str, str, dict[str, Any]]:
    """(taps, method used, why, metadata of the tier) for ``options.method``."""
    method = prep.options.method
    if method == "lanczos":
        taps, extra = _lanczos_tier(prep, generator)
        return taps, "lanczos", "requested", extra
    budget = prep.options.max_seconds
    cost = None
    if method == "auto" and budget is not None:
        cost = estimate_exact_cost(prep, budget=budget)
        if cost.seconds > budget:
            slq_idx, slq_reason = _slq_within(prep, cost, budget)
            taps, extra = _lanczos_tier(prep, generator, slq_idx)
            # Only here, where it decides: a timing in every Profile would make reruns of the
            # same probe differ in their metadata.
            extra["exact_estimate_s"] = cost.seconds
            reason = f"auto: exact would take {cost.describe()}, over max_seconds={budget:g} s"
            return taps, "lanczos", reason + slq_reason, extra
    try:
        taps, extra, plan_reason = _exact_tier(prep)
    except ProbeMemoryError as err:
        if method == "exact":
            raise
        slq_idx, slq_reason = (None, "") if cost is None else _slq_within(prep, cost, budget)
        taps, extra = _lanczos_tier(prep, generator, slq_idx)
        return taps, "lanczos", f"auto: exact does not fit ({err}){slq_reason}", extra
    if method == "exact":
        prefix = "requested; "
    else:
        prefix = "auto: " if budget is None else f"auto: fits max_seconds={budget:g} s; "
    return taps, "exact", prefix + plan_reason, extra


def _exact_tier(prep: Prepared) -> tuple[list[TapSpectrum], dict[str, Any], str]:
    opts = prep.options
    ex = exact_spectra(
        prep.copy,
        prep.x,
        prep.names,
        chunk_size=opts.chunk_size,
        max_memory=opts.max_memory,
        svd=opts.svd,
        progress=opts.progress,
        allow_groups=(opts.method == "exact"),
        example_chunk=opts.example_chunk,
    )
    taps = to_spectra(ex.taps, dtype=opts.dtype, band=opts.band)
    for t in taps:
        t.warnings.extend(ex.warnings)
    extra = {
        "exact": {
            "strategy": ex.plan.strategy,
            "chunk_size": ex.plan.chunk_size,
            "example_chunk": ex.plan.example_chunk,
            "n_sweeps": ex.n_sweeps,
            "memory_estimate": ex.plan.bytes,
            "max_memory": ex.plan.max_memory,
            "reverse_taps": [prep.names[i] for i in ex.plan.reverse],
        }
    }
    return taps, extra, ex.plan.reason


def _slq_within(prep: Prepared, cost: ExactCost, budget: float) -> tuple[list[int] | None, str]:
    """The default SLQ taps that fit ``budget`` with the moments, and what was left out.

    An explicit ``slq_taps`` is kept as given (``None``, and no word in the reason).
    """
    if prep.options.slq_taps is not None or cost.column is None:
        return None, ""
    default = resolve_slq_taps(None, prep.names)
    lanczos = estimate_lanczos_cost(prep, cost.column)
    kept = lanczos.within(default, budget)
    if len(kept) == len(default):
        return kept, ""
    dropped = sum(lanczos.slq_s[i] for i in default if i not in kept)
    return kept, (
        f"; SLQ at {len(kept)} of the {len(default)} default SLQ taps, the others would add "
        f"~{dropped:.3g} s (set slq_taps to choose them)"
    )


def _lanczos_tier(
    prep: Prepared, generator: torch.Generator | None, slq_idx: list[int] | None = None
) -> tuple[list[TapSpectrum], dict[str, Any]]:
    opts = prep.options
    if generator is None:
        generator = torch.Generator(device=prep.device).manual_seed(prep.seed)
    if slq_idx is None:
        slq_idx = resolve_slq_taps(opts.slq_taps, prep.names)
    taps = lanczos_taps(
        prep.copy,
        prep.x,
        prep.names,
        prep.mods,
        prep.dims,
        prep.shapes,
        n_probes=opts.n_probes,
        steps=opts.lanczos_steps,
        slq_idx=slq_idx,
        generator=generator,
        band=opts.band,
        progress=opts.progress,
    )
    extra = {
        "lanczos": {
            "n_probes": opts.n_probes,
            "steps": opts.lanczos_steps,
            "slq_taps": [prep.names[i] for i in slq_idx],
        }
    }
    return taps, extra
