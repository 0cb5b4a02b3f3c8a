"""Figures of the training analyses, drawn on figures made by ``Analysis.new_figure``.

Every curve figure puts the step size (η, β and the effective step η/(1−β)) in its legend;
diverged runs are drawn as × at the step they diverged, runs that never reached the target on a
"not reached" line above the budget, infinite isometry statistics (a zero Jacobian) at the right
edge of the axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.lines import Line2D

from isokit.report.style import Palette, legend_below
from lib_train.runs import CHANCE, Run, by_key

__all__ = ["accuracy_curves", "forest", "isometry_scatter", "loss_curves", "steps_strip"]

ISO_LABELS = {
    "gap_nonzero": "isometry gap of the non-zero σ at the last tap, at init",
    "var": "scale-free variance m2/m1² − 1 at the last tap, at init",
    "rank_fraction": "rank fraction at the last tap, at init",
}


def _step_handle(runs: Sequence[Run]) -> list[Line2D]:
    labels = sorted({r.lr_label for r in runs})
    return [Line2D([], [], ls="none", label=text) for text in labels]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """A running mean over ``window`` logged steps, NaN-aware (a diverged tail stays NaN)."""
    if window <= 1:
        return values
    ok = np.isfinite(values)
    kernel = np.ones(window)
    num = np.convolve(np.where(ok, values, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    return np.where(ok & (den > 0), num / np.maximum(den, 1), np.nan)


def _median_curve(runs: Sequence[Run], xs: str, ys: str) -> tuple[np.ndarray, np.ndarray]:
    grid = np.unique(np.concatenate([getattr(r, xs) for r in runs]))
    table = np.full((grid.size, len(runs)), np.nan)
    for j, r in enumerate(runs):
        table[np.searchsorted(grid, getattr(r, xs)), j] = getattr(r, ys)
    with np.errstate(all="ignore"):
        kept = table[:, [j for j, r in enumerate(runs) if r.diverged_at is None]]
        use = kept if kept.shape[1] else table
        med = np.full(grid.size, np.nan)
        rows = np.isfinite(use).any(axis=1)
        med[rows] = np.nanmedian(use[rows], axis=1)
    return grid, med


def _panels(fig, n: int):
    return fig.subplots(1, n, squeeze=False)[0]


def _curves(fig, groups, palette, *, xs, ys, ylabel, log, smooth, title, target=None):
    """One panel per model of ``groups`` {model: runs}: the median over seeds per scheme."""
    axes = _panels(fig, len(groups))
    everything = [r for runs in groups.values() for r in runs]
    for ax, (model, runs) in zip(axes, groups.items(), strict=True):
        for scheme, mine in by_key(runs, lambda r: r.scheme).items():
            grid, med = _median_curve(mine, xs, ys)
            window = max(1, grid.size // 40) if smooth else 1
            ax.plot(grid, _smooth(med, window), color=palette.color(scheme), lw=1.6)
            for r in mine:
                if r.diverged_at is not None:
                    last = [v for v in getattr(r, ys) if math.isfinite(v)]
                    y = last[-1] if last else (CHANCE if not log else 1.0)
                    ax.plot([r.diverged_at], [y], "x", color=palette.color(scheme), ms=9, mew=2)
        if target is not None:
            ax.axhline(target, color="0.3", ls=":", lw=1.2)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{model} ({len(runs)} runs; median over seeds)", fontsize=10)
        ax.set_xlabel("training step (updates)")
        ax.set_ylabel(ylabel)
    handles = palette.handles([r.scheme for r in everything])
    if any(r.diverged_at is not None for r in everything):
        handles.append(Line2D([], [], ls="none", marker="x", color="0.3", mew=2, label="diverged"))
    if target is not None:
        handles.append(Line2D([], [], color="0.3", ls=":", label=f"target {target:g}"))
    fig.suptitle(title, fontweight="bold")
    legend_below(fig, handles + _step_handle(everything), width_in=fig.get_figwidth())


def loss_curves(fig, groups: dict[str, list[Run]], palette: Palette, title: str) -> None:
    """Training loss (cross-entropy of each batch, running mean) against step, per model."""
    _curves(
        fig,
        groups,
        palette,
        xs="step",
        ys="loss",
        log=True,
        smooth=True,
        title=title,
        ylabel="training loss (cross-entropy, nats)",
    )


def accuracy_curves(fig, groups, palette: Palette, title: str, target: float) -> None:
    """Held-out accuracy against step, per model (median over seeds)."""
    _curves(
        fig,
        groups,
        palette,
        xs="eval_step",
        ys="eval_accuracy",
        log=False,
        smooth=False,
        title=title,
        target=target,
        ylabel="held-out accuracy",
    )


def steps_strip(fig, groups: dict[str, list[Run]], palette: Palette, title: str) -> None:
    """Steps to the target per scheme, one point per seed; never reached: on the line above."""
    axes = _panels(fig, len(groups))
    for ax, (model, runs) in zip(axes, groups.items(), strict=True):
        top = max(r.steps for r in runs) * 1.1
        schemes = list(by_key(runs, lambda r: r.scheme))
        for i, scheme in enumerate(schemes):
            mine = [r for r in runs if r.scheme == scheme]
            for k, r in enumerate(mine):
                x = i + (k - (len(mine) - 1) / 2) * 0.12
                y = top if r.steps_to_target is None else r.steps_to_target
                marker = "x" if r.diverged_at is not None else "o"
                face = "none" if r.steps_to_target is None and marker == "o" else None
                ax.plot([x], [y], marker, color=palette.color(scheme), ms=7, mew=2, mfc=face)
        ax.axhline(top, color="0.5", ls="--", lw=1)
        ax.text(-0.4, top, "not reached", va="bottom", fontsize=8)
        ax.set_xticks(range(len(schemes)), schemes, rotation=35, ha="right")
        ax.set_ylim(0, top * 1.08)
        ax.set_title(model)
        ax.set_ylabel("steps to the target held-out accuracy")
    handles = [
        Line2D([], [], ls="none", marker="o", color="0.3", label="reached (one seed)"),
        Line2D([], [], ls="none", marker="o", mfc="none", color="0.3", label="never reached"),
        Line2D([], [], ls="none", marker="x", mew=2, color="0.3", label="diverged"),
    ]
    fig.suptitle(title, fontweight="bold")
    legend_below(fig, handles, width_in=fig.get_figwidth())


def _iso_x(values: np.ndarray, *, log: bool) -> tuple[np.ndarray, float | None, float | None]:
    """x positions on a log axis: ``inf`` (zero Jacobian) at a right edge three times the
    largest finite value, 0 (an estimate at or below zero) at a left edge a third of the
    smallest positive one; the two edges (``None`` where unused)."""
    if not log:
        return values, None, None
    positive = values[np.isfinite(values) & (values > 0)]
    hi = positive.max() * 3.0 if positive.size else 1.0
    lo = positive.min() / 3.0 if positive.size else 0.1
    right = hi if np.isinf(values).any() else None
    left = lo if (values <= 0).any() else None
    return np.where(np.isinf(values), hi, np.where(values <= 0, lo, values)), left, right


def isometry_scatter(
    fig,
    groups: dict[str, list[Run]],
    palette: Palette,
    stat: Callable[[str], str],
    correlations: dict[str, dict[str, dict]],
    title: str,
) -> None:
    """Rows: final held-out accuracy, steps to the target; columns: models. x: the model's
    primary isometry statistic ``stat(model)`` at init; each panel names its ρ and interval."""
    axes = fig.subplots(2, len(groups), squeeze=False)
    for j, (model, runs) in enumerate(groups.items()):
        name = stat(model)
        log = name != "rank_fraction"
        xs, left, edge = _iso_x(np.array([r.iso[name] for r in runs]), log=log)
        top = max(r.steps for r in runs) * 1.1
        for i, outcome in enumerate(("accuracy", "steps")):
            ax = axes[i, j]
            for r, x in zip(runs, xs, strict=True):
                y = r.accuracy_outcome if outcome == "accuracy" else min(r.steps_outcome, top)
                marker = "x" if r.diverged_at is not None else palette.marker(r.scheme)
                hollow = outcome == "steps" and r.steps_to_target is None
                ax.plot(
                    [x],
                    [y],
                    marker,
                    color=palette.color(r.scheme),
                    ms=7,
                    mew=1.5,
                    mfc="none" if hollow else None,
                    clip_on=False,
                )
            if log:
                ax.set_xscale("log")
            if edge is not None:
                ax.axvline(edge, color="0.6", lw=0.8, ls="--")
                ax.text(
                    edge,
                    0.02,
                    " ∞ (zero Jacobian)",
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                    rotation=90,
                    va="bottom",
                    in_layout=False,
                )
            if left is not None:
                ax.axvline(left, color="0.6", lw=0.8, ls="--")
                ax.text(
                    left,
                    0.02,
                    " ≤ 0 (estimate)",
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                    rotation=90,
                    va="bottom",
                    in_layout=False,
                )
            c = correlations[model][f"{name}~{outcome}"]
            ax.set_title(
                f"{model}: ρ = {c['rho']:.2f}, 95% CI [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]",
                fontsize=9,
            )
            if outcome == "steps":
                ax.axhline(top, color="0.5", ls="--", lw=1)
                ax.set_ylabel("steps to the target (top line: not reached)")
                ax.set_xlabel(ISO_LABELS[name])
            else:
                ax.set_ylabel(f"final held-out accuracy (diverged: {CHANCE:g})")
    everything = [r for runs in groups.values() for r in runs]
    handles = palette.handles([r.scheme for r in everything])
    handles.append(Line2D([], [], ls="none", marker="x", color="0.3", mew=2, label="diverged"))
    fig.suptitle(title, fontweight="bold")
    legend_below(fig, handles, width_in=fig.get_figwidth())


def forest(fig, rows: list[tuple[str, dict]], title: str, xlabel: str) -> None:
    """One line per ``(label, {"rho" or "mean", "ci"})``: the estimate and its interval."""
    ax = fig.subplots()
    for i, (_label, c) in enumerate(rows):
        value = c.get("rho", c.get("mean"))
        lo, hi = c["ci"]
        if not all(isinstance(v, float) and math.isfinite(v) for v in (value, lo, hi)):
            ax.text(0.0, i, "undefined (an outcome is constant)", va="center", fontsize=8)
            continue
        ax.plot([lo, hi], [i, i], color="0.3", lw=2)
        ax.plot([value], [i], "o", color="C0", ms=7)
    ax.axvline(0.0, color="0.5", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def mean_std(fig, table: dict[str, dict], palette: Palette, title: str) -> None:
    """Per combination: each seed's final accuracy (dots) and the mean ± std (bar)."""
    ax = fig.subplots()
    for i, (name, row) in enumerate(table.items()):
        color = palette.color(name)
        accs = row["final_accuracy"]
        xs = i + (np.arange(len(accs)) - (len(accs) - 1) / 2) * 0.06
        ax.plot(xs, accs, "o", color=color, alpha=0.6, ms=5)
        std = row["std_accuracy"] or 0.0
        ax.errorbar(
            [i + 0.25],
            [row["mean_accuracy"]],
            yerr=[std],
            fmt="s",
            color=color,
            ms=8,
            capsize=5,
            lw=2,
        )
        ax.text(
            i + 0.32,
            row["mean_accuracy"],
            f"{row['mean_accuracy']:.3f} ± {std:.3f}",
            va="center",
            fontsize=8,
        )
    ax.set_xticks(range(len(table)), list(table), rotation=15)
    ax.set_xlim(-0.5, len(table) - 0.1)
    ax.set_ylabel("final held-out accuracy (dots: seeds; square: mean ± std)")
    ax.set_title(title)
