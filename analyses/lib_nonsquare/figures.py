"""The figures of analyses/nonsquare.py: the spectrum at initialization, the rank of θ − I over
training, and the singular values of θ − I at the end of training."""

from __future__ import annotations

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D

from isokit.report import style

#: One colour per (first layer, loosening); the order of nonsquare.FIRSTS × LOOSES.
_LINES = {
    ("eye", "strict"): (0, "-"),
    ("eye", "tau"): (0, "--"),
    ("eye", "all"): (0, ":"),
    ("idi", "strict"): (1, "-"),
    ("idi", "tau"): (2, "-"),
    ("idi", "all"): (3, "-"),
}


def _color(i: int):
    return sns.color_palette("colorblind")[i]


def _label(first: str, loose: str) -> str:
    name = "zero-padded eye_" if first == "eye" else "padded IDI"
    return f"{name}, {'strict' if loose == 'strict' else 'loose ' + loose}"


def init_spectrum(run, spectrum: dict, settings) -> None:
    """Singular values of ∂h/∂x at the first layer's output and at the head, at step 0."""
    d0, dh = settings.in_features, settings.width
    with matplotlib.rc_context(style.style()):
        fig = run.new_figure(10, 4)
        left, right = fig.subplots(1, 2)
        for first, color in (("eye", 0), ("idi", 1)):
            s = spectrum[f"{first}/truncate"]["acts.0"]
            left.plot(
                np.arange(1, len(s) + 1),
                s,
                marker="o",
                color=_color(color),
                label=f"{_label(first, 'strict')} ({dh}×{d0})",
            )
        left.set(
            title=f"first layer output (tap acts.0, {dh}×{d0} Jacobian)",
            xlabel="singular value index i",
            ylabel="singular value σ_i (dimensionless)",
            ylim=(0, None),
        )
        left.legend()
        for (first, contract), (color, ls) in {
            ("eye", "truncate"): (0, "-"),
            ("idi", "truncate"): (1, "--"),
            ("eye", "tile"): (2, "-"),
            ("idi", "tile"): (3, "--"),
        }.items():
            s = spectrum[f"{first}/{contract}"]["head"]
            right.plot(
                np.arange(1, len(s) + 1),
                s,
                marker="os"[first == "idi"],
                ls=ls,
                color=_color(color),
                label=f"{_label(first, 'strict')}, head {contract}",
            )
        right.set(
            title=f"network output (tap head, 10×{d0} Jacobian)",
            xlabel="singular value index i",
            ylabel="singular value σ_i (dimensionless)",
            ylim=(0, None),
        )
        right.legend()
        fig.suptitle(
            f"Jacobian spectrum at initialization, linear network {d0}→{dh}→…→10 "
            "(ReLU only masks it)"
        )
        run.save_figure(fig, "init_spectrum")


def rank_curves(run, summary: dict, settings, effective_lr: float) -> None:
    """Rank at tolerance 1e-3 of θ − I (largest over hidden layers) against the step."""
    d0, dh = settings.in_features, settings.width
    with matplotlib.rc_context(style.style()):
        fig = run.new_figure(11, 7.5)
        axes = fig.subplots(2, 2, sharex=True, sharey=True)
        for row, act in enumerate(("linear", "relu")):
            for col, contract in enumerate(("truncate", "tile")):
                ax = axes[row, col]
                for (first, loose), (color, ls) in _LINES.items():
                    entry = summary[f"{act}/{first}/{loose}/{contract}"]
                    steps = np.asarray(entry["steps"], dtype=float)
                    curves = np.asarray(entry["minus_identity/rank@0.001/curve"], dtype=float)
                    ax.plot(
                        steps,
                        curves.mean(axis=0),
                        color=_color(color),
                        ls=ls,
                        marker="o",
                        markersize=3,
                    )
                    if len(curves) > 1:
                        ax.fill_between(
                            steps,
                            curves.min(axis=0),
                            curves.max(axis=0),
                            color=_color(color),
                            alpha=0.15,
                            lw=0,
                        )
                for level, text in ((d0, f"D_0 = {d0}"), (dh, f"D_h = {dh}")):
                    ax.axhline(level, color="0.4", lw=0.8, ls="-.")
                    ax.text(
                        steps[1] if len(steps) > 1 else 1,
                        level + 0.6,
                        text,
                        fontsize=8,
                        color="0.3",
                    )
                ax.set_xscale("symlog", linthresh=10)
                ax.set(title=f"{act}, head contract={contract}", ylim=(-1, dh + 4))
                if row == 1:
                    ax.set_xlabel("training step (symlog)")
                if col == 0:
                    ax.set_ylabel("rank of θ − I at 1e-3·σ_max")
        handles = [
            Line2D(
                [], [], color=_color(c), ls=ls, marker="o", markersize=3, label=_label(first, loose)
            )
            for (first, loose), (c, ls) in _LINES.items()
        ]
        style.legend_below(fig, handles, width_in=11)
        seeds = len(next(iter(summary.values()))["seeds"])
        fig.suptitle(
            f"Rank of the hidden layers' θ − I during training (largest of {settings.hidden_layers}"
            f" layers; mean, band = min–max over {seeds} seed(s))\nSGD momentum 0.9, "
            f"η = {settings.lr:g}, η/(1−β) = {effective_lr:g}, batch {settings.batch_size}"
        )
        run.save_figure(fig, "rank")


def residual_spectra(run, records: list[dict], settings) -> None:
    """σ_i/σ_max of θ − I at the end of training, middle hidden layer, first seed, truncate."""
    seed = min(r["seed"] for r in records)
    layer = settings.hidden_layers // 2
    with matplotlib.rc_context(style.style()):
        fig = run.new_figure(11, 4.5)
        axes = fig.subplots(1, 2, sharey=True)
        for ax, act in zip(axes, ("linear", "relu"), strict=True):
            for rec in records:
                v = rec["variant"]
                if rec["seed"] != seed or v["activation"] != act or v["contract"] != "truncate":
                    continue
                color, ls = _LINES[(v["first"], v["loose"])]
                s = np.asarray(rec["minus_identity"][-1]["singular_values"][layer])
                s = np.maximum(s / s[0], 1e-18)  # exact zeros drawn at the floor
                ax.semilogy(
                    np.arange(1, len(s) + 1),
                    s,
                    color=_color(color),
                    ls=ls,
                    label=_label(v["first"], v["loose"]),
                )
            for tol in (1e-3, 1e-6):
                ax.axhline(tol, color="0.3", lw=0.9, ls="-.")
                ax.text(1, tol * 1.6, f"tolerance {tol:g}", fontsize=8, color="0.3")
            ax.axvline(settings.in_features + 0.5, color="0.6", lw=0.8)
            ax.set(
                title=f"{act}, hidden layer {layer + 1} of {settings.hidden_layers}",
                xlabel="singular value index i",
                ylim=(1e-18, 3),
            )
        axes[0].set_ylabel("σ_i / σ_max of θ − I (floor 1e-18 = exactly 0)")
        axes[1].legend(fontsize=8)
        fig.suptitle(
            f"Singular values of θ − I after {settings.steps} steps (seed {seed}, head "
            f"truncate); the vertical line is D_0 = {settings.in_features}"
        )
        run.save_figure(fig, "residual_spectrum")
