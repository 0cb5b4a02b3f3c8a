"""Exact per-example Jacobian spectra at every tap (``probes.md`` §3).

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

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from isokit.probe.plan import (
    JOINT_COMFORT_BYTES,
    ExactPlan,
    ProbeMemoryError,
    _reverse_split,
    available_memory,
    default_max_memory,
    estimate_exact_memory,
    plan_exact,
)
from isokit.probe.sweeps import (
    _F64,
    GRAM_RTOL,
    _basis,
    _from_gram,
    _gram_of,
    _joint_sweep,
    _primal_taps,
    _reverse_rows,
    _segment_push,
    _Slot,
    _svdvals,
    check_chain,
)
from isokit.probe.sweeps import (
    _eigvalsh as _eigvalsh,  # re-exported (benchmarks)
)
from isokit.probe.taps import TapError, resolve_taps, run_with_taps

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


@dataclass(kw_only=True, eq=False)
class ExactResult:
    """All taps of one exact probe plus how it ran."""

    taps: list[ExactTap]
    plan: ExactPlan
    n_sweeps: int
    chain_checked: bool | None
    warnings: list[str] = field(default_factory=list)


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
    """
    B = inputs.shape[0]
    in_shape = tuple(inputs.shape[1:])
    n_in = math.prod(in_shape)
    device = inputs.device
    mods = [model.get_submodule(n) for n in tap_names]
    dry = run_with_taps(model, mods, inputs[:1])
    shapes = [tuple(h.shape) for h in dry.outputs]
    dims = [h.numel() for h in dry.outputs]
    param_bytes = 8 * sum(p.numel() for p in model.parameters())
    if max_memory is None:
        max_memory = default_max_memory(device)

    chain_ok: bool | None = None
    fwd, _ = _reverse_split(n_in, dims, mode)
    if fwd and strategy in ("auto", "chained"):
        # The chain check is only worth running when the joint sweep is not small.
        fdims = [dims[i] for i in fwd]
        joint_min = estimate_exact_memory(
            n_in, fdims, chunk_size=min(n_in, 64), svd=svd, param_bytes=param_bytes
        )
        if strategy == "chained" or joint_min > JOINT_COMFORT_BYTES:
            chain_ok = check_chain(model, [mods[i] for i in fwd], inputs[0])
            if strategy == "chained" and not chain_ok:
                raise TapError(
                    "the taps do not form a chain (some connection skips over a tap boundary); "
                    "use strategy='joint' or 'auto'"
                )
    plan = plan_exact(
        n_in,
        dims,
        n_examples=B,
        max_memory=max_memory,
        chunk_size=chunk_size,
        svd=svd,
        strategy=strategy,
        mode=mode,
        chain_ok=chain_ok,
        param_bytes=param_bytes,
        allow_groups=allow_groups,
        example_chunk_size=example_chunk,
    )

    s_out: list[list[Tensor]] = [[] for _ in mods]
    bad_out: list[list[Tensor]] = [[] for _ in mods]
    svd_out: list[list[Tensor]] = [[] for _ in mods]
    gram_out: list[list[Tensor]] = [[] for _ in mods]
    n_sweeps = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = n_in * len(plan.groups) * -(-B // plan.example_chunk)
        bar = tqdm(total=total, desc="exact probe", unit="col")

    def record(i: int, s, bad, used, G) -> None:
        s_out[i].append(s.cpu())
        bad_out[i].append(bad.cpu())
        svd_out[i].append(used.cpu())
        if keep_grams:
            gram_out[i].append(G.cpu())
        del G

    caught: list[str] = []
    with warnings.catch_warnings(record=True) as wlist:
        warnings.filterwarnings("always", message=r".*(performance drop|batching rule)")
        for b0 in range(0, B, plan.example_chunk):
            X = inputs[b0 : b0 + plan.example_chunk]
            if plan.strategy == "chained":
                idx = plan.groups[0]
                cmods = [mods[i] for i in idx]
                H = _primal_taps(model, cmods, X)
                T_prev = None
                for k, i in enumerate(idx):
                    T = torch.empty(X.shape[0], n_in, dims[i], dtype=X.dtype, device=device)
                    for start in range(0, n_in, plan.chunk_size):
                        stop = min(n_in, start + plan.chunk_size)
                        if k == 0:
                            V = _basis(start, stop, n_in, in_shape, dtype=X.dtype, device=device)
                            V = V.unsqueeze(0).expand(X.shape[0], *V.shape)
                        else:
                            V = T_prev[:, start:stop]
                        T[:, start:stop] = _segment_push(
                            model, cmods, k, X, H[k - 1] if k else None, V
                        )
                        if bar is not None and k == len(idx) - 1:
                            bar.update(stop - start)
                    slot = _Slot.__new__(_Slot)
                    slot.D, slot.n_in, slot.keep_cols = dims[i], n_in, True
                    slot.cols, slot.gram = T.to(_F64), None
                    s, bad, used, G, _ = slot.finish(svd=svd)
                    record(i, s, bad, used, G)
                    del slot
                    T_prev = T
                n_sweeps = 1
            else:
                for group in plan.groups:
                    gmods = [mods[i] for i in group]
                    keep = [svd or dims[i] > n_in for i in group]

                    def done(slot: _Slot) -> tuple:
                        s, bad, used, G, again = slot.finish(svd=svd)
                        return s, bad, used, (G if keep_grams else None), again

                    finished = _joint_sweep(
                        model, gmods, X, plan.chunk_size, keep, bar, on_done=done
                    )
                    redo: list[int] = []
                    results = {}
                    for i, (s, bad, used, G, again) in zip(group, finished, strict=True):
                        results[i] = (s, bad, used, G)
                        if again:
                            redo.append(i)
                    del finished
                    if redo:
                        # Re-sweep the unreliable taps keeping their columns (§3.4).
                        rmods = [mods[i] for i in redo]
                        rslots = _joint_sweep(model, rmods, X, plan.chunk_size, [True] * len(redo))
                        for i, slot in zip(redo, rslots, strict=True):
                            s, bad, used, G = results[i]
                            s = s.clone()
                            C = slot.cols
                            s[used] = _svdvals(C[used])
                            results[i] = (s, bad, used, G)
                        del rslots
                    for i in group:
                        record(i, *results[i])
                n_sweeps = len(plan.groups)
            if plan.reverse:
                rmods = [mods[i] for i in plan.reverse]
                rows = _reverse_rows(model, rmods, X, plan.chunk_size)
                for i, R in zip(plan.reverse, rows, strict=True):
                    R = R.to(_F64)  # [bc, D, n_in]
                    G = _gram_of(R, rows=dims[i] <= n_in)
                    s, bad = _from_gram(G)
                    used = torch.ones_like(bad) if svd else bad
                    if bool(used.any()):
                        s = s.clone()
                        s[used] = _svdvals(R[used])
                    record(i, s, bad, used, G)
    for w in wlist:
        text = str(w.message)
        if _SLOW_PATH.search(text):
            caught.append(text)
        else:  # not ours to swallow: re-emit
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    caught = sorted(set(caught))
    if bar is not None:
        bar.close()

    taps = []
    for i, name in enumerate(tap_names):
        D = dims[i]
        taps.append(
            ExactTap(
                index=i,
                name=name,
                shape=shapes[i],
                D=D,
                n_in=n_in,
                r=min(D, n_in),
                side="output" if n_in >= D else "input",
                mode="reverse" if i in plan.reverse else "forward",
                singular_values=torch.cat(s_out[i]),
                gram_unreliable=torch.cat(bad_out[i]),
                svd_used=torch.cat(svd_out[i]),
                gram=torch.cat(gram_out[i]) if keep_grams else None,
            )
        )
    return ExactResult(
        taps=taps, plan=plan, n_sweeps=n_sweeps, chain_checked=chain_ok, warnings=caught
    )


def tap_grams(
    model: nn.Module,
    inputs: Tensor,
    taps="auto",
    *,
    dtype: torch.dtype = _F64,
    **kwargs,
) -> ExactResult:
    """Self-contained exact probe that keeps the Grams (for tests and debugging).

    Applies :func:`~isokit.probe.hygiene.probe_context` and returns :func:`exact_spectra`'s
    result with ``gram`` set on every tap (``B = JJᵀ`` if ``side == "output"``, else ``JᵀJ``).
    """
    from isokit.probe.hygiene import model_device, probe_context

    names = resolve_taps(model, taps)
    with probe_context(model, dtype=dtype) as m:
        x = inputs.to(device=model_device(m), dtype=dtype)
        return exact_spectra(m, x, names, keep_grams=True, **kwargs)
