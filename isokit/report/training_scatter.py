"""Isometry at initialization against trainability: one point per scheme and seed.

Columns: the isometry gap of the non-zero singular values at the last tap of the run's Profile
(``gap_nonzero``; where some run has no finite one, the scale-free variance ``var`` for every
run, and the axis label says which) on a log axis, and the rank fraction there. Rows: the steps
to the target accuracy (when the runs had a target) and the final held-out accuracy (the final
held-out loss for regression). Colour is the scheme (:class:`~isokit.report.style.Palette`),
the marker the model. Runs that never reached the target are hollow on the "not reached" line at
the top; diverged runs are ×, on the steps row where they reached the target or at the top, and
on the final row at the edge (a diverged run has no final value). Values a log axis cannot show
are drawn at its edges (0 at the left, ∞ at the right); a run without the statistic is counted in
the panel, never dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from isokit.report.style import LogAxis, Palette, legend_below, log_ticks, new_figure
from isokit.report.training_figures import DIVERGED_POINT, NOT_REACHED_HANDLE
from isokit.report.training_series import TrainPoint

__all__ = ["isometry_figure", "isometry_x"]

_MODEL_MARKERS = "osD^vP*Xp<>h"
_X_LABELS = {
    "gap_nonzero": "isometry gap (non-zero σ) at the last tap, at init",
    "var": "scale-free variance at the last tap, at init (gap_nonzero not finite for every run)",
    "rank_fraction": "rank fraction at the last tap, at init",
}


def isometry_x(points: Sequence[TrainPoint]) -> str:
    """The isometry statistic of the x axis: ``gap_nonzero`` if every run has a finite one,
    else ``var``.

    Example:
        >>> isometry_x([])
        'gap_nonzero'
    """
    return "gap_nonzero" if all(math.isfinite(p.gap_nonzero) for p in points) else "var"


def _x_values(ax, xs: np.ndarray, *, log: bool) -> np.ndarray:
    """Positions on the x axis (log: 0 at the left edge, ∞ at the right); sets the limits."""
    if not log:
        ax.set_xlim(-0.04, 1.04)
        return xs
    axis = LogAxis(floor=1e-300)
    axis.add(xs)
    left, right = axis.limits()
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    log_ticks(ax, left, right, axis="x")
    out = np.clip(xs, left, right)
    return np.where(np.isnan(xs), np.nan, out)


def _y_value(p: TrainPoint, row: str, top: float) -> float:
    if row == "steps":
        return top if p.steps_to_target is None else float(p.steps_to_target)
    return p.final


def _panel(ax, points, xstat, row, y_limits, palette, markers) -> None:
    xs = _x_values(ax, np.array([getattr(p, xstat) for p in points]), log=xstat != "rank_fraction")
    lo, hi = y_limits
    for p, x in zip(points, xs, strict=True):
        if np.isnan(x):
            continue
        color = palette.color(p.scheme)
        y = _y_value(p, row, hi)
        if p.diverged_at is not None:
            edge = hi if row == "final_loss" else lo
            y = y if row == "steps" else edge
            ax.plot([x], [y], ls="none", marker="x", color=color, ms=9, mew=2, clip_on=False)
            continue
        filled = "none" if row == "steps" and not p.reached else color
        marker = markers(p)
        y = np.clip(y, lo, hi)
        ax.plot([x], [y], ls="none", marker=marker, color=color, mfc=filled, ms=7, clip_on=False)
    missing = int(np.isnan(xs).sum())
    if missing:
        text = f"{missing} run(s) without {xstat}: not drawn"
        ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=8, color="0.35")


def _limits(points: Sequence[TrainPoint], row: str) -> tuple[float, float]:
    if row == "steps":
        return 0.0, max(p.steps for p in points) * 1.08
    if row == "final_accuracy":
        return -0.02, 1.02
    axis = LogAxis(floor=1e-300)
    axis.add(np.array([p.final for p in points if p.diverged_at is None]))
    return axis.limits()


def _handles(points: Sequence[TrainPoint], palette: Palette, model_marker: dict) -> list:
    """Legend entries: each scheme's colour (and marker, unless ``model_marker`` gives a
    marker per model, which then has its own entries)."""
    schemes = [p.scheme for p in points]
    if not model_marker:
        return palette.handles(schemes)
    handles = [
        Line2D([], [], ls="none", marker="o", color=palette.color(s), ms=7, label=s)
        for s in palette.schemes
        if s in schemes
    ]
    return handles + [
        Line2D([], [], ls="none", marker=mark, color="0.3", ms=7, label=m)
        for m, mark in model_marker.items()
    ]


def isometry_figure(
    models: Sequence[str], points: Sequence[TrainPoint], palette: Palette
) -> tuple[Figure, str]:
    """The scatter (module docstring) and the isometry statistic its first column shows."""
    xstat = isometry_x(points)
    with_target = any(p.target is not None for p in points)
    regression = all(p.task == "regression" for p in points)
    rows = (["steps"] if with_target else []) + ["final_loss" if regression else "final_accuracy"]
    ylabels = {
        "steps": "steps to the target accuracy",
        "final_accuracy": "final held-out accuracy",
        "final_loss": "final held-out loss (log)",
    }
    present = [m for m in models if any(p.model == m for p in points)]
    # One model: each scheme keeps its marker of the other figures; several: the marker is the
    # model's, and the colour alone tells the scheme.
    by_model = len(present) > 1
    model_marker = {m: _MODEL_MARKERS[i % len(_MODEL_MARKERS)] for i, m in enumerate(models)}

    def markers(p: TrainPoint) -> str:
        return model_marker[p.model] if by_model else palette.marker(p.scheme)

    width = 10.5
    fig = new_figure(width, 3.6 * len(rows) + 1.3)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for i, row in enumerate(rows):
        mine = [p for p in points if row != "steps" or p.target is not None]
        limits = _limits(mine, row)
        for j, stat in enumerate((xstat, "rank_fraction")):
            ax = axes[i, j]
            _panel(ax, mine, stat, row, limits, palette, markers)
            if row == "final_loss":
                ax.set_yscale("log")
                log_ticks(ax, *limits)
            ax.set_ylim(*limits)
            if row == "steps":
                ax.axhline(limits[1], color="0.5", ls="--", lw=1)
                where = ax.get_yaxis_transform()  # x in axes fraction, y in data
                ax.text(0.01, limits[1], "not reached", transform=where, va="top", fontsize=8)
            if j == 0:
                ax.set_ylabel(ylabels[row])
            if i == len(rows) - 1:
                ax.set_xlabel(_X_LABELS[stat])
    handles = _handles(points, palette, {m: model_marker[m] for m in present} if by_model else {})
    if with_target:
        handles.append(NOT_REACHED_HANDLE)
    if any(p.diverged_at is not None for p in points):
        handles.append(DIVERGED_POINT)
    fig.suptitle("Isometry at initialization against training", fontweight="bold")
    legend_below(fig, handles, width_in=width)
    return fig, xstat
