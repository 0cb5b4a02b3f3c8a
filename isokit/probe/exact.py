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

All functions here expect the hygienic probe copy of the model (:mod:`isokit.probe.hygiene`) and
inputs already on its device and in its dtype; :func:`tap_grams` is the self-contained entry
point used by the tests to compare the Grams with a dense ``jacrev`` reference.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

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

#: ``λ_min/λ_max`` below this makes a Gram unreliable (§3.4): recompute with ``svdvals``.
GRAM_RTOL = 1e-12
#: A trailing tap with ``REVERSE_RATIO·D_l ≤ n_in`` is computed in reverse mode.
REVERSE_RATIO = 4
#: Live tangent-sized tensors per chunk column at the widest layer: activations, skip, scratch,
#: and above all the ``im2col`` buffer of a CPU 3×3 convolution (9× its input). Measured: about
#: 13 for a CIFAR BasicBlock in float64 on CPU.
ACT_FACTOR = 12
#: The joint sweep is preferred while its estimate stays below this, whatever the chain.
JOINT_COMFORT_BYTES = 512 * 2**20
#: Live tangents may always use this much, even when the stored Grams are smaller.
LIVE_FLOOR_BYTES = 256 * 2**20
#: Target number of tangent columns per vmapped call when choosing the example chunk.
_TARGET_COLUMNS = 256
_F64 = torch.float64
_SLOW_PATH = re.compile(r"performance drop|batching rule|fall(ing)? ?back", re.IGNORECASE)


class ProbeMemoryError(MemoryError):
    """The exact probe's memory estimate exceeds ``max_memory``."""


# --------------------------------------------------------------------------------------- memory


def available_memory(device: torch.device | str | None = None) -> int:
    """Free memory in bytes: ``MemAvailable`` (or ``os.sysconf``) on CPU, free memory on CUDA."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 4 * 2**30


def default_max_memory(device: torch.device | str | None = None) -> int:
    """The default budget: half the free RAM on CPU, 80 % of the free memory on CUDA."""
    device = torch.device(device or "cpu")
    fraction = 0.8 if device.type == "cuda" else 0.5
    return int(fraction * available_memory(device))


def _storage_live(
    n_in: int, dims: Sequence[int], strategy: str, c: int, svd: bool
) -> tuple[int, int]:
    """(stored floats, live tangent floats) per example for one sweep."""
    max_d = max(dims)
    max_r = max(min(d, n_in) for d in dims)
    if strategy == "joint":
        storage = sum(d * n_in if (svd or d > n_in) else d * d for d in dims)
        live = c * (sum(dims) + ACT_FACTOR * max_d)
    elif strategy == "chained":
        pairs = [dims[0]] + [a + b for a, b in zip(dims[:-1], dims[1:], strict=True)]
        storage = max(pairs) * n_in + max_r * max_r
        live = c * (ACT_FACTOR + 1) * max_d
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return storage, live


def estimate_exact_memory(
    n_in: int,
    dims: Sequence[int],
    *,
    strategy: str = "joint",
    chunk_size: int | None = None,
    example_chunk: int = 1,
    svd: bool = False,
    param_bytes: int = 0,
) -> int:
    """Bytes needed by one exact sweep over taps of output sizes ``dims`` (float64 storage).

    ``joint``: ``Σ_l D_l·min(D_l, n_in)`` stored (``D_l·n_in`` with ``svd``) plus ``c·Σ_l D_l``
    captured tangents and ``ACT_FACTOR·c·max D`` live ones, per example in flight.
    ``chained``: ``max_l (D_{l−1} + D_l)·n_in`` columns, the largest ``r×r`` Gram, and the live
    tangents of one chunk. ``param_bytes`` (the float64 model copy) is added once.
    """
    if not dims:
        return int(param_bytes)
    c = min(n_in, chunk_size or n_in)
    storage, live = _storage_live(n_in, dims, strategy, c, svd)
    return int(8 * example_chunk * (storage + live) + param_bytes)


@dataclass(kw_only=True)
class ExactPlan:
    """How :func:`exact_spectra` will run (see :func:`plan_exact`)."""

    strategy: str  # "joint" | "chained" | "groups"
    chunk_size: int
    example_chunk: int
    groups: list[list[int]]  # forward tap indices per sweep
    reverse: list[int]  # tap indices in reverse mode
    bytes: int
    max_memory: int
    reason: str


def _chunk_candidates(n_in: int) -> list[int]:
    out, c = [], n_in
    while c >= 1:
        out.append(c)
        if c <= 8:
            break
        c = (c + 1) // 2
    return out


def _reverse_split(n_in: int, dims: Sequence[int], mode: str) -> tuple[list[int], list[int]]:
    n = len(dims)
    if mode == "forward":
        return list(range(n)), []
    if mode == "reverse":
        return [], list(range(n))
    if mode != "auto":
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    k = n
    while k > 0 and REVERSE_RATIO * dims[k - 1] <= n_in:
        k -= 1
    return list(range(k)), list(range(k, n))


def plan_exact(
    n_in: int,
    dims: Sequence[int],
    *,
    n_examples: int,
    max_memory: int,
    chunk_size: int | None = None,
    svd: bool = False,
    strategy: str = "auto",
    mode: str = "auto",
    chain_ok: bool | None = None,
    param_bytes: int = 0,
    allow_groups: bool = True,
    example_chunk_size: int | None = None,
) -> ExactPlan:
    """Choose strategy, chunk sizes and tap groups so that the estimate fits ``max_memory``.

    ``chain_ok`` says whether the chained sweep is valid (``None``: unknown, so it is not used
    unless ``strategy="chained"``). ``example_chunk_size`` fixes the number of examples per
    sweep (default: one, unless the chunks are so small that ``vmap``-ping a few examples
    together reaches 256 tangent columns; one example at a time keeps the peak memory lowest).
    Raises :class:`ProbeMemoryError` when nothing fits.
    """
    fwd, rev = _reverse_split(n_in, dims, mode)
    rev_bytes = 0
    if rev:
        # Reverse taps keep their rows J_l (D_l × n_in) and one chunk of cotangent products.
        rev_bytes = 8 * sum(2 * dims[i] * n_in for i in rev) + param_bytes
        if rev_bytes > max_memory:
            raise ProbeMemoryError(
                f"exact reverse mode needs ~{_fmt(rev_bytes)} but max_memory is "
                f"{_fmt(max_memory)}; use method='lanczos' or raise max_memory"
            )
    fdims = [dims[i] for i in fwd]
    cands = [chunk_size] if chunk_size else _chunk_candidates(n_in)

    def best(strat: str, taps: list[int]) -> tuple[int, int] | None:
        # The largest chunk that fits, but keeping the live tangents within
        # max(storage/2, LIVE_FLOOR): bigger chunks add memory, hardly speed.
        ds = [dims[i] for i in taps]
        fallback = None
        for c in cands:
            est = estimate_exact_memory(
                n_in, ds, strategy=strat, chunk_size=c, svd=svd, param_bytes=param_bytes
            )
            if est > max_memory:
                continue
            storage, live = _storage_live(n_in, ds, strat, c, svd)
            if chunk_size or 8 * live <= max(4 * storage, LIVE_FLOOR_BYTES):
                return c, est
            fallback = fallback or (c, est)
        return fallback

    def example_chunk(strat: str, c: int, taps: list[int]) -> tuple[int, int]:
        ds = [dims[i] for i in taps]
        if example_chunk_size:
            bc = max(1, min(n_examples, int(example_chunk_size)))
        else:
            bc = max(1, min(n_examples, -(-_TARGET_COLUMNS // c)))
        while True:
            est = estimate_exact_memory(
                n_in,
                ds,
                strategy=strat,
                chunk_size=c,
                example_chunk=bc,
                svd=svd,
                param_bytes=param_bytes,
            )
            if est <= max_memory or bc == 1:
                return bc, est
            bc = max(1, bc // 2)

    if not fwd:
        return ExactPlan(
            strategy="joint",
            chunk_size=cands[0],
            example_chunk=1,
            groups=[],
            reverse=rev,
            bytes=rev_bytes,
            max_memory=max_memory,
            reason="all taps in reverse mode",
        )
    joint = best("joint", fwd) if strategy in ("auto", "joint") else None
    chained = best("chained", fwd) if strategy in ("auto", "chained") else None
    choice = None
    if strategy == "joint" and joint:
        choice = "joint"
    elif strategy == "chained" and chained:
        if chain_ok is False:
            raise TapError("the taps do not form a chain; the chained sweep is invalid here")
        choice = "chained"
    elif strategy == "auto":
        if joint and joint[1] <= JOINT_COMFORT_BYTES:
            choice = "joint"
        elif chained and chain_ok:
            choice = "joint" if joint and joint[1] <= 2 * chained[1] else "chained"
        elif joint:
            choice = "joint"
    elif strategy not in ("joint", "chained", "groups"):
        raise ValueError(f"strategy must be auto, joint, chained or groups, got {strategy!r}")
    if choice is not None:
        c = (joint if choice == "joint" else chained)[0]
        bc, est = example_chunk(choice, c, fwd)
        joint_txt = (
            f"joint ~{_fmt(joint[1])}"
            if joint
            else "joint over budget"
            if strategy == "auto"
            else f"forced {choice}"
        )
        return ExactPlan(
            strategy=choice,
            chunk_size=c,
            example_chunk=bc,
            groups=[fwd],
            reverse=rev,
            bytes=max(est, rev_bytes),
            max_memory=max_memory,
            reason=f"{choice} sweep (~{_fmt(est)}; {joint_txt}; budget {_fmt(max_memory)})",
        )
    if not allow_groups and strategy != "groups":
        best_single = min(
            estimate_exact_memory(
                n_in, fdims, strategy=st, chunk_size=cands[-1], svd=svd, param_bytes=param_bytes
            )
            for st in (("joint", "chained") if chain_ok else ("joint",))
        )
        raise ProbeMemoryError(
            f"one exact sweep needs at least ~{_fmt(best_single)} but max_memory is "
            f"{_fmt(max_memory)}"
        )
    # Several joint sweeps over consecutive groups of taps.
    c = cands[-1] if chunk_size is None else chunk_size
    groups: list[list[int]] = []
    current: list[int] = []
    for i in fwd:
        trial = current + [i]
        est = estimate_exact_memory(
            n_in, [dims[j] for j in trial], chunk_size=c, svd=svd, param_bytes=param_bytes
        )
        if est <= max_memory:
            current = trial
            continue
        if not current:
            need = estimate_exact_memory(
                n_in, [dims[i]], chunk_size=c, svd=svd, param_bytes=param_bytes
            )
            raise ProbeMemoryError(
                f"the exact probe needs at least ~{_fmt(need)} for tap #{i} (D={dims[i]}, "
                f"n_in={n_in}) but max_memory is {_fmt(max_memory)}; use method='lanczos', "
                "fewer taps, or a larger max_memory"
            )
        groups.append(current)
        current = [i]
    groups.append(current)
    c_best = c
    for cand in cands:  # the largest chunk that every group can afford
        if all(
            estimate_exact_memory(
                n_in, [dims[j] for j in g], chunk_size=cand, svd=svd, param_bytes=param_bytes
            )
            <= max_memory
            for g in groups
        ):
            c_best = cand
            break
    est = max(
        estimate_exact_memory(
            n_in, [dims[j] for j in g], chunk_size=c_best, svd=svd, param_bytes=param_bytes
        )
        for g in groups
    )
    return ExactPlan(
        strategy="groups",
        chunk_size=c_best,
        example_chunk=1,
        groups=groups,
        reverse=rev,
        bytes=max(est, rev_bytes),
        max_memory=max_memory,
        reason=f"{len(groups)} joint sweeps over tap groups (~{_fmt(est)} each; one sweep "
        f"would need ~{_fmt(estimate_exact_memory(n_in, fdims, chunk_size=c_best, svd=svd))}; "
        f"budget {_fmt(max_memory)})",
    )


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


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


# --------------------------------------------------------------------------------------- helpers


def _svdvals(M: Tensor) -> Tensor:
    if M.is_cuda:
        return torch.linalg.svdvals(M, driver="gesvd")
    return torch.linalg.svdvals(M)


def _eigvalsh(G: Tensor) -> Tensor:
    """Ascending eigenvalues of a batch of symmetric ``[b, r, r]`` float64 matrices.

    Always ``torch.linalg.eigvalsh`` (LAPACK ``syevd`` through torch's BLAS). SciPy's LAPACK is
    no faster single-threaded, and mixing its OpenBLAS thread pool with torch's OpenMP pool
    oversubscribes the cores (both spin-wait), which made whole probes 10–50× slower on a
    loaded 2-core machine.
    """
    return torch.linalg.eigvalsh(G)


def _gram_of(C: Tensor, *, rows: bool) -> Tensor:
    """``C Cᵀ`` (``rows=True``) or ``CᵀC`` of a batch ``[b, p, q]`` in float64, symmetric."""
    C = C.to(_F64)
    return C @ C.transpose(1, 2) if rows else C.transpose(1, 2) @ C


def _from_gram(G: Tensor) -> tuple[Tensor, Tensor]:
    """``[b, r, r]`` Gram → (descending ``s`` ``[b, r]``, unreliable ``[b]``)."""
    G = 0.5 * (G + G.transpose(-1, -2))
    lam = _eigvalsh(G).clamp_min(0)
    lmax, lmin = lam[:, -1], lam[:, 0]
    unreliable = (lmax > 0) & (lmin < GRAM_RTOL * lmax)
    return lam.flip(-1).sqrt(), unreliable


def _basis(start: int, stop: int, n_in: int, in_shape, *, dtype, device) -> Tensor:
    E = torch.zeros(stop - start, n_in, dtype=dtype, device=device)
    E[torch.arange(stop - start, device=device), torch.arange(start, stop, device=device)] = 1
    return E.reshape(stop - start, *in_shape)


class _Slot:
    """Per-tap, per-example-chunk accumulator: a Gram or the columns."""

    def __init__(self, bc: int, D: int, n_in: int, keep_cols: bool, device) -> None:
        self.D, self.n_in, self.keep_cols = D, n_in, keep_cols
        if keep_cols:
            self.cols = torch.zeros(bc, n_in, D, dtype=_F64, device=device)
            self.gram = None
        else:
            self.cols = None
            self.gram = None  # allocated by the first chunk

    def add(self, start: int, Y: Tensor) -> None:  # Y: [bc, c, D] = (J E_S)ᵀ
        Y = Y.to(_F64)
        if self.keep_cols:
            self.cols[:, start : start + Y.shape[1]] = Y
        elif start == 0 and Y.shape[1] == self.n_in:
            self.gram = _gram_of(Y, rows=False)  # one chunk: B = YᵀY
        elif self.gram is None:
            self.gram = Y.transpose(1, 2) @ Y
        else:
            self.gram.baddbmm_(Y.transpose(1, 2), Y)

    def finish(self, *, svd: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None, bool]:
        """(s, unreliable, svd_used, gram, needs_resweep)."""
        # cols: [bc, n_in, D]; the r-side Gram is A = JᵀJ when D > n_in
        G = _gram_of(self.cols, rows=self.n_in < self.D) if self.keep_cols else self.gram
        s, bad = _from_gram(G)
        use_svd = torch.ones_like(bad) if svd else bad
        if bool(use_svd.any()):
            if self.keep_cols:
                s = s.clone()
                s[use_svd] = _svdvals(self.cols[use_svd])
            else:
                return s, bad, use_svd, G, True
        return s, bad, use_svd, G, False


# --------------------------------------------------------------------------------------- sweeps


def _joint_sweep(
    model: nn.Module,
    mods: Sequence[nn.Module],
    X: Tensor,
    c: int,
    keep_cols: Sequence[bool],
    progress=None,
    on_done=None,
) -> list:
    """One forward sweep over all input basis chunks for the taps ``mods`` (stops after the last).

    ``X`` is ``[bc, *in_shape]``; returns one filled slot per tap, or, with ``on_done``, what
    ``on_done(slot)`` returns for each slot, called as soon as the last chunk is in (the slot and
    that tap's chunk are released right away, so the Grams never pile up).
    """
    in_shape = tuple(X.shape[1:])
    n_in = math.prod(in_shape)
    last = len(mods) - 1

    def g(x: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, mods, x.unsqueeze(0), stop_after=last)
        return tuple(h.reshape(-1) for h in call.outputs)

    def push(x: Tensor, V: Tensor) -> tuple[Tensor, ...]:
        return vmap(lambda v: jvp(g, (x,), (v,))[1])(V)

    if X.shape[0] == 1:  # one example: skip a vmap level (less dispatch per op)

        def batched(X: Tensor, V: Tensor) -> tuple[Tensor, ...]:
            return tuple(Y.unsqueeze(0) for Y in push(X[0], V))

    else:
        batched = vmap(push, in_dims=(0, None))
    slots: list[_Slot | None] | None = None
    done: list = [None] * len(mods)
    for start in range(0, n_in, c):
        stop = min(n_in, start + c)
        V = _basis(start, stop, n_in, in_shape, dtype=X.dtype, device=X.device)
        Ys = list(batched(X, V))
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
                done[k] = on_done(slot)
                slots[k] = None
        del Ys
        if progress is not None:
            progress.update(stop - start)
    assert slots is not None
    return done if on_done is not None else slots


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


def _joint_push(model, mods, X: Tensor, V: Tensor) -> list[Tensor]:
    last = len(mods) - 1

    def g(x: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(model, mods, x.unsqueeze(0), stop_after=last)
        return tuple(h.reshape(-1) for h in call.outputs)

    def push(x: Tensor, Vs: Tensor):
        return vmap(lambda v: jvp(g, (x,), (v,))[1])(Vs)

    return list(vmap(push, in_dims=(0, None))(X, V))


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
