"""The figures of analyses/dead_weights.py: per start and layer group, the fraction of weight
entries with a zero gradient at step 1, and the fraction that never moved over the first T
steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import seaborn as sns

from isokit.report import style

_TITLES = {
    "zero_grad": "Weights with an exactly zero gradient at step 1",
    "unmoved": "Weights that never moved in the first {steps} steps",
}
_YLABELS = {
    "zero_grad": "fraction of weight entries with ∂L/∂w = 0 at step 1",
    "unmoved": "fraction of weight entries never changed",
}


def group_bars(
    run,
    summary: dict[str, dict[str, dict[str, float]]],
    labels: dict[str, str],
    metric: str,
    groups: Sequence[str],
    train_info: dict[str, Any],
):
    """Grouped bars: one group of bars per start, one bar per layer group (and all weights)."""
    parts = ("all weights", *groups)
    colors = sns.color_palette("colorblind", len(parts))
    keys = list(summary)
    with matplotlib.rc_context(style.style()):
        fig = run.new_figure(10, 5.4)
        ax = fig.subplots()
        width = 0.8 / len(parts)
        x = np.arange(len(keys))
        for i, part in enumerate(parts):
            values = [summary[k][metric][part] for k in keys]
            bars = ax.bar(
                x + (i - (len(parts) - 1) / 2) * width,
                values,
                width,
                color=colors[i],
                label=part,
                edgecolor="k" if part == "all weights" else "none",
            )
            if part == "all weights":
                ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.set_xticks(x, [labels[k] for k in keys], rotation=15, ha="right")
        ax.set(ylim=(0, 1.08), ylabel=_YLABELS[metric])
        ax.set_title(
            f"{_TITLES[metric].format(steps=train_info['steps'])}: ResNet-20, Fashion-MNIST\n"
            f"SGD, momentum 0.9, lr η = {train_info['lr']:g}, effective step "
            f"η/(1−β) = {train_info['effective_lr']:g}, batch {train_info['batch_size']}",
            fontsize=10,
        )
        style.legend_below(fig, ax.get_legend_handles_labels()[0], width_in=10)
    return fig
