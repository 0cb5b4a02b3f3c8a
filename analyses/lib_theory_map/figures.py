"""The figures of ``analyses/theory_map.py``: the accuracy map with ξ_c, the boundary against
ξ_c, and the agreement of "depth ≤ k·ξ_c trains" for every multiple k."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.colors import Normalize


def _edges(values: np.ndarray) -> np.ndarray:
    if len(values) == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    mid = (values[1:] + values[:-1]) / 2
    first, last = values[0] - (mid[0] - values[0]), values[-1] + (values[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def accuracy_map(fig, m: dict[str, Any], curve: dict[str, list[float]], title: str) -> None:
    """Heatmap of the median final accuracy over log₂ depth × σ_w², with the curves
    depth = ξ_c and depth = 6·ξ_c and each row's measured boundary."""
    ax = fig.add_subplot(1, 1, 1)
    depths = np.array(m["depths"], float)
    sw2 = np.array(m["sigma_w2"], float)
    acc = np.array(m["accuracy"], float)
    x, y = np.log2(depths), np.arange(len(sw2), dtype=float)
    mesh = ax.pcolormesh(
        _edges(x), _edges(y), acc, cmap="viridis", norm=Normalize(0.1, 0.9), shading="flat"
    )
    for i in range(len(sw2)):
        for j in range(len(depths)):
            v = acc[i, j]
            ax.text(
                x[j],
                y[i],
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v < 0.5 else "black",
            )
    # ξ_c along σ_w² (a fine curve, placed between the rows by interpolation in σ_w²).
    ys = np.interp(curve["sigma_w2"], sw2, y)
    for k, style, label in ((1, "-", "depth = ξ_c"), (6, "--", "depth = 6·ξ_c")):
        xs = np.log2(np.maximum(k * np.array(curve["xi_c"], float), 1e-3))
        ax.plot(np.clip(xs, x[0] - 1, x[-1] + 1), ys, style, color="tab:red", lw=2, label=label)
    bx = [math.log2(b) for b in m["boundary"] if b is not None]
    by = [y[i] for i, b in enumerate(m["boundary"]) if b is not None]
    ax.plot(bx, by, "D", color="white", mec="black", ms=7, label="measured boundary")
    ax.set_xlim(_edges(x)[0], _edges(x)[-1])
    ax.set_ylim(_edges(y)[0], _edges(y)[-1])
    ax.set_xticks(x, [str(int(d)) for d in depths])
    ax.set_yticks(y, [f"{s:.3g}" for s in sw2])
    ax.set_xlabel("depth L (hidden layers, log₂ scale)")
    ax.set_ylabel("σ_w² (weight variance × fan-in)")
    ax.set_title(title)
    fig.colorbar(mesh, ax=ax, label="final held-out accuracy (median over seeds)")
    # Below the map, so that no cell's number is hidden.
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)


def boundary_figure(fig, m: dict[str, Any], k_best: float, title: str) -> None:
    """The measured boundary depth of each row (the bar spans the last trained and the first
    failed depth) against ξ_c, log–log, with the lines depth = ξ_c, 6·ξ_c and k*·ξ_c."""
    ax = fig.add_subplot(1, 1, 1)
    rows = [
        (xi, r["last_ok"], r["first_fail"], r["boundary"], s)
        for xi, r, s in zip(m["xi_c"], m["rows"], m["sigma_w2"], strict=True)
        if r["boundary"] is not None and math.isfinite(xi)
    ]
    for xi, lo, hi, b, s in rows:
        ax.errorbar([xi], [b], yerr=[[b - lo], [hi - b]], fmt="o", color="tab:blue", capsize=3)
        ax.annotate(f"σ_w²={s:.3g}", (xi, b), textcoords="offset points", xytext=(5, 5), fontsize=7)
    finite = [xi for xi in m["xi_c"] if math.isfinite(xi)]
    lo, hi = min(finite + [1.0]) / 2, max(finite + [2.0]) * 2
    line = np.geomspace(lo, hi, 50)
    ax.plot(line, line, "-", color="grey", label="depth = ξ_c")
    ax.plot(line, 6 * line, "--", color="tab:red", label="depth = 6·ξ_c (Schoenholz et al.)")
    ax.plot(line, k_best * line, ":", color="black", label=f"depth = {k_best:.3g}·ξ_c (best fit)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("correlation depth scale ξ_c (layers, theory)")
    ax.set_ylabel("measured boundary depth (layers)")
    ax.set_title(title)
    ax.legend(fontsize=8)


def agreement_figure(fig, ks: np.ndarray, scores: np.ndarray, band, title: str) -> None:
    """The fraction of cells where "depth ≤ k·ξ_c trains" is right, against k."""
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(ks, scores, "-", color="tab:blue", label="agreement of depth ≤ k·ξ_c with training")
    ax.axvline(6, ls="--", color="tab:red", label="k = 6 (Schoenholz et al.)")
    ax.axvspan(band[0], band[1], color="tab:blue", alpha=0.15, label="best multiples")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("multiple k of ξ_c")
    ax.set_ylabel("fraction of grid cells predicted right")
    ax.set_title(title)
    ax.legend(fontsize=8)
