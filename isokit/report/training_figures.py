"""The training figures: loss and accuracy curves, steps to the target and spectra at checkpoints.

1. :func:`curves_figure`: per model, the training loss (log scale, held-out loss dashed) and the
   held-out accuracy against step, per scheme the median over seeds and the min–max band;
   every legend entry gives the step size (:func:`~isokit.report.training_series.lr_label`);
2. :func:`steps_figure`: steps to the target accuracy per scheme, one point per seed and the
   median, one panel per model;
3. the isometry-at-initialization scatter lives in :mod:`.training_scatter`;
4. :func:`checkpoint_figure`: per model, the median singular value against depth at each
   checkpoint, one line per step on a sequential colour map, one panel per scheme.

Diverged runs are marked × with the step they diverged at; runs that never reached the target
are hollow markers on a "not reached" line at the top. Render inside
``matplotlib.rc_context(style())`` like :mod:`.figures`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from isokit.report.series import Curve, weighted_quantiles
from isokit.report.style import (
    LogAxis,
    Palette,
    depth_axis,
    grid_shape,
    legend_below,
    log_ticks,
    new_figure,
)
from isokit.report.training_series import TrainCurve, TrainPoint, median_steps

__all__ = [
    "DIVERGED_HANDLE",
    "DIVERGED_POINT",
    "NOT_REACHED_HANDLE",
    "checkpoint_figure",
    "curves_figure",
    "steps_figure",
]

DIVERGED_HANDLE = Line2D(
    [],
    [],
    ls="-.",
    lw=0.9,
    marker="x",
    color="0.2",
    markersize=8,
    mew=2,
    label="a diverged seed, up to its divergence (×)",
)
DIVERGED_POINT = Line2D(
    [], [], ls="none", marker="x", color="0.2", markersize=8, mew=2, label="diverged run"
)
NOT_REACHED_HANDLE = Line2D(
    [],
    [],
    ls="none",
    marker="o",
    mfc="none",
    color="0.2",
    markersize=7,
    label="target not reached (hollow, at the top)",
)
_BAND_HANDLES = [
    Line2D([], [], color="0.3", lw=1.8, label="training loss: median over seeds"),
    Line2D([], [], color="0.3", lw=7, alpha=0.18, label="min–max over seeds"),
    Line2D([], [], color="0.3", lw=1.4, ls="--", label="held-out loss (median)"),
]


def _diverged_x(ax, step: int, y: float, color, *, text: bool) -> None:
    """× at a diverged seed's divergence step, with the step written beside it."""
    ax.plot([step], [y], ls="none", marker="x", color=color, markersize=9, mew=2, zorder=6)
    if text:
        ax.annotate(
            f"diverged at step {step}",
            (step, y),
            xytext=(5, -4),
            textcoords="offset points",
            color=color,
            fontsize=8,
            annotation_clip=False,
        )


def _seed_line(ax, x: np.ndarray, y: np.ndarray, color, clip: tuple[float, float]) -> float:
    """One diverged seed's values up to its divergence (thin, clipped to the axis); returns
    its last drawn value (the axis top when it never had a finite one)."""
    seen = ~np.isnan(y)
    y = np.clip(y[seen], *clip)
    ax.plot(x[seen], y, color=color, lw=0.9, alpha=0.8, ls="-.")
    return float(y[-1]) if y.size else clip[1]


# ------------------------------------------------------------------------------ 1. curves


def _loss_panel(ax, curves: Sequence[TrainCurve], palette: Palette) -> None:
    # The axis spans the runs that kept training: an exploding run is drawn to its edge.
    # A scheme whose every seed diverged is drawn only as its seeds' lines, clipped to the
    # range of the others, so one explosion does not flatten every other curve.
    kept = [c for c in curves if len(c.diverged) < len(c.seeds)] or list(curves)
    axis = LogAxis(floor=1e-300)
    for c in kept:
        axis.add(c.median("loss"), *c.band("loss"), c.median("eval_loss"))
    bottom, top = axis.limits()
    for c in curves:
        color = palette.color(c.scheme)
        if c in kept:
            axis.draw(ax, c.step, c.median("loss"), *c.band("loss"), color=color, marker=None)
            axis.draw(
                ax,
                c.eval_step,
                c.median("eval_loss"),
                None,
                None,
                color=color,
                marker=None,
                ls="--",
            )
        for seed, step, _ in c.diverged:
            y = _seed_line(ax, c.step, c.column("loss", seed), color, (bottom, top))
            _diverged_x(ax, step, y, color, text=True)
    ax.set_ylim(bottom, top)
    log_ticks(ax, bottom, top)
    ax.set_ylabel("loss (log scale)")


def _accuracy_panel(ax, curves: Sequence[TrainCurve], palette: Palette) -> bool:
    """Held-out accuracy; returns whether a target line was drawn."""
    targets = set()
    for c in curves:
        color = palette.color(c.scheme)
        med = c.median("eval_accuracy")
        seen = ~np.isnan(med)
        ax.plot(c.eval_step[seen], med[seen], color=color, lw=1.8, marker="o", markersize=3)
        lo, hi = c.band("eval_accuracy")
        ok = ~(np.isnan(lo) | np.isnan(hi))
        ax.fill_between(c.eval_step[ok], lo[ok], hi[ok], color=color, alpha=0.18, lw=0)
        for seed, step, _ in c.diverged:
            y = _seed_line(ax, c.eval_step, c.column("eval_accuracy", seed), color, (0.0, 1.0))
            _diverged_x(ax, step, y, color, text=False)
        targets |= {r.options.target_accuracy for r in c.results} - {None}
    for target in targets:
        ax.axhline(target, color="0.25", ls=":", lw=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("held-out accuracy")
    return bool(targets)


def curves_figure(model: str, curves: Sequence[TrainCurve], palette: Palette) -> Figure:
    """Loss (and, for classification, held-out accuracy) against step for one model."""
    classification = any(c.task == "classification" for c in curves)
    ncols = 2 if classification else 1
    width = 11.2 if classification else 7.6  # room for two columns of long legend entries
    fig = new_figure(width, 4.2 + 0.22 * len(curves))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    _loss_panel(axes[0], curves, palette)
    axes[0].set_title("training loss")
    has_target = False
    if classification:
        has_target = _accuracy_panel(axes[1], curves, palette)
        axes[1].set_title("held-out accuracy")
    for ax in axes:
        ax.set_xlabel("step (updates done)")
        depth_axis(ax)  # integer ticks
    handles = [Line2D([], [], color=palette.color(c.scheme), lw=1.8, label=c.label) for c in curves]
    handles += _BAND_HANDLES
    if any(c.diverged for c in curves):
        handles.append(DIVERGED_HANDLE)
    if has_target:
        handles.append(Line2D([], [], color="0.25", ls=":", lw=1, label="target accuracy"))
    fig.suptitle(f"Training: {model}", fontweight="bold")
    legend_below(fig, handles, width_in=5.2)  # two entries a row: the labels are long
    return fig


# ------------------------------------------------------------------------------ 2. steps


def _jitter(n: int) -> np.ndarray:
    """Fixed horizontal offsets of ``n`` points around a category (no randomness)."""
    return np.zeros(1) if n == 1 else np.linspace(-0.18, 0.18, n)


def _steps_panel(ax, points: Sequence[TrainPoint], schemes: Sequence[str], palette) -> None:
    present = [s for s in schemes if any(p.scheme == s for p in points)]
    top = max(p.steps for p in points) * 1.08
    for x, scheme in enumerate(present):
        mine = [p for p in points if p.scheme == scheme]
        color = palette.color(scheme)
        for dx, p in zip(_jitter(len(mine)), mine, strict=True):
            y = top if p.steps_to_target is None else p.steps_to_target
            if p.diverged_at is not None:
                ax.plot([x + dx], [y], ls="none", marker="x", color=color, markersize=9, mew=2)
            else:
                filled = color if p.reached else "none"
                ax.plot([x + dx], [y], ls="none", marker="o", color=color, mfc=filled, ms=7)
        med = median_steps(mine)
        if med is not None:
            ax.plot([x - 0.3, x + 0.3], [min(med, top)] * 2, color="0.1", lw=2.2)
    ax.axhline(top, color="0.5", ls="--", lw=1)
    ax.text(-0.45, top, "not reached", va="bottom", ha="left", fontsize=8, color="0.35")
    ax.set_xticks(range(len(present)), present, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(present) - 0.4)
    ax.set_ylim(0, top * 1.07)


def steps_figure(
    models: Sequence[str], points: Sequence[TrainPoint], schemes: Sequence[str], palette: Palette
) -> Figure:
    """Steps to the target accuracy per scheme: a point per seed, the median as a bar."""
    with_target = [p for p in points if p.target is not None]
    present = [m for m in models if any(p.model == m for p in with_target)]
    width = min(3.6 * len(present) + 0.8, 17)
    fig = new_figure(width, 4.2)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, model in zip(axes, present, strict=True):
        mine = [p for p in with_target if p.model == model]
        _steps_panel(ax, mine, schemes, palette)
        targets = sorted({p.target for p in mine})
        ax.set_title(f"{model}\n(accuracy ≥ {', '.join(f'{t:g}' for t in targets)})")
    axes[0].set_ylabel("steps to the target accuracy")
    handles = [
        Line2D([], [], ls="none", marker="o", color="0.2", ms=7, label="one seed"),
        Line2D([], [], color="0.1", lw=2.2, label="median over seeds"),
        NOT_REACHED_HANDLE,
        DIVERGED_POINT,
    ]
    fig.suptitle("Steps to the target accuracy", fontweight="bold")
    legend_below(fig, handles, width_in=width)
    return fig


# ------------------------------------------------------------------------------ 4. checkpoints


def _median_sigma(curve: Curve) -> np.ndarray:
    return np.array(
        [np.nan if s is None else weighted_quantiles(s[0], s[1], (0.5,))[0] for s in curve.sigma]
    )


def checkpoint_figure(
    model: str,
    by_scheme: dict[str, dict[int, Curve]],
    schemes: Sequence[str],
    palette: Palette,
) -> Figure:
    """The median σ (or, where no singular values were kept, m1) against depth at each
    checkpoint step, one panel per scheme, one line per step."""
    present = [s for s in schemes if s in by_scheme]
    steps = sorted({step for curves in by_scheme.values() for step in curves})
    use_sigma = all(
        any(x is not None for x in c.sigma)
        for curves in by_scheme.values()
        for c in curves.values()
    )
    values = {
        (scheme, step): _median_sigma(c) if use_sigma else c.median("m1")
        for scheme, curves in by_scheme.items()
        for step, c in curves.items()
    }
    axis = LogAxis(floor=1e-12)
    axis.add(*values.values(), np.array([1.0]))
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, max(len(steps), 2)))
    nrows, ncols = grid_shape(len(present), 4)
    width = 3.0 * ncols + 0.6
    fig = new_figure(width, 2.6 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for ax, scheme in zip(axes.flat, present, strict=False):
        ax.set_title(scheme, color=palette.color(scheme))
        ax.axhline(1.0, color="0.25", ls=":", lw=1)
        for k, step in enumerate(steps):
            c = by_scheme[scheme].get(step)
            if c is not None:
                marker = "o" if len(c.depth) < 8 else None
                axis.draw(
                    ax, c.depth, values[(scheme, step)], None, None, color=colors[k], marker=marker
                )
        depth_axis(ax)
    for ax in axes.flat[len(present) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("depth l (tap index)")
    what = "median singular value σ of ∂h_l/∂x" if use_sigma else "m1 = mean σ²"
    for ax in axes[:, 0]:
        ax.set_ylabel(what)
    fig.suptitle(f"Spectra during training: {model}", fontweight="bold")
    handles = [
        Line2D([], [], color=colors[k], lw=1.8, label=f"step {step}")
        for k, step in enumerate(steps)
    ]
    handles.append(Line2D([], [], color="0.25", ls=":", lw=1, label="σ = 1 (isometry)"))
    legend_below(fig, handles, width_in=width)
    return fig
