"""The report's histograms of singular values at the first, middle and last tap.

Singular values that are zero by the probe's zero rule (:func:`isokit.probe.zero_mask`; the
report's samples carry them as exact zeros) cannot sit on a log axis; they form the *zero atom*,
drawn as a bar of its mass at the left edge, left of an axis break, labelled ``0``, and its
share per scheme is given in the panel. Values above zero but below the plotted dynamic range are
clipped into the first bin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from isokit.report.series import Curve
from isokit.report.style import DYNAMIC_RANGE, Palette, legend_below, log_ticks, new_figure

__all__ = ["histogram_figure", "zero_atom_bin"]


def _three_taps(curves: Sequence[Curve]) -> list[tuple[str, int]]:
    """First, middle and last tap with a spectrum (SLQ taps may be sparse; a dead tap has none)."""
    idx = sorted({i for c in curves for i, s in enumerate(c.sigma) if s is not None})
    if not idx:
        return []
    middle = min(idx, key=lambda i: (abs(i - (len(curves[0].depth) - 1) / 2), i))
    return [("first", idx[0]), ("middle", middle), ("last", idx[-1])]


def zero_atom_bin(bins: np.ndarray) -> tuple[float, float]:
    """Edges of the zero atom's bar: two bins of the histogram's width (in log σ), one and a
    half bins left of its first edge, so the bar reads like the histogram's own bars.

    Example:
        >>> lo, hi = zero_atom_bin(np.geomspace(1e-3, 1.0, 4))
        >>> bool(lo < hi < 1e-3), round(float(np.log10(hi / lo)), 6)
        (True, 2.0)
    """
    step = float(bins[1] / bins[0])
    hi = float(bins[0]) / step**1.5
    return hi / step**2, hi


def _no_spectrum(ax, model: str) -> None:
    ax.text(
        0.5, 0.5, "no spectrum", transform=ax.transAxes, ha="center", color="0.45", style="italic"
    )
    ax.set_title(model, fontsize=10)


def _panel(ax, here: Sequence[Curve], k: int, palette: Palette, theory=None) -> list:
    """One histogram; returns ``(scheme, zero mass)`` for the schemes with a zero atom.

    ``theory`` (a :class:`isokit.theory.ZeroAtomLine`) adds the predicted zero atom at this
    tap's depth to the panel's list of shares.
    """
    pos = np.concatenate([c.sigma[k][0][c.sigma[k][0] > 0] for c in here])
    if pos.size == 0:
        pos = np.array([1.0])
    lo = max(pos.min(), pos.max() / DYNAMIC_RANGE)
    bins = np.geomspace(lo / 1.05, pos.max() * 1.05, 40)
    zero_lo, zero_hi = zero_atom_bin(bins)
    zeros: list[tuple[str, float]] = []
    for c in here:
        s, w = c.sigma[k]
        color = palette.color(c.scheme)
        nonzero = s > 0
        if nonzero.any():
            ax.hist(
                np.clip(s[nonzero], bins[0], bins[-1]),
                bins=bins,
                weights=w[nonzero],
                histtype="step",
                lw=1.6,
                color=color,
            )
        mass = float(w[~nonzero].sum())
        if mass > 0:
            zeros.append((c.scheme, mass))
            ax.bar(
                zero_lo,
                mass,
                width=zero_hi - zero_lo,
                align="edge",
                fill=False,
                edgecolor=color,
                lw=1.6,
            )
    ax.axvline(1.0, color="0.25", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(zero_lo / 1.2 if zeros else bins[0], bins[-1])
    log_ticks(ax, bins[0], bins[-1], axis="x")
    if zeros:
        # keep the tick labels clear of the "0" under the bar
        clear = bins[0] * (bins[1] / bins[0]) ** 3
        ticks = [t for t in ax.get_xticks() if clear <= t <= bins[-1]]
        ax.set_xticks([np.sqrt(zero_lo * zero_hi), *ticks])
        ax.set_xticklabels(["0", *(f"{t:g}" for t in ticks)])
        ax.axvline(np.sqrt(zero_hi * bins[0]), color="0.6", ls="-", lw=0.8)  # the axis break
        lines = [f"σ = 0: {100 * m:.3g} % ({scheme})" for scheme, m in zeros]
        depth = int(here[0].depth[k])
        if theory is not None and depth in theory.depth:
            predicted = float(theory.zero_fraction[list(theory.depth).index(depth)])
            lines.append(f"theory (zero_atom): {100 * predicted:.3g} %")
        text = "\n".join(lines)
        ax.text(0.98, 0.97, text, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    return zeros


def histogram_figure(
    models: Sequence[str],
    curves: Sequence[Curve],
    palette: Palette,
    *,
    zero_atoms: dict | None = None,
) -> Figure:
    """Histograms of σ at the first, middle and last tap; one row per model.

    ``zero_atoms`` (per ``(model, scheme)``, :class:`isokit.theory.ZeroAtomLine`) adds the
    theory's zero atom at the panel's depth beside the measured shares.
    """
    fig = new_figure(11.5, 2.6 * len(models) + 1.1)
    axes = fig.subplots(len(models), 3, squeeze=False)
    present: list[str] = []
    zeros_seen = False
    for i, model in enumerate(models):
        mc = [c for c in curves if c.model == model and any(s is not None for s in c.sigma)]
        picks = _three_taps(mc)
        for j in range(3):
            ax = axes[i, j]
            if j >= len(picks):
                _no_spectrum(ax, model)
                continue
            where, k = picks[j]
            here = [c for c in mc if c.sigma[k] is not None]
            theory = next(
                (z for c in here if (z := (zero_atoms or {}).get((model, c.scheme)))), None
            )
            zeros_seen |= bool(_panel(ax, here, k, palette, theory))
            present += [c.scheme for c in here]
            ax.set_title(f"{model}: {where} tap ({mc[0].names[k]})", fontsize=10)
            ax.set_xlabel("singular value σ (log scale)")
            if j == 0:
                ax.set_ylabel("fraction of singular values")
    fig.suptitle("Distribution of singular values at three depths", fontweight="bold")
    handles = palette.handles(present)
    if zeros_seen:
        handles.append(Line2D([], [], ls="none", label="bar at '0': σ = 0 (rank-deficient)"))
    legend_below(fig, handles, width_in=11.5)
    return fig
