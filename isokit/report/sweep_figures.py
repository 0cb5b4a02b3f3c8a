"""The sweep report's figures: statistics against a swept axis, and trainability maps.

1. :func:`axis_figure`: one group's statistics at the last tap (the end-to-end Jacobian)
   against depth or width on a log₂ axis, one panel per statistic, one line per scheme (median
   over seeds and examples, the 10–90 % band), the theory's prediction dashed in the scheme's
   colour where it has one;
2. :func:`map_figure`: per scheme of one group, heatmaps over depth × another swept axis of the
   steps to the target accuracy (not reached: hatched grey) and of the final held-out accuracy
   (or loss), diverged runs marked ×, with the curves depth = ξ_c and depth = 6·ξ_c where the
   theory gives the correlation depth scale ξ_c of the rows' weight law.

Built on :class:`matplotlib.figure.Figure` like :mod:`.figures`; render inside
``matplotlib.rc_context(style())``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import NullLocator

from isokit.report.figures import FRACTION_STATS
from isokit.report.formatting import format_number
from isokit.report.series import RANK_STATS
from isokit.report.style import (
    EDGE_HANDLES,
    LogAxis,
    Palette,
    grid_shape,
    legend_below,
    new_figure,
    no_finite_values,
)
from isokit.report.sweep_series import AXIS_STATS, AxisSeries, TrainMap, value_label

__all__ = ["STAT_LABELS", "XI_FACTOR", "axis_figure", "map_figure"]

#: Panel titles of the statistics (``docs/probes.md §5`` defines them).
STAT_LABELS = {
    "rank_fraction": "rank fraction (non-zero σ)",
    "gap_nonzero": "isometry gap (non-zero σ)",
    "var_nonzero": "scale-free variance (non-zero σ)",
    "cond_nonzero": "condition number (non-zero σ)",
    "gap": "isometry gap (all σ)",
    "var": "scale-free variance m2/m1² − 1",
    "m1": "m1 = mean σ²",
    "m1_bulk": "bulk m1 (without λmax)",
    "var_bulk": "bulk scale-free variance",
}
# Theory values are marked too: a prediction at a single point draws no line.
_THEORY_HANDLE = Line2D(
    [], [], color="0.2", ls="--", lw=1.4, marker="x", label="theory at the last tap (same colour)"
)
#: Depth over ξ_c beyond which Schoenholz et al. found networks untrainable.
XI_FACTOR = 6.0


def _log2_axis(ax, xs: Sequence) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks([float(x) for x in xs], [value_label(x) for x in xs])
    ax.xaxis.set_minor_locator(NullLocator())


def _panel(ax, series: AxisSeries, stat: str, palette: Palette) -> tuple[bool, bool]:
    """One statistic; returns whether a theory line and whether an infinite median was drawn."""
    theory = [
        (c, series.theory.get(c.scheme, {}).get(stat))
        for c in series.curves
        if np.isfinite(series.theory.get(c.scheme, {}).get(stat, np.array([np.nan]))).any()
    ]
    if stat in FRACTION_STATS:
        for c in series.curves:
            color, med = palette.color(c.scheme), c.median(stat)
            lo, hi = c.band(stat)
            seen = ~np.isnan(med)
            marker, lw = palette.marker(c.scheme), palette.width(c.scheme)
            ax.plot(c.depth[seen], med[seen], color=color, marker=marker, lw=lw)
            ok = ~(np.isnan(lo) | np.isnan(hi))
            ax.fill_between(c.depth[ok], lo[ok], hi[ok], color=color, alpha=0.15, lw=0)
        for c, vals in theory:
            ok = ~np.isnan(vals)
            ax.plot(
                c.depth[ok], vals[ok], color=palette.color(c.scheme), ls="--", lw=1.4, marker="x"
            )
        ax.set_ylim(-0.04, 1.04)
        return bool(theory), False
    axis = LogAxis(floor=1e-12)
    for c in series.curves:
        axis.add(c.median(stat), *c.band(stat))
    for _, vals in theory:
        axis.add(vals)
    has_inf = False
    for c in series.curves:
        med = c.median(stat)
        has_inf |= bool(np.isposinf(med).any())
        color, marker = palette.color(c.scheme), palette.marker(c.scheme)
        lw = palette.width(c.scheme)
        axis.draw(ax, c.depth, med, *c.band(stat), color=color, marker=marker, lw=lw)
    for c, vals in theory:
        color = palette.color(c.scheme)
        axis.draw(ax, c.depth, vals, None, None, color=color, marker="x", ls="--", lw=1.4)
    no_finite_values(ax, axis)
    return bool(theory), has_inf


def axis_stats(series: AxisSeries) -> list[str]:
    """The panels of an axis figure: the ranking's statistics, and the bulk moments where a
    theory line predicts them."""
    bulk = [
        s
        for s in AXIS_STATS
        if s not in RANK_STATS
        and any(np.isfinite(t.get(s, np.array([np.nan]))).any() for t in series.theory.values())
    ]
    return [*RANK_STATS, *bulk]


def axis_figure(series: AxisSeries, palette: Palette) -> Figure:
    """The statistics of one group at the last tap against ``series.axis`` (module docstring)."""
    stats = axis_stats(series)
    nrows, ncols = grid_shape(len(stats), 4)
    width = 3.3 * ncols + 0.6
    fig = new_figure(width, 2.6 * nrows + 1.2)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    xs = sorted({x for c in series.curves for x in c.depth.tolist()})
    has_theory = has_inf = False
    for ax, stat in zip(axes.flat, stats, strict=False):
        theory, inf = _panel(ax, series, stat, palette)
        has_theory, has_inf = has_theory or theory, has_inf or inf
        ax.set_title(STAT_LABELS[stat], fontsize=10)
        _log2_axis(ax, xs)
    for ax in axes.flat[len(stats) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"{series.axis} (log₂)")
    handles = palette.handles([c.scheme for c in series.curves])
    if has_theory:
        handles.append(_THEORY_HANDLE)
    if has_inf:
        handles.append(EDGE_HANDLES[0])
    handles.append(EDGE_HANDLES[1])
    fig.suptitle(f"At the last tap against {series.axis}: {series.group.label}", fontweight="bold")
    legend_below(fig, handles, width_in=width)
    return fig


# ------------------------------------------------------------------------------ 2. maps


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges halfway between ``centres`` (one unit wide for a single cell)."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _cell_text(value: float, diverged: int, runs: int, steps: bool) -> str:
    if math.isnan(value):
        text = "–" if diverged == 0 else ""
    elif math.isinf(value):
        text = "not\nreached"
    else:
        text = format_number(value) if not steps else f"{value:.0f}"
    if diverged:
        text += f"\n× {diverged}/{runs}"
    return text.strip()


def _ink(mesh, value: float) -> str:
    """Black text on light cells, white on dark ones."""
    if not math.isfinite(value):
        return "0.1"
    r, g, b, _ = mesh.cmap(mesh.norm(value))
    return "0.1" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


_NOT_REACHED = {"facecolor": "0.85", "hatch": "///", "edgecolor": "0.55", "lw": 0}


def _heatmap(ax, m: TrainMap, values: np.ndarray, norm, cmap: str, *, steps: bool):
    """One heatmap of ``values`` ([ys, xs]) on x = log₂ of the map's x, y = row index."""
    xc = np.log2(np.asarray(m.xs, dtype=float))
    xe, ye = _edges(xc), _edges(np.arange(len(m.ys), dtype=float))
    shown = np.ma.masked_invalid(values)
    mesh = ax.pcolormesh(xe, ye, shown, cmap=cmap, norm=norm, shading="flat")
    for i in range(len(m.ys)):
        for j in range(len(m.xs)):
            v = values[i, j]
            if math.isinf(v):
                w, h = xe[j + 1] - xe[j], ye[i + 1] - ye[i]
                ax.add_patch(Rectangle((xe[j], ye[i]), w, h, **_NOT_REACHED))
            text = _cell_text(v, int(m.diverged[i, j]), int(m.runs[i, j]), steps)
            if text:
                ax.text(xc[j], i, text, ha="center", va="center", fontsize=7, color=_ink(mesh, v))
    ax.set_xticks(xc, [value_label(x) for x in m.xs])
    ax.set_yticks(np.arange(len(m.ys)), [value_label(y) for y in m.ys])
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.grid(False)
    return mesh


def _xi_curves(ax, m: TrainMap) -> bool:
    """depth = ξ_c and depth = 6·ξ_c through the map's rows (broken where ξ_c is infinite, on
    the critical line); whether any was drawn."""
    finite = [p for p in m.xi if math.isfinite(p.xi_c) and p.xi_c > 0]
    if not finite:
        return False
    for factor, ls in ((1.0, "-"), (XI_FACTOR, "--")):
        if len(m.ys) == 1:  # one row: a segment across it
            x = math.log2(finite[0].xi_c * factor)
            ax.plot([x, x], [-0.5, 0.5], color="crimson", ls=ls, lw=1.8)
            continue
        x = np.array([p.xi_c * factor for p in m.xi])
        x = np.where(np.isfinite(x) & (x > 0), np.log2(np.where(x > 0, x, 1.0)), np.nan)
        ax.plot(x, [p.row for p in m.xi], color="crimson", ls=ls, lw=1.8)
    return True


def _panels(maps: Sequence[TrainMap]) -> list[str]:
    has_target = any(np.isfinite(m.steps).any() or np.isinf(m.steps).any() for m in maps)
    return (["steps"] if has_target else []) + ["final"]


def _norms(maps: Sequence[TrainMap], metric: str) -> dict[str, Normalize]:
    steps = np.concatenate([m.steps[np.isfinite(m.steps)] for m in maps])
    final = np.concatenate([m.final[np.isfinite(m.final)] for m in maps])
    norms: dict[str, Normalize] = {
        "steps": Normalize(0, float(steps.max()) if steps.size else 1.0),
        "final": Normalize(0.0, 1.0),
    }
    if metric == "loss":
        positive = final[final > 0]
        lo, hi = (positive.min(), positive.max()) if positive.size else (0.1, 10.0)
        norms["final"] = LogNorm(lo, hi if hi > lo else lo * 10)
    return norms


def map_figure(maps: Sequence[TrainMap], palette: Palette) -> Figure:
    """The trainability maps of one group, one row per scheme (module docstring)."""
    panels = _panels(maps)
    metric = maps[0].metric
    norms = _norms(maps, metric)
    width = 4.6 * len(panels) + 0.8
    fig = new_figure(width, 2.9 * len(maps) + 1.4)
    axes = fig.subplots(len(maps), len(panels), squeeze=False)
    cmaps = {"steps": "viridis_r", "final": "viridis" if metric == "accuracy" else "viridis_r"}
    titles = {
        "steps": "steps to the target"
        + (f" (accuracy ≥ {format_number(maps[0].target)})" if maps[0].target else ""),
        "final": f"final held-out {metric}",
    }
    has_xi = False
    for row, m in zip(axes, maps, strict=True):
        for ax, panel in zip(row, panels, strict=True):
            values = m.steps if panel == "steps" else m.final
            mesh = _heatmap(ax, m, values, norms[panel], cmaps[panel], steps=panel == "steps")
            has_xi |= _xi_curves(ax, m)
            fig.colorbar(mesh, ax=ax, shrink=0.9)
            ax.set_title(f"{m.scheme}: {titles[panel]}", color=palette.color(m.scheme))
            ax.set_xlabel(f"{m.x} (log₂)")
            ax.set_ylabel(m.y or "(not swept for this scheme)")
    handles = [
        Patch(label="target not reached (median over seeds)", **_NOT_REACHED),
        Line2D([], [], ls="none", marker="$×$", color="0.1", label="× k/n: k of n seeds diverged"),
    ]
    if has_xi:
        handles += [
            Line2D([], [], color="crimson", lw=1.8, label="depth = ξ_c (theory)"),
            Line2D([], [], color="crimson", lw=1.8, ls="--", label="depth = 6·ξ_c"),
        ]
    fig.suptitle(f"Trainability: {maps[0].group.label}", fontweight="bold")
    legend_below(fig, handles, width_in=width)
    return fig
