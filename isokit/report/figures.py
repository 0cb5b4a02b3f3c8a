"""The report's figures, one function per figure kind; styling lives in :mod:`.style`.

1. singular-value quantile bands against depth, one panel per scheme (:func:`spectrum_figure`);
2. and 3. statistics against depth, every scheme on one axis per model (:func:`stats_figure`),
   with theory lines where :func:`isokit.theory.overlay` has one;
4. histograms of σ at the first, middle and last tap (:mod:`.histograms`);
5. the forward signal q_l and c_l (:func:`signal_figure`).

The training figures (results with training runs) are in :mod:`.training_figures` and
:mod:`.training_scatter`.

Each returns a :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot); render it inside
``matplotlib.rc_context(style())``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from isokit.report.series import Curve, SignalCurve, weighted_quantiles
from isokit.report.style import (
    EDGE_HANDLES,
    THEORY_HANDLE,
    LogAxis,
    Palette,
    depth_axis,
    grid_shape,
    legend_below,
    log_ticks,
    new_figure,
    no_finite_values,
)

__all__ = [
    "signal_figure",
    "spectrum_figure",
    "stats_figure",
]

# (model, scheme) -> isokit.theory.Overlay (depth, the predicted lines, Overlay.statistic, law)
Overlays = dict


# ------------------------------------------------------------------------------ 1. spectra


def spectrum_figure(
    model: str,
    curves: Sequence[Curve],
    schemes: Sequence[str],
    not_applicable: dict[str, str],
    palette: Palette,
) -> Figure:
    """Quantile bands of σ against depth, one panel per scheme, shared log axis."""
    by_scheme = {c.scheme: c for c in curves}
    nrows, ncols = grid_shape(len(schemes), 4)
    width = 2.85 * ncols + 0.6
    fig = new_figure(width, 2.35 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    axis = LogAxis()
    quant = {}
    for c in curves:
        rows = []
        for samples in c.sigma:
            if samples is None:
                rows.append(np.full(5, np.nan))
            else:
                rows.append(
                    weighted_quantiles(samples[0], samples[1], (0.05, 0.25, 0.5, 0.75, 0.95))
                )
        quant[c.scheme] = np.array(rows)
        axis.add(quant[c.scheme])
    axis.add(np.array([1.0]))
    bottom, top = axis.limits()
    for ax, scheme in zip(axes.flat, schemes, strict=False):
        ax.set_title(scheme, color=palette.color(scheme))
        ax.axhline(1.0, color="0.25", ls=":", lw=1)
        c = by_scheme.get(scheme)
        if c is None or np.all(np.isnan(quant.get(scheme, np.array([np.nan])))):
            why = "not applicable" if scheme in not_applicable else "no spectrum measured"
            ax.text(
                0.5,
                0.5,
                why,
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="0.45",
                fontsize=10,
                style="italic",
            )
            ax.set_yscale("log")
            ax.set_ylim(bottom, top)
            log_ticks(ax, bottom, top)
            continue
        # Matrix-free profiles have densities only at some taps: join the ones measured.
        seen = ~np.isnan(quant[scheme][:, 2])
        q, depth = np.clip(quant[scheme][seen], bottom, top), c.depth[seen]
        color = palette.color(scheme)
        ax.fill_between(depth, q[:, 0], q[:, 4], color=color, alpha=0.18, lw=0)
        ax.fill_between(depth, q[:, 1], q[:, 3], color=color, alpha=0.38, lw=0)
        ax.plot(
            depth,
            q[:, 2],
            color=color,
            lw=1.8,
            marker="o" if len(depth) < 8 else None,
            markersize=3,
        )
        zero = quant[scheme][:, 0] < bottom * 10**0.3
        if zero.any():
            ax.plot(
                c.depth[zero],
                np.full(zero.sum(), bottom),
                "v",
                color=color,
                markersize=6,
                clip_on=False,
            )
        ax.set_yscale("log")
        ax.set_ylim(bottom, top)
        log_ticks(ax, bottom, top)
    for ax in axes.flat[len(schemes) :]:
        ax.set_visible(False)
    for ax in axes.flat:
        depth_axis(ax)
    for ax in axes[-1]:
        ax.set_xlabel("depth l (tap index)")
    for ax in axes[:, 0]:
        ax.set_ylabel("singular value σ of ∂h_l/∂x")
    fig.suptitle(f"Singular values against depth: {model}", fontweight="bold")
    band = [
        Line2D([], [], color="0.3", lw=1.8, label="median"),
        Line2D([], [], color="0.3", lw=7, alpha=0.38, label="25–75 %"),
        Line2D([], [], color="0.3", lw=7, alpha=0.18, label="5–95 %"),
        Line2D([], [], color="0.25", ls=":", lw=1, label="σ = 1 (isometry)"),
        Line2D(
            [],
            [],
            ls="none",
            marker="v",
            color="0.3",
            markersize=7,
            label="σ = 0 (rank-deficient), drawn at the bottom edge",
        ),
    ]
    legend_below(fig, band, width_in=width)
    return fig


# ------------------------------------------------------------------------------ 2, 3. vs depth


#: Statistics that are fractions in [0, 1]: drawn on a linear axis.
FRACTION_STATS = frozenset({"rank_fraction", "zero_fraction", "near", "near_rel"})


def theory_values(overlay, stat: str) -> np.ndarray | None:
    """The theory line an overlay gives for the measured statistic ``stat``, or ``None``.

    An overlay predicts some statistics under its own names; ``overlay.statistic`` (where it has
    one) maps a predicted name to the measured statistic it is to be compared with (e.g. a
    bulk prediction of ``m1`` to ``m1_bulk``), so a line is only ever drawn beside the
    statistic it predicts. The theory's atom at zero (``overlay.zero_fraction``) is drawn on the
    rank-fraction panel as ``1 − zero atom``.
    """
    if overlay is None:
        return None
    compares = dict(getattr(overlay, "statistic", None) or {})
    for predicted in ("m1", "var", "var_raw", "zero_fraction"):
        values = getattr(overlay, predicted, None)
        if values is not None and compares.get(predicted, predicted) == stat:
            return np.asarray(values, dtype=float)
    zero = getattr(overlay, "zero_fraction", None)
    if stat == "rank_fraction" and zero is not None:
        return 1.0 - np.asarray(zero, dtype=float)
    return None


def _fraction_panel(ax, mc: Sequence[Curve], stat: str, theory, palette: Palette) -> None:
    """A statistic in [0, 1] on a linear axis (a log axis would hide a rank fraction of 0)."""
    for c in mc:
        lo, hi = c.band(stat)
        color = palette.color(c.scheme)
        seen = ~np.isnan(c.median(stat))
        ax.plot(
            c.depth[seen],
            c.median(stat)[seen],
            color=color,
            marker=palette.marker(c.scheme),
            markersize=3.5,
            lw=1.8,
            markevery=max(1, int(seen.sum()) // 12),
        )
        ok = ~(np.isnan(lo) | np.isnan(hi))
        ax.fill_between(c.depth[ok], lo[ok], hi[ok], color=color, alpha=0.15, lw=0)
    for scheme, depth, vals in theory:
        ax.plot(depth, vals, color=palette.color(scheme), ls="--", lw=1.4)
    ax.set_ylim(-0.04, 1.04)


def _log_panel(ax, mc: Sequence[Curve], stat: str, theory, palette: Palette) -> bool:
    """A statistic on a log axis; returns whether some median is +inf (drawn as ▲)."""
    axis = LogAxis(floor=1e-12)
    has_inf = False
    for c in mc:
        axis.add(c.median(stat), *c.band(stat))
    for _, _, vals in theory:
        axis.add(vals)
    for c in mc:
        med = c.median(stat)
        has_inf |= bool(np.isposinf(med).any())
        color, marker = palette.color(c.scheme), palette.marker(c.scheme)
        axis.draw(ax, c.depth, med, *c.band(stat), color=color, marker=marker)
    for scheme, depth, vals in theory:
        color = palette.color(scheme)
        axis.draw(ax, depth, vals, None, None, color=color, marker=None, ls="--", lw=1.4)
    no_finite_values(ax, axis)
    return has_inf


def _no_profile(ax) -> None:
    ax.text(
        0.5, 0.5, "no profile", transform=ax.transAxes, ha="center", color="0.45", style="italic"
    )


def stats_figure(
    models: Sequence[str],
    curves: Sequence[Curve],
    rows: Sequence[tuple],
    palette: Palette,
    *,
    title: str,
    overlays: Overlays | None = None,
    zero_atoms: dict | None = None,
) -> Figure:
    """Rows of statistics (``(stat, ylabel)``) against depth, one column per model.

    Fractions (:data:`FRACTION_STATS`) use a linear axis, every other statistic a log axis.
    Theory lines come from ``overlays`` and ``zero_atoms`` (per ``(model, scheme)``:
    :class:`isokit.theory.Overlay`, :class:`isokit.theory.ZeroAtomLine`), each drawn on the
    panel of the statistic it predicts (:func:`theory_values`).
    """
    ncols = len(models)
    width = min(3.8 * ncols + 0.8, 17)
    fig = new_figure(width, 2.7 * len(rows) + 1.1)
    axes = fig.subplots(len(rows), ncols, sharex="col", squeeze=False)
    present: list[str] = []
    has_theory = has_inf = False
    for j, model in enumerate(models):
        mc = [c for c in curves if c.model == model]
        present += [c.scheme for c in mc]
        for i, (stat, ylabel) in enumerate(rows):
            ax = axes[i, j]
            theory = []
            for c in mc:
                for source in (overlays or {}, zero_atoms or {}):
                    line = source.get((model, c.scheme))
                    vals = theory_values(line, stat)
                    if vals is not None:  # the first source with a line for it: one line
                        theory.append((c.scheme, np.asarray(line.depth), vals))
                        break
            has_theory |= bool(theory)
            if not mc:
                _no_profile(ax)
            elif stat in FRACTION_STATS:
                _fraction_panel(ax, mc, stat, theory, palette)
            else:
                has_inf |= _log_panel(ax, mc, stat, theory, palette)
            if i == 0:
                ax.set_title(model)
            if j == 0:
                ax.set_ylabel(ylabel)
            if i == len(rows) - 1:
                ax.set_xlabel("depth l (tap index)")
            depth_axis(ax)
    handles = palette.handles(present)
    if has_theory:
        handles.append(THEORY_HANDLE)
    if has_inf:
        handles.append(EDGE_HANDLES[0])
    handles.append(EDGE_HANDLES[1])
    fig.suptitle(title, fontweight="bold")
    legend_below(fig, handles, width_in=width)
    return fig


# ------------------------------------------------------------------------------ 5. signal


def signal_figure(
    models: Sequence[str], signals: Sequence[SignalCurve], palette: Palette
) -> Figure:
    """Forward signal: q_l (log) and c_l against depth, one column per model."""
    ncols = len(models)
    width = min(3.8 * ncols + 0.8, 17)
    fig = new_figure(width, 6.5)
    axes = fig.subplots(2, ncols, sharex="col", squeeze=False)
    present: list[str] = []
    for j, model in enumerate(models):
        ms = [s for s in signals if s.model == model]
        axis = LogAxis(floor=1e-30)
        for s in ms:
            axis.add(s.median("q"), *s.band("q"))
        for s in ms:
            color, marker = palette.color(s.scheme), palette.marker(s.scheme)
            axis.draw(axes[0, j], s.depth, s.median("q"), *s.band("q"), color=color, marker=marker)
            axes[1, j].plot(
                s.depth,
                s.median("cos"),
                color=color,
                marker=marker,
                markersize=3.5,
                lw=1.8,
                markevery=max(1, len(s.depth) // 12),
            )
            present.append(s.scheme)
        lowest = min((np.nanmin(s.cos) for s in ms if np.isfinite(s.cos).any()), default=0.0)
        axes[1, j].set_ylim(-1.05 if lowest < -0.05 else -0.05, 1.05)
        axes[0, j].set_title(model)
        axes[1, j].set_xlabel("depth l (tap index)")
        depth_axis(axes[0, j])
        depth_axis(axes[1, j])
    axes[0, 0].set_ylabel("q_l = mean h² per unit")
    axes[1, 0].set_ylabel("c_l = mean cosine between inputs")
    fig.suptitle("Forward signal: activation size and input correlation", fontweight="bold")
    handles = palette.handles(present) + [EDGE_HANDLES[1]]
    legend_below(fig, handles, width_in=width)
    return fig
