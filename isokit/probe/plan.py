"""Memory plan of the exact probe (``docs/probes.md §3.3``): the sweep that fits the budget.

:func:`plan_exact` picks the strategy (joint sweep, chained sweep, or several joint sweeps over
groups of taps), the input-basis chunk size, the number of examples per sweep and the trailing
taps done in reverse mode (``4·D_l ≤ n_in``), so that the estimate of
:func:`~isokit.probe.memory.estimate_exact_memory` fits ``max_memory``;
:class:`ProbeMemoryError` is raised when nothing fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from isokit.probe.memory import estimate_exact_memory, storage_and_live
from isokit.probe.taps import TapError

__all__ = [
    "JOINT_COMFORT_BYTES",
    "LIVE_FLOOR_BYTES",
    "REVERSE_RATIO",
    "ExactPlan",
    "MIN_SEGMENT",
    "ProbeMemoryError",
    "plan_exact",
    "plan_segments",
    "reverse_split",
]

#: A trailing tap with ``REVERSE_RATIO·D_l ≤ n_in`` is computed in reverse mode.
REVERSE_RATIO = 4
#: The joint sweep is preferred while its estimate stays below this, whatever the chain.
JOINT_COMFORT_BYTES = 512 * 2**20
#: Live tangents may always use this much, even when the stored Grams are smaller.
LIVE_FLOOR_BYTES = 256 * 2**20
#: Target number of tangent columns per vmapped call when choosing the example chunk.
_TARGET_COLUMNS = 256
#: The shortest segment of a chained sweep with more examples per ``vmap``: every segment
#: re-runs the primal forward up to where it starts.
MIN_SEGMENT = 4


class ProbeMemoryError(MemoryError):
    """The exact probe's memory estimate exceeds ``max_memory``.

    Example:
        >>> import torch, isokit
        >>> from isokit.models import MLP
        >>> try:
        ...     isokit.probe.profile(MLP(8, 8, depth=2), torch.randn(1, 8), method="exact",
        ...                          max_memory=64)
        ... except isokit.probe.ProbeMemoryError as err:
        ...     print("max_memory" in str(err))
        True
    """


@dataclass(kw_only=True)
class ExactPlan:
    """How :func:`exact_spectra` will run (see :func:`plan_exact`)."""

    strategy: str  # "joint" | "chained" | "groups"
    chunk_size: int
    example_chunk: int
    groups: list[list[int]]  # forward tap indices per sweep (chained: per segment)
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


def reverse_split(n_in: int, dims: Sequence[int], mode: str) -> tuple[list[int], list[int]]:
    """(forward-mode taps, reverse-mode taps): ``"auto"`` sends the trailing taps with
    ``REVERSE_RATIO·D_l ≤ n_in`` to reverse mode.

    Example:
        >>> reverse_split(64, [64, 64, 8], "auto")
        ([0, 1], [2])
    """
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


@dataclass(frozen=True, kw_only=True, eq=False)
class _Sizing:
    """The sizes and budget of one plan, with the estimates :func:`plan_exact` compares."""

    n_in: int
    dims: Sequence[int]
    n_examples: int
    max_memory: int
    chunk_size: int | None
    svd: bool
    param_bytes: int
    example_chunk_size: int | None
    cands: list[int]

    def estimate(self, taps: Sequence[int], c: int, strategy: str = "joint", bc: int = 1) -> int:
        return estimate_exact_memory(
            self.n_in,
            [self.dims[i] for i in taps],
            strategy=strategy,
            chunk_size=c,
            example_chunk=bc,
            svd=self.svd,
            param_bytes=self.param_bytes,
        )

    def best(self, strategy: str, taps: list[int]) -> tuple[int, int] | None:
        """(chunk, bytes): the largest chunk that fits, keeping the live tangents within
        ``max(storage/2, LIVE_FLOOR)`` (bigger chunks add memory, hardly speed)."""
        ds = [self.dims[i] for i in taps]
        fallback = None
        for c in self.cands:
            est = self.estimate(taps, c, strategy)
            if est > self.max_memory:
                continue
            storage, live = storage_and_live(self.n_in, ds, strategy, c, self.svd)
            if self.chunk_size or 8 * live <= max(4 * storage, LIVE_FLOOR_BYTES):
                return c, est
            fallback = fallback or (c, est)
        return fallback

    def example_chunk(self, strategy: str, c: int, taps: list[int]) -> tuple[int, int]:
        """(examples per sweep, bytes): halved from the target until the estimate fits."""
        if self.example_chunk_size:
            bc = max(1, min(self.n_examples, int(self.example_chunk_size)))
        else:
            bc = max(1, min(self.n_examples, -(-_TARGET_COLUMNS // c)))
        while True:
            est = self.estimate(taps, c, strategy, bc)
            if est <= self.max_memory or bc == 1:
                return bc, est
            bc = max(1, bc // 2)


def _reverse_bytes(sz: _Sizing, rev: list[int]) -> int:
    """Bytes of the reverse taps: their rows ``J_l`` (``D_l × n_in``) and one cotangent chunk."""
    if not rev:
        return 0
    rev_bytes = 8 * sum(2 * sz.dims[i] * sz.n_in for i in rev) + sz.param_bytes
    if rev_bytes > sz.max_memory:
        raise ProbeMemoryError(
            f"exact reverse mode needs ~{_fmt(rev_bytes)} but max_memory is "
            f"{_fmt(sz.max_memory)}; use method='lanczos' or raise max_memory"
        )
    return rev_bytes


def _choose(strategy: str, joint, chained, chain_ok: bool | None) -> str | None:
    """The single-sweep strategy, or ``None`` when tap groups are needed."""
    if strategy == "joint" and joint:
        return "joint"
    if strategy == "chained" and chained:
        if chain_ok is False:
            raise TapError("the taps do not form a chain; the chained sweep is invalid here")
        return "chained"
    if strategy == "auto":
        if joint and joint[1] <= JOINT_COMFORT_BYTES:
            return "joint"
        if chained and chain_ok:
            return "joint" if joint and joint[1] <= 2 * chained[1] else "chained"
        return "joint" if joint else None
    if strategy not in ("joint", "chained", "groups"):
        raise ValueError(f"strategy must be auto, joint, chained or groups, got {strategy!r}")
    return None


def _single_plan(sz: _Sizing, choice: str, strategy: str, joint, chained, fwd, rev, rev_bytes):
    c = (joint if choice == "joint" else chained)[0]
    bc, est = sz.example_chunk(choice, c, fwd)
    if joint:
        joint_txt = f"joint ~{_fmt(joint[1])}"
    else:
        joint_txt = "joint over budget" if strategy == "auto" else f"forced {choice}"
    return ExactPlan(
        strategy=choice,
        chunk_size=c,
        example_chunk=bc,
        # the chained sweep's segments: one tap each (two taps' columns held at a time)
        groups=[fwd] if choice == "joint" else [[i] for i in fwd],
        reverse=rev,
        bytes=max(est, rev_bytes),
        max_memory=sz.max_memory,
        reason=f"{choice} sweep (~{_fmt(est)}; {joint_txt}; budget {_fmt(sz.max_memory)})",
    )


def _split_groups(sz: _Sizing, fwd: list[int], c: int) -> list[list[int]]:
    """Consecutive tap groups, each as large as the budget allows at chunk ``c``."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i in fwd:
        trial = current + [i]
        if sz.estimate(trial, c) <= sz.max_memory:
            current = trial
            continue
        if not current:
            raise ProbeMemoryError(
                f"the exact probe needs at least ~{_fmt(sz.estimate([i], c))} for tap #{i} "
                f"(D={sz.dims[i]}, n_in={sz.n_in}) but max_memory is {_fmt(sz.max_memory)}; use "
                "method='lanczos', fewer taps, or a larger max_memory"
            )
        groups.append(current)
        current = [i]
    groups.append(current)
    return groups


def _group_plan(sz: _Sizing, fwd: list[int], rev: list[int], rev_bytes: int) -> ExactPlan:
    """Several joint sweeps over consecutive groups of taps."""
    c = sz.cands[-1] if sz.chunk_size is None else sz.chunk_size
    groups = _split_groups(sz, fwd, c)
    c_best = c
    for cand in sz.cands:  # the largest chunk that every group can afford
        if all(sz.estimate(g, cand) <= sz.max_memory for g in groups):
            c_best = cand
            break
    est = max(sz.estimate(g, c_best) for g in groups)
    one_sweep = estimate_exact_memory(
        sz.n_in, [sz.dims[i] for i in fwd], chunk_size=c_best, svd=sz.svd
    )
    return ExactPlan(
        strategy="groups",
        chunk_size=c_best,
        example_chunk=1,
        groups=groups,
        reverse=rev,
        bytes=max(est, rev_bytes),
        max_memory=sz.max_memory,
        reason=f"{len(groups)} joint sweeps over tap groups (~{_fmt(est)} each; one sweep "
        f"would need ~{_fmt(one_sweep)}; budget {_fmt(sz.max_memory)})",
    )


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

    Example:
        >>> plan = plan_exact(64, [64, 64, 10], n_examples=2, max_memory=2**30)
        >>> plan.strategy, plan.groups, plan.reverse
        ('joint', [[0, 1]], [2])
    """
    fwd, rev = reverse_split(n_in, dims, mode)
    sz = _Sizing(
        n_in=n_in,
        dims=dims,
        n_examples=n_examples,
        max_memory=max_memory,
        chunk_size=chunk_size,
        svd=svd,
        param_bytes=param_bytes,
        example_chunk_size=example_chunk_size,
        cands=[chunk_size] if chunk_size else _chunk_candidates(n_in),
    )
    rev_bytes = _reverse_bytes(sz, rev)
    if not fwd:
        return ExactPlan(
            strategy="joint",
            chunk_size=sz.cands[0],
            example_chunk=1,
            groups=[],
            reverse=rev,
            bytes=rev_bytes,
            max_memory=max_memory,
            reason="all taps in reverse mode",
        )
    joint = sz.best("joint", fwd) if strategy in ("auto", "joint") else None
    chained = sz.best("chained", fwd) if strategy in ("auto", "chained") else None
    choice = _choose(strategy, joint, chained, chain_ok)
    if choice is not None:
        return _single_plan(sz, choice, strategy, joint, chained, fwd, rev, rev_bytes)
    if not allow_groups and strategy != "groups":
        best_single = min(
            sz.estimate(fwd, sz.cands[-1], st)
            for st in (("joint", "chained") if chain_ok else ("joint",))
        )
        raise ProbeMemoryError(
            f"one exact sweep needs at least ~{_fmt(best_single)} but max_memory is "
            f"{_fmt(max_memory)}"
        )
    return _group_plan(sz, fwd, rev, rev_bytes)


def _segment_bytes(
    n_in: int, dims: Sequence[int], segs: list[list[int]], c: int, bc: int, svd: bool, pb: int
) -> int:
    """The largest estimate over the segments: a joint sweep over the segment's taps plus the
    columns of the tap before it and of its own last tap (the next segment's tangents)."""
    worst = 0
    for k, seg in enumerate(segs):
        joint = estimate_exact_memory(
            n_in, [dims[i] for i in seg], chunk_size=c, example_chunk=bc, svd=svd, param_bytes=pb
        )
        ends = (dims[segs[k - 1][-1]] if k else 0) + (dims[seg[-1]] if k < len(segs) - 1 else 0)
        worst = max(worst, joint + 8 * bc * n_in * ends)
    return worst


def plan_segments(
    plan: ExactPlan,
    n_in: int,
    dims: Sequence[int],
    *,
    n_examples: int,
    svd: bool = False,
    param_bytes: int = 0,
) -> ExactPlan | None:
    """The joint ``plan`` as a chained sweep with more examples per ``vmap``, in no more memory.

    A joint sweep holds the tangents of every tap for its ``bc`` examples at once, so it runs
    one example at a time once a chunk covers the input (``c = n_in``), and pays the
    per-operation dispatch of a ``vmap``-ped ``jvp`` once per example. Segments of
    ``g ≈ L·bc/bc'`` consecutive taps hold as many tangents for ``bc'`` examples; each segment
    starts from the columns of the tap before it (the chain rule, valid only where
    :func:`~isokit.probe.sweeps.check_segments` says so). Returns ``None`` when the joint plan
    already has every example in one call, or when no segment of at least ``MIN_SEGMENT`` taps
    fits the joint plan's estimate.

    Example:
        >>> joint = plan_exact(256, [256] * 64, n_examples=4, max_memory=2**30)
        >>> joint.strategy, joint.example_chunk
        ('joint', 1)
        >>> seg = plan_segments(joint, 256, [256] * 64, n_examples=4)
        >>> seg.strategy, seg.example_chunk, len(seg.groups), seg.bytes <= joint.bytes
        ('chained', 4, 7, True)
    """
    if plan.strategy != "joint" or len(plan.groups) != 1 or plan.example_chunk >= n_examples:
        return None
    fwd, c, bc0 = plan.groups[0], plan.chunk_size, plan.example_chunk
    L = len(fwd)
    joint = estimate_exact_memory(
        n_in,
        [dims[i] for i in fwd],
        chunk_size=c,
        example_chunk=bc0,
        svd=svd,
        param_bytes=param_bytes,
    )
    for bc in range(n_examples, bc0, -1):
        for g in range(min(L - 1, L * bc0 // bc), MIN_SEGMENT - 1, -1):
            n_seg = -(-L // g)
            cuts = [L * k // n_seg for k in range(n_seg + 1)]  # balanced: no short last one
            segs = [fwd[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
            est = _segment_bytes(n_in, dims, segs, c, bc, svd, param_bytes)
            if est <= joint:
                return replace(
                    plan,
                    strategy="chained",
                    example_chunk=bc,
                    groups=segs,
                    bytes=plan.bytes if plan.bytes > joint else est,  # reverse taps' rows
                    reason=f"chained sweep in {len(segs)} segments of ≤{max(map(len, segs))} "
                    f"taps, {bc} examples per vmap (~{_fmt(est)}; the joint sweep, {bc0} per "
                    f"vmap, ~{_fmt(joint)}; budget {_fmt(plan.max_memory)})",
                )
    return None


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
