"""Exact per-example Jacobian spectra at every tap (``docs/probes.md §3``).

**Forward mode, one sweep for all taps** (§3.1). ``g(x) = (h_1, …, h_L)`` is captured with hooks
(:mod:`isokit.probe.taps`). For each chunk ``S`` of ``c`` input basis vectors,
``vmap(v ↦ jvp(g, (x,), (v,))[1])(E_S)`` yields the columns ``J_l[:, S]`` of every tap at once
(``vmap``-ped over the examples as well). A streaming consumer (§3.3) keeps, per tap,

- ``D_l ≤ n_in``: the output-side Gram, ``B_l += J_l[:, S] J_l[:, S]ᵀ`` (``D_l²`` floats), one
  batched ``baddbmm`` per chunk;
- ``D_l > n_in``: the columns ``J_l`` (``D_l·n_in``), and forms ``A_l = J_lᵀJ_l`` at the end,

so no more than one chunk of columns per tap is in flight. Accumulation is in float64 whatever the
model dtype; the ``r × r`` Gram is symmetrized, ``eigvalsh``-ed in float64, negative round-off is
clamped to 0 and ``s = √λ`` (descending).

**Chained sweep** (the block-chained variant of §3.1). When the taps form a chain (every tap's
output depends on the input only through the previous tap's output, as in MLPs, plain CNNs, ResNets
and Transformer stacks whose taps are the blocks), ``J_l = ∂h_l/∂h_{l−1} · J_{l−1}``: the columns of
``J_l`` are obtained by pushing the columns of ``J_{l−1}`` through the segment between the two taps
(a forward pass whose hook replaces ``h_{l−1}`` by the ``jvp`` input and stops after tap ``l``).
Only two taps' columns are held at a time, so the peak storage is ``max_l (D_{l−1}+D_l)·n_in``
instead of ``Σ_l D_l·min(D_l, n_in)``, at the price of re-running the primal prefix (one example)
per segment. The chain property is verified numerically before use: two random tangents are pushed
through the full model and through the chain, and must agree to ``1e-8`` (float64).
:func:`plan_exact` picks the joint sweep when it is small, else the chained sweep when the chain
check passes, else several joint sweeps over groups of taps (each stopping after its last tap).

**Segments** (the same chain rule, in longer steps). Once a chunk covers the whole input, a
joint sweep runs one example at a time: it holds every tap's columns of the examples in flight,
and each ``vmap``-ped ``jvp`` call pays its per-operation dispatch again for every example (on a
deep MLP this was a fifth of the probe). With several examples, :func:`plan_segments` cuts the
taps into segments of ``g`` consecutive taps and runs all examples (``bc`` of them) through each
segment in one call, ``g·bc`` no larger than the joint sweep's ``L·1``, so that its estimate
stays within the joint sweep's; each segment starts from the columns of the tap before it. It is
used only when :func:`~isokit.probe.sweeps.check_segments` finds, at the first example, that the
taps after each boundary depend on the input only through it (one primal forward per boundary
from a perturbed input, with the boundary's output held at its value), and never when
``example_chunk`` or a ``strategy`` is given.

**Reverse mode** (§3.2) serves the trailing taps whose ``D_l`` is much smaller than ``n_in``
(``4·D_l ≤ n_in``, e.g. logits): one ``vjp`` of the function returning those taps, then ``vmap``
of the returned ``vjp_fn`` over a chunked cotangent basis injected at one tap (zeros elsewhere).

**Gram versus ``svdvals``** (§3.4). If ``λ_min/λ_max < 1e-12`` for an example, the Gram cannot
resolve its small singular values: the tap is flagged ``gram_unreliable`` for that example and its
spectrum is recomputed with ``torch.linalg.svdvals`` of ``J`` (re-sweeping the tap when only its
Gram was kept). ``svd=True`` uses ``svdvals`` throughout. On CUDA, ``driver="gesvd"``.

The memory plan lives in :mod:`isokit.probe.plan`, the sweeps in :mod:`isokit.probe.sweeps`, the
Grams in :mod:`isokit.probe.grams` and the results (:class:`ExactTap`, :class:`ExactResult`,
:func:`to_spectra`) in :mod:`isokit.probe.exact_result`; this module holds the driver
:func:`exact_spectra` and re-exports the public names of the others.

All functions here expect the hygienic probe copy of the model (:mod:`isokit.probe.hygiene`) and
inputs already on its device and in its dtype; :func:`tap_grams` is the self-contained entry
point used by the tests to compare the Grams with a dense ``jacrev`` reference.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from isokit.probe.exact_result import ExactResult, ExactTap, _Collector, to_spectra
from isokit.probe.grams import _F64, GRAM_RTOL
from isokit.probe.grams import _eigvalsh as _eigvalsh  # re-exported (benchmarks)
from isokit.probe.memory import available_memory, default_max_memory, estimate_exact_memory
from isokit.probe.plan import ExactPlan, ProbeMemoryError, plan_exact, plan_segments
from isokit.probe.start import StartView
from isokit.probe.sweeps import (
    _chain_ok,
    _Geometry,
    _geometry,
    _run_chained,
    _run_group,
    _run_reverse,
    check_segments,
)

__all__ = [
    "GRAM_RTOL",
    "ExactPlan",
    "ExactResult",
    "ExactTap",
    "ProbeMemoryError",
    "available_memory",
    "default_max_memory",
    "estimate_exact_memory",
    "exact_spectra",
    "plan_exact",
    "tap_grams",
    "to_spectra",
]

_SLOW_PATH = re.compile(r"performance drop|batching rule|fall(ing)? ?back", re.IGNORECASE)


@contextlib.contextmanager
def _slow_path_warnings() -> Iterator[list[str]]:
    """Collect vmap slow-path warnings (sorted, distinct); re-emit every other warning."""
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as wlist:
        warnings.filterwarnings("always", message=r".*(performance drop|batching rule)")
        yield caught
    for w in wlist:
        text = str(w.message)
        if _SLOW_PATH.search(text):
            caught.append(text)
        else:  # not ours to swallow: re-emit
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    caught[:] = sorted(set(caught))


def _progress_bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="exact probe", unit="col")


# --------------------------------------------------------------------------------------- driver


def exact_spectra(
    model: nn.Module,
    inputs: Tensor,
    tap_names: Sequence[str],
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    svd: bool = False,
    keep_grams: bool = False,
    strategy: str = "auto",
    mode: str = "auto",
    progress: bool = False,
    allow_groups: bool = True,
    example_chunk: int | None = None,
    labels: Sequence[str] | None = None,
) -> ExactResult:
    """Exact spectra of ``J_l = ∂h_l/∂x`` for every example of ``inputs`` and every tap.

    Args:
        model: the probe copy (eval mode, probe dtype, under
            :func:`~isokit.probe.hygiene.global_flags`).
        inputs: ``[B, *in_shape]`` on the model's device, in the model's dtype.
        tap_names: resolved tap names, in depth order.
        chunk_size: input basis vectors per ``jvp`` batch (default: the largest that fits).
        max_memory: budget in bytes (default :func:`default_max_memory`).
        svd: use ``svdvals`` of ``J`` for every tap instead of the Gram.
        keep_grams: return each tap's ``r × r`` Gram (float64, CPU) for verification.
        strategy: ``"auto"``, ``"joint"``, ``"chained"`` or ``"groups"`` (module docstring).
        mode: ``"auto"`` (reverse for trailing taps with ``4·D ≤ n_in``), ``"forward"`` or
            ``"reverse"``.
        progress: show a tqdm bar over input basis chunks.
        allow_groups: allow several sweeps over groups of taps when one sweep does not fit
            (otherwise :class:`ProbeMemoryError`).
        example_chunk: examples per sweep (default: see :func:`plan_exact`). More examples per
            ``vmap`` amortize the per-operation dispatch (faster on small layers) but hold their
            tangents and Grams at the same time.
        labels: the taps' names in the results and in error messages (default ``tap_names``).

    A :class:`~isokit.probe.start.StartView` of several examples is probed one example at a
    time (each example's function holds its own ``x_b``, ``docs/probes.md §3.6``), with the same
    options and budget per example; the plan reported is the first example's.

    Raises:
        ValueError: the Jacobian of some tap holds NaN or inf (named).
    """
    if isinstance(model, StartView) and model.n_examples > 1:
        return ExactResult.concat(
            [
                exact_spectra(
                    model.at(b),
                    inputs[b : b + 1],
                    tap_names,
                    chunk_size=chunk_size,
                    max_memory=max_memory,
                    svd=svd,
                    keep_grams=keep_grams,
                    strategy=strategy,
                    mode=mode,
                    progress=progress,
                    allow_groups=allow_groups,
                    labels=labels,
                )
                for b in range(model.n_examples)
            ]
        )
    B = inputs.shape[0]
    geo = _geometry(model, inputs, tap_names, labels)
    if max_memory is None:
        max_memory = default_max_memory(inputs.device)
    chain_ok = _chain_ok(model, inputs, geo, strategy=strategy, mode=mode, svd=svd)
    plan = plan_exact(
        geo.n_in,
        geo.dims,
        n_examples=B,
        max_memory=max_memory,
        chunk_size=chunk_size,
        svd=svd,
        strategy=strategy,
        mode=mode,
        chain_ok=chain_ok,
        param_bytes=geo.param_bytes,
        allow_groups=allow_groups,
        example_chunk_size=example_chunk,
    )
    if strategy == "auto" and example_chunk is None:
        plan, chain_ok = _segmented(model, inputs, geo, plan, svd=svd, chain_ok=chain_ok)
    out = _Collector(len(geo.mods), keep_grams)
    sweeps = 1 if plan.strategy == "chained" else len(plan.groups)
    bar = _progress_bar(progress, geo.n_in * sweeps * -(-B // plan.example_chunk))
    try:
        with _slow_path_warnings() as caught:
            for b0 in range(0, B, plan.example_chunk):
                X = inputs[b0 : b0 + plan.example_chunk]
                if plan.strategy == "chained":
                    _run_chained(model, geo, plan, X, svd, out, bar)
                else:
                    for group in plan.groups:
                        _run_group(model, geo, plan, group, X, svd, out, bar)
                if plan.reverse:
                    _run_reverse(model, geo, plan, X, svd, out)
    finally:
        if bar is not None:
            bar.close()
    return ExactResult(
        taps=out.taps(geo, plan),
        plan=plan,
        n_sweeps=sweeps,
        chain_checked=chain_ok,
        warnings=caught,
    )


def _segmented(
    model: nn.Module, inputs: Tensor, geo: _Geometry, plan: ExactPlan, *, svd: bool, chain_ok
) -> tuple[ExactPlan, bool | None]:
    """``plan``, or its chained form with more examples per ``vmap`` where the segment
    boundaries pass :func:`~isokit.probe.sweeps.check_segments` (:func:`plan_segments`)."""
    seg = plan_segments(
        plan, geo.n_in, geo.dims, n_examples=inputs.shape[0], svd=svd, param_bytes=geo.param_bytes
    )
    if seg is None or not check_segments(model, geo.mods, seg.groups, inputs[0], geo.primal):
        return plan, chain_ok
    return seg, True


def tap_grams(
    model: nn.Module,
    inputs: Tensor,
    taps: Any = "auto",
    *,
    dtype: torch.dtype = _F64,
    **kwargs: Any,
) -> ExactResult:
    """Self-contained exact probe that keeps the Grams (for tests and debugging).

    Prepares the model like every probe (:func:`isokit.probe.prepare.prepare`) and returns
    :func:`exact_spectra`'s result with ``gram`` set on every tap (``B = JJᵀ`` if
    ``side == "output"``, else ``JᵀJ``).
    """
    from isokit.probe.options import ProbeOptions
    from isokit.probe.prepare import prepare

    with prepare(model, inputs, ProbeOptions(taps=taps, dtype=dtype)) as prep:
        return exact_spectra(prep.copy, prep.x, prep.names, keep_grams=True, **kwargs)
