"""The figures of analyses/conv_stem.py: the rank fraction at a plain ConvNet's last tap against
depth, across a ResNet's taps, and at the stem against its width."""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
import seaborn as sns

from isokit.report import style

#: Colour and line style per variant; the earlier ones are drawn wider so that coincident lines
#: (every full-rank scheme at 1) stay visible.
VARIANTS = (
    "IDInit patch, truncate",
    "IDInit patch, tile",
    "IDInit channel, truncate",
    "IDInit channel, tile",
    "IDInit channel",
    "delta-orthogonal",
    "Kaiming normal",
)
_STYLE = {
    "IDInit patch, truncate": (0, "-", "o"),
    "IDInit patch, tile": (1, "-", "s"),
    "IDInit channel, truncate": (2, "--", "^"),
    "IDInit channel, tile": (4, ":", "v"),
    "IDInit channel": (2, "--", "^"),
    "delta-orthogonal": (3, "-.", "D"),
    "Kaiming normal": (7, ":", "x"),
}


def _line(variant: str) -> dict[str, Any]:
    color, ls, marker = _STYLE[variant]
    width = 4.0 - 0.45 * VARIANTS.index(variant)
    return {
        "color": sns.color_palette("colorblind")[color],
        "ls": ls,
        "marker": marker,
        "lw": width,
        "ms": 4 + width,
        "label": variant,
    }


def _mean_by(rows, key: str, value) -> dict[str, tuple[list, list]]:
    """variant → (sorted ``key`` values, mean of ``value(row)`` over seeds)."""
    acc: dict[str, dict[Any, list[float]]] = {}
    for r in rows:
        acc.setdefault(r["variant"], {}).setdefault(r[key], []).append(value(r))
    return {
        v: (sorted(d), [float(np.mean(d[x])) for x in sorted(d)])
        for v, d in sorted(acc.items(), key=lambda kv: VARIANTS.index(kv[0]))
    }


def convnet_figure(run, rows: list[dict[str, Any]]):
    """Rank fraction of ∂h_L/∂x at the last conv tap of a plain ConvNet against its depth."""
    activations = sorted({r["activation"] for r in rows})
    with matplotlib.rc_context(style.style()):
        width = max(7.5, 5.5 * len(activations))
        fig = run.new_figure(width, 5.2)
        axes = np.atleast_1d(fig.subplots(1, len(activations), sharey=True))
        for ax, act in zip(axes, activations, strict=True):
            sub = [r for r in rows if r["activation"] == act]
            for variant, (x, y) in _mean_by(sub, "depth", lambda r: r["rank_fraction"][-1]).items():
                ax.plot(x, y, **_line(variant))
            ax.axhline(1 / 3, color="0.4", lw=0.8, ls="--")
            ax.text(x[0], 1 / 3, " one input channel of three", va="bottom", fontsize=8)
            ax.set_xscale("log", base=2)
            ax.set(
                xlabel="depth L (convolutions)",
                ylabel="rank fraction of ∂h_L/∂x (1 = full rank)",
                ylim=(-0.02, 1.05),
            )
            ax.set_title(f"plain ConvNet ({act}): rank at the last tap")
        style.legend_below(fig, axes[0].get_legend_handles_labels()[0], width_in=width)
        fig.suptitle("Plain ConvNet at initialization, Gaussian inputs")
    return fig


def resnet_figure(run, rows: list[dict[str, Any]]):
    """Rank fraction of ∂h_l/∂x at every tap of each ResNet depth, per variant."""
    depths = sorted({r["depth"] for r in rows})
    with matplotlib.rc_context(style.style()):
        width = max(8.0, 6.5 * len(depths))
        fig = run.new_figure(width, 5.6)
        axes = np.atleast_1d(fig.subplots(1, len(depths), sharey=True))
        for ax, depth in zip(axes, depths, strict=True):
            sub = [r for r in rows if r["depth"] == depth]
            taps = sub[0]["taps"]
            acc: dict[str, list] = {}
            for r in sub:
                acc.setdefault(r["variant"], []).append(r["rank_fraction"])
            for variant in sorted(acc, key=VARIANTS.index):
                y = np.mean(acc[variant], axis=0)
                ax.plot(np.arange(len(taps)), y, **_line(variant))
            step = max(1, len(taps) // 8)
            ticks = sorted(set(range(0, len(taps), step)) | {len(taps) - 1})
            ax.set_xticks(ticks, [taps[i] for i in ticks], rotation=45, ha="right", fontsize=8)
            ax.set(
                xlabel="tap (stem, blocks layer{stage}.{i}, fc)",
                ylabel="rank fraction of ∂h_l/∂x (1 = full rank)",
                ylim=(-0.02, 1.05),
            )
            ax.set_title(f"ResNet-{depth}, no normalization")
        style.legend_below(fig, axes[0].get_legend_handles_labels()[0], width_in=width)
        fig.suptitle("Rank across a ResNet's taps at initialization, Gaussian inputs")
    return fig


def stem_figure(run, rows: list[dict[str, Any]], fan_in: int):
    """Rank fraction of the stem convolution's Jacobian against the stem's width."""
    with matplotlib.rc_context(style.style()):
        fig = run.new_figure(8.5, 5.6)
        ax = fig.subplots()
        for variant, (x, y) in _mean_by(rows, "width", lambda r: r["rank_fraction_conv"]).items():
            ax.plot(x, y, **_line(variant))
        trunc = [r for r in rows if r["variant"] == "IDInit patch, truncate"]
        ax.plot(
            [r["width"] for r in trunc],
            [r["read_fraction"] for r in trunc],
            color="k",
            ls="none",
            marker="+",
            ms=12,
            label="IDInit patch, truncate: share of input coordinates its weights read",
        )
        ax.axvline(fan_in, color="0.4", lw=0.8, ls="--")
        ax.text(fan_in, 0.05, " width 27 = 3 channels × 9 taps", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set(
            xlabel="stem width C (output channels of the 3 → C convolution)",
            ylabel="rank fraction of ∂(stem conv)/∂x (1 = sees all of the input)",
            ylim=(-0.02, 1.05),
            title="How much of a 3-channel image the stem sees at initialization",
        )
        style.legend_below(fig, ax.get_legend_handles_labels()[0], width_in=8.5)
    return fig
