"""Results of the exact tier: :class:`ExactTap` per tap, :class:`ExactResult` per probe.

:func:`to_spectra` turns the taps into :class:`~isokit.probe.spectrum.TapSpectrum` objects, with
the statistics of all equal-sized taps in one batched call; the driver that fills these results is
:func:`isokit.probe.exact.exact_spectra`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from isokit.probe.grams import _symmetric
from isokit.probe.plan import ExactPlan
from isokit.probe.spectrum import TapSpectrum
from isokit.probe.statistics import degenerate_mask, dtype_eps, saturated_mask, stats
from isokit.probe.sweeps import _Geometry

__all__ = ["ExactResult", "ExactTap", "to_spectra"]


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
        >>> from isokit.probe.exact import tap_grams
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
