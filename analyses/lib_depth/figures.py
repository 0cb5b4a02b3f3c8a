"""Figures of the depth analysis: one statistic per figure, one panel per model family (or per
trained model), one line per scheme, in the report's style and palette."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from isokit.report import style

__all__ = ["STAT_LABELS", "against", "loss_curves"]

#: Axis labels (with what the statistic measures) of the plotted statistics.
STAT_LABELS = {
    "m1": "m1 = mean σ² (log)",
    "var_nonzero": "var_nonzero (log)",
    "gap_nonzero": "gap_nonzero (log)",
    "rank_fraction": "rank fraction k/r",
    "sigma_max": "σ_max (log)",
    "sigma_min": "σ_min (log)",
    "cond_nonzero": "cond_nonzero (log)",
}
LOG_STATS = {"m1", "var_nonzero", "gap_nonzero", "sigma_max", "sigma_min", "cond_nonzero"}
FLOOR = 1e-14  # smaller values are drawn at the bottom edge (▼)


def _panel(ax, series: Mapping[str, Mapping[str, list]], x: str, stat: str, palette) -> None:
    log = stat in LOG_STATS
    axis = style.LogAxis(floor=FLOOR)
    for s in series.values():
        axis.add(np.asarray(s[stat], dtype=float))
    for scheme, s in series.items():
        xs = np.asarray(s[x], dtype=float)
        ys = np.asarray(s[stat], dtype=float)
        kw = {"color": palette.color(scheme), "marker": palette.marker(scheme)}
        if log:
            axis.draw(ax, xs, ys, None, None, lw=palette.width(scheme), **kw)
        else:
            ax.plot(xs, ys, lw=palette.width(scheme), markersize=4, **kw)
    if log:
        style.no_finite_values(ax, axis)
    else:
        ax.set_ylim(-0.03, 1.03)


def against(
    run: Any,
    stem: str,
    title: str,
    panels: Mapping[str, Mapping[str, Mapping[str, list]]],
    *,
    stat: str,
    x: str = "depth",
    xlabel: str = "depth L (blocks or layers; log scale)",
    log_x: bool = True,
    schemes: Sequence[str],
) -> list:
    """``stat`` against ``x`` in one panel per entry of ``panels`` (``{panel: {scheme:
    series}}``), saved as ``stem``; returns the paths."""
    names = [p for p in panels if panels[p]]
    rows, cols = style.grid_shape(max(1, len(names)), 3)
    width = 4.2 * cols
    fig = run.new_figure(width, 3.3 * rows + 1.2)
    palette = style.Palette(tuple(schemes))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        _panel(ax, panels[name], x, stat, palette)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(STAT_LABELS.get(stat, stat))
        ticks = sorted({d for s in panels[name].values() for d in s[x]})
        if log_x and ticks and ticks[0] <= 0:
            # Steps start at 0: linear up to the first checkpoint after it, log beyond.
            ax.set_xscale("symlog", linthresh=max(1, ticks[1] if len(ticks) > 1 else 1))
        elif log_x:
            ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    present = sorted({s for p in names for s in panels[p]}, key=list(schemes).index)
    handles = palette.handles(present)
    if stat in LOG_STATS:
        handles += style.EDGE_HANDLES
    style.legend_below(fig, handles, width_in=width)
    return run.save_figure(fig, stem)


def loss_curves(
    run: Any, stem: str, title: str, curves: Mapping[str, Mapping[str, Any]], schemes: Sequence[str]
) -> list:
    """Training loss against step per trained model (``{panel: {scheme: curve}}``, curves from
    ``summary.train_curves``), with lr and η/(1−β) in each label."""
    names = [p for p in curves if curves[p]]
    cols = max(1, len(names))
    width = 5.0 * cols
    fig = run.new_figure(width, 4.2)
    palette = style.Palette(tuple(schemes))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        for scheme, c in curves[name].items():
            loss = np.asarray(c["loss"], dtype=float)
            label = f"{scheme} (lr {c['lr']:g}, η/(1−β) {c['effective_lr']:g})"
            if c["diverged_at"] is not None:
                label += f", diverged at {c['diverged_at']}"
            ax.plot(
                c["step"],
                np.where(np.isfinite(loss), loss, math.nan),
                label=label,
                color=palette.color(scheme),
                lw=1.2,
            )
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("training step (updates)")
        ax.set_ylabel("training cross-entropy per example (nats, log)")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return run.save_figure(fig, stem)
