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

The memory plan lives in :mod:`isokit.probe.plan`, the sweeps and Gram accumulators in
:mod:`isokit.probe.sweeps`; this module holds the driver :func:`exact_spectra`, its results
(:class:`ExactTap`, :class:`ExactResult`) and re-exports the public names of both.

All functions here expect the hygienic probe copy of the model (:mod:`isokit.probe.hygiene`) and
inputs already on its device and in its dtype; :func:`tap_grams` is the self-contained entry
point used by the tests to compare the Grams with a dense ``jacrev`` reference.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from isokit.probe.grams import _F64, GRAM_RTOL, _symmetric
from isokit.probe.grams import _eigvalsh as _eigvalsh  # re-exported (benchmarks)
from isokit.probe.memory import available_memory, default_max_memory, estimate_exact_memory
from isokit.probe.plan import ExactPlan, ProbeMemoryError, plan_exact, plan_segments
from isokit.probe.spectrum import TapSpectrum
from isokit.probe.start import StartView
from isokit.probe.statistics import degenerate_mask, dtype_eps, saturated_mask, stats
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


# --------------------------------------------------------------------------------------- results


@dataclass(kw_only=True, eq=False)
class ExactTap:
    """Exact spectra of one tap for every example.

    Attributes:
        index: position in the resolved tap list (depth − 1).
        name: module name.
        shape: per-example tap output shape (batch axis of size 1 included, as captured).
        D, n_in, r: output size, input size and ``min(D, n_in)``.
        side: ``"output"`` (Gram ``B = JJᵀ``, ``D ≤ n_in``) or ``"input"`` (``A = JᵀJ``).
        mode: ``"forward"`` or ``"reverse"``.
        singular_values: ``[B, r]`` float64 on the CPU, descending.
        gram_unreliable: ``[B]`` bool, ``λ_min/λ_max < 1e-12``: ``svdvals`` was used instead.
        svd_used: ``[B]`` bool, whether ``svdvals`` produced the values.
        gram: ``[B, r, r]`` float64 Grams on the CPU if requested (``keep_grams=True``).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    D: int
    n_in: int
    r: int
    side: str
    mode: str
    singular_values: Tensor
    gram_unreliable: Tensor
    svd_used: Tensor
    gram: Tensor | None = None

    def to_spectrum(
        self,
        depth: int,
        *,
        dtype: torch.dtype,
        band: float,
        method_prefix: str = "exact",
        st: dict[str, np.ndarray] | None = None,
    ) -> TapSpectrum:
        """The :class:`TapSpectrum` of this tap: statistics with the probe dtype's zero rule
        (``st``: those statistics, computed already, as :func:`to_spectra` does)."""
        s = self.singular_values.numpy().astype(np.float64, copy=False)
        eps = dtype_eps(dtype)
        if st is None:
            st = stats(
                s, n_rows=self.D, n_cols=self.n_in, band=band, eps=eps, degenerate_var=math.inf
            )
        lam = s * s
        return TapSpectrum(
            name=self.name,
            depth=depth,
            D=self.D,
            n_in=self.n_in,
            r=self.r,
            shape=tuple(self.shape),
            method=f"{method_prefix}-{self.mode}",
            side=self.side,
            singular_values=s,
            stats=st,
            traces={"t1": lam.sum(1), "t2": (lam**2).sum(1), "t3": (lam**3).sum(1)},
            degenerate=np.asarray(degenerate_mask(s), dtype=bool).reshape(-1),
            saturated=np.asarray(saturated_mask(s, eps=eps), dtype=bool).reshape(-1),
            gram_unreliable=self.gram_unreliable.numpy().astype(bool),
        )


def to_spectra(
    taps: Sequence[ExactTap], *, dtype: torch.dtype, band: float, method_prefix: str = "exact"
) -> list[TapSpectrum]:
    """``[tap.to_spectrum(depth) for depth, tap in enumerate(taps, 1)]``, with the statistics of
    all taps of equal ``(D, n_in)`` in one batched :func:`~isokit.probe.statistics.stats` call
    (row by row the same values; a deep network's taps cost one call instead of one each).

    Example:
        >>> import torch
        >>> from isokit.models import MLP
        >>> res = tap_grams(MLP(4, 4, depth=3, activation="tanh"), torch.randn(2, 4))
        >>> kw = dict(dtype=torch.float64, band=0.1)
        >>> one = [t.to_spectrum(d, **kw) for d, t in enumerate(res.taps, 1)]
        >>> both = to_spectra(res.taps, **kw)
        >>> all((a.stats["gap"] == b.stats["gap"]).all() for a, b in zip(one, both))
        True
    """
    eps = dtype_eps(dtype)
    groups: dict[tuple[int, int], list[int]] = {}
    for k, tap in enumerate(taps):
        groups.setdefault((tap.D, tap.n_in), []).append(k)
    per_tap: list[dict[str, np.ndarray] | None] = [None] * len(taps)
    for (D, n_in), idx in groups.items():
        s = np.concatenate([taps[k].singular_values.numpy() for k in idx]).astype(np.float64)
        st = stats(s, n_rows=D, n_cols=n_in, band=band, eps=eps, degenerate_var=math.inf)
        ends = np.cumsum([taps[k].singular_values.shape[0] for k in idx])[:-1]
        parts = {name: np.split(v, ends) for name, v in st.items()}
        for j, k in enumerate(idx):
            per_tap[k] = {name: part[j] for name, part in parts.items()}
    return [
        tap.to_spectrum(d, dtype=dtype, band=band, method_prefix=method_prefix, st=per_tap[d - 1])
        for d, tap in enumerate(taps, 1)
    ]


@dataclass(kw_only=True, eq=False)
class ExactResult:
    """All taps of one exact probe plus how it ran."""

    taps: list[ExactTap]
    plan: ExactPlan
    n_sweeps: int
    chain_checked: bool | None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def concat(cls, parts: Sequence[ExactResult]) -> ExactResult:
        """The results of several example chunks of one probe as one (the first one's plan)."""
        taps = []
        for i, first in enumerate(parts[0].taps):
            per = [p.taps[i] for p in parts]
            grams = [t.gram for t in per]
            taps.append(
                replace(
                    first,
                    singular_values=torch.cat([t.singular_values for t in per]),
                    gram_unreliable=torch.cat([t.gram_unreliable for t in per]),
                    svd_used=torch.cat([t.svd_used for t in per]),
                    gram=None if grams[0] is None else torch.cat(grams),
                )
            )
        return cls(
            taps=taps,
            plan=parts[0].plan,
            n_sweeps=parts[0].n_sweeps,
            chain_checked=parts[0].chain_checked,
            warnings=sorted({w for p in parts for w in p.warnings}),
        )


class _Collector:
    """Per-tap results over the example chunks, concatenated into :class:`ExactTap` at the end."""

    def __init__(self, n: int, keep_grams: bool) -> None:
        self.keep_grams = keep_grams
        self.parts: list[list[tuple[Tensor, ...]]] = [[] for _ in range(n)]

    def record(self, i: int, s: Tensor, bad: Tensor, used: Tensor, G: Tensor | None) -> None:
        gram = _symmetric(G).cpu() if self.keep_grams else None
        self.parts[i].append((s.cpu(), bad.cpu(), used.cpu(), gram))

    def taps(self, geo: _Geometry, plan: ExactPlan) -> list[ExactTap]:
        out = []
        for i, name in enumerate(geo.names):
            s, bad, used, grams = zip(*self.parts[i], strict=True)
            D = geo.dims[i]
            out.append(
                ExactTap(
                    index=i,
                    name=name,
                    shape=geo.shapes[i],
                    D=D,
                    n_in=geo.n_in,
                    r=min(D, geo.n_in),
                    side="output" if geo.n_in >= D else "input",
                    mode="reverse" if i in plan.reverse else "forward",
                    singular_values=torch.cat(s),
                    gram_unreliable=torch.cat(bad),
                    svd_used=torch.cat(used),
                    gram=torch.cat(grams) if self.keep_grams else None,
                )
            )
        return out


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
