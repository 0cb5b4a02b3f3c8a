"""Jacobian spectra across depth: :func:`profile`, :func:`block_profile` and :func:`signal`.

``profile(model, inputs)`` measures, for every example ``x_b`` of the batch and every tap ``l``,
the spectrum of ``J_l = ∂h_l/∂x`` (``probes.md`` §1), on a float64 eval-mode copy of the model with
clean global flags (:mod:`isokit.probe.hygiene`). The input is depth 0; taps are depths ``1..L``.

Methods:

- ``"exact"`` (:mod:`isokit.probe.exact`, memory plan in :mod:`isokit.probe.plan`): one
  forward-mode sweep for all taps with streamed Grams (or the chained sweep), ``eigvalsh`` of the
  ``r×r`` Gram with an ``svdvals`` fallback.
- ``"lanczos"`` (matrix-free, :mod:`isokit.probe.matrix_free` on top of
  :mod:`isokit.probe.moments` and :mod:`isokit.probe.lanczos`):
  unbiased ``m1..m3`` with jackknife standard errors at every tap from ``n_probes`` Rademacher
  tangents (one ``vmap``-ped ``jvp`` for all taps), plus stochastic Lanczos quadrature (density,
  node statistics) and Ritz bounds on ``σ_max``/``σ_min`` at the ``slq_taps``. The operator is the
  ``r``-side Gram: ``A v = Jᵀ(J v)`` when ``n_in ≤ D``, else ``B u = J(Jᵀ u)``, both from batched
  ``jvp``/``vjp``.
- ``"auto"``: exact when its memory estimate fits ``max_memory`` in one sweep (default: half the
  free RAM, or 80 % of the free GPU memory), else lanczos. ``meta["method_reason"]`` says why.

This module holds :func:`profile` itself; :func:`block_profile` lives in :mod:`isokit.probe.local`,
:func:`signal` in :mod:`isokit.probe.forward_signal` and the shared input checks, dry run and
metadata in :mod:`isokit.probe.common`; :func:`block_profile`, :func:`signal` and
:func:`default_slq_taps` (from :mod:`isokit.probe.matrix_free`) are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from isokit.probe.common import _check_inputs, _dry_run, _exact_tap, _meta
from isokit.probe.exact import ProbeMemoryError, exact_spectra
from isokit.probe.forward_signal import _mean_cosine as _mean_cosine  # re-exported (tests)
from isokit.probe.forward_signal import signal
from isokit.probe.hygiene import model_device, probe_context
from isokit.probe.local import block_profile
from isokit.probe.matrix_free import _lanczos_taps, _resolve_slq, default_slq_taps
from isokit.probe.result import Profile, TapSpectrum
from isokit.probe.taps import TapSpec, resolve_taps

__all__ = ["block_profile", "default_slq_taps", "profile", "signal"]


_METHODS = ("auto", "exact", "lanczos")


def profile(
    model: nn.Module,
    inputs: Tensor,
    *,
    taps: TapSpec = "auto",
    method: str = "auto",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    example_chunk: int | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    n_probes: int = 16,
    lanczos_steps: int = 64,
    slq_taps: Sequence[str | int] | str | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    meta: dict[str, Any] | None = None,
    svd: bool = False,
    band: float = 0.1,
    with_signal: bool = False,
    with_blocks: bool = False,
) -> Profile:
    """Spectra of ``J_l = ∂h_l/∂x`` at every tap for every example of ``inputs`` (module doc).

    Args:
        model: any ``nn.Module``; it is never modified (a float64 eval copy is probed).
        inputs: a floating batch ``(B, ...)``; each example is probed separately.
        taps: ``"auto"``, a list of module names, or a predicate ``(name, module) -> bool``.
        method: ``"auto"``, ``"exact"`` or ``"lanczos"``.
        dtype: probe dtype (float64 by default; the model copy and inputs are converted).
        chunk_size: input basis vectors per exact ``jvp`` batch (default: chosen from memory).
        example_chunk: examples per exact sweep (default 1 unless the chunks are tiny; larger
            is faster on small layers and holds more memory).
        max_memory: byte budget of the exact tier (default: half the free RAM / 80 % of the GPU's
            free memory); an exact probe over budget raises ``MemoryError``
            (:class:`~isokit.probe.exact.ProbeMemoryError`).
        progress: tqdm progress bars.
        n_probes: Rademacher probes per example for the moments and for SLQ (≥ 4).
        lanczos_steps: Lanczos steps ``m`` per SLQ probe.
        slq_taps: taps (names or 1-based depths, ``"all"``, ``"none"``) that get SLQ densities
            and Ritz bounds; default log-spaced depths plus the last.
        seed: seed of the probe generator (ignored if ``generator`` is given; recorded).
        generator: an explicit ``torch.Generator`` on the model's device.
        meta: extra metadata, e.g. ``{"scheme": "idinit"}``; copied into ``Profile.meta``.
        svd: exact tier: ``svdvals`` of ``J`` for every tap instead of the Gram.
        band: half-width of the ``near`` band (``[1/(1+band), 1+band]``).
        with_signal: also compute :func:`signal` into ``Profile.signal``.
        with_blocks: also compute :func:`block_profile` into ``Profile.blocks``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    _check_inputs(inputs)
    if n_probes < 4:
        raise ValueError(f"n_probes must be at least 4 (the third moment needs it), got {n_probes}")
    names = resolve_taps(model, taps)
    if generator is not None:
        seed = int(generator.initial_seed())
    with probe_context(model, dtype=dtype) as m:
        device = model_device(m)
        x = inputs.detach().to(device=device, dtype=dtype)
        mods = [m.get_submodule(n) for n in names]
        dry = _dry_run(m, mods, x, model)
        dims = [h.numel() for h in dry.outputs]
        extra: dict[str, Any] = {}
        result_taps: list[TapSpectrum]
        chosen, reason = method, "requested"
        ex = None
        if method in ("auto", "exact"):
            try:
                ex = exact_spectra(
                    m,
                    x,
                    names,
                    chunk_size=chunk_size,
                    max_memory=max_memory,
                    svd=svd,
                    progress=progress,
                    allow_groups=(method == "exact"),
                    example_chunk=example_chunk,
                )
                chosen = "exact"
                reason = ("requested; " if method == "exact" else "auto: ") + ex.plan.reason
            except ProbeMemoryError as err:
                if method == "exact":
                    raise
                chosen, reason = "lanczos", f"auto: exact does not fit ({err})"
        if ex is not None:
            result_taps = [
                _exact_tap(t, i + 1, dtype=dtype, band=band) for i, t in enumerate(ex.taps)
            ]
            for t in result_taps:
                t.warnings.extend(ex.warnings)
            extra["exact"] = {
                "strategy": ex.plan.strategy,
                "chunk_size": ex.plan.chunk_size,
                "example_chunk": ex.plan.example_chunk,
                "n_sweeps": ex.n_sweeps,
                "memory_estimate": ex.plan.bytes,
                "max_memory": ex.plan.max_memory,
                "reverse_taps": [names[i] for i in ex.plan.reverse],
            }
        else:
            if generator is None:
                generator = torch.Generator(device=device).manual_seed(seed)
            slq_idx = _resolve_slq(slq_taps, names)
            result_taps = _lanczos_taps(
                m,
                x,
                names,
                mods,
                dims,
                [tuple(h.shape) for h in dry.outputs],
                n_probes=n_probes,
                steps=lanczos_steps,
                slq_idx=slq_idx,
                generator=generator,
                band=band,
                progress=progress,
            )
            extra["lanczos"] = {
                "n_probes": n_probes,
                "steps": lanczos_steps,
                "slq_taps": [names[i] for i in slq_idx],
            }
    prof = Profile(
        taps=result_taps,
        meta=_meta(
            model,
            inputs,
            names,
            method=chosen,
            reason=reason,
            dtype=dtype,
            device=device,
            seed=seed,
            meta=meta,
            extra=extra,
        ),
    )
    if with_signal:
        prof.signal = signal(model, inputs, taps=names, seed=seed, dtype=dtype)
    if with_blocks:
        prof.blocks = block_profile(
            model,
            inputs,
            taps=names,
            dtype=dtype,
            chunk_size=chunk_size,
            max_memory=max_memory,
            band=band,
            svd=svd,
        ).taps
    return prof
