"""The figures of ``analyses/hf_models.py``: spectra per block, the ViT's training curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FLOOR = 1e-16
MARKERS = "osD^vx+*<>"  # a log axis cannot show 0: values below are drawn at the floor


def _colours(names: Sequence[str]) -> dict[str, Any]:
    cmap = __import__("matplotlib").colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def spectra_figure(fig, spec, stat: str, random, what: str, hidden: int) -> None:
    """One panel per model: ``stat`` at every block, one line per scheme; schemes that did not
    apply are named in the panel."""
    models = list(spec)
    names = sorted({s for m in spec.values() for s in m}, key=lambda s: (s != "idinit", s))
    colour = _colours(names)
    axes = fig.subplots(1, len(models), sharey=True)
    for ax, model in zip(np.atleast_1d(axes), models, strict=True):
        skipped = []
        for name in names:
            e = spec[model].get(name)
            if e is None or stat not in e:
                if e is not None:
                    skipped.append(name)
                continue
            y = np.maximum(np.array(e[stat], float), FLOOR)
            x = np.arange(1, len(y) + 1)
            lw, ls = (3.0, "-") if name == "idinit" else (1.5, "--" if name in random else "-")
            marker = MARKERS[names.index(name) % len(MARKERS)]
            ax.plot(
                x, y, ls, marker=marker, ms=5, lw=lw, color=colour[name], label=name, mfc="none"
            )
        ax.set_xticks(x)
        ax.set_yscale("log")
        ax.set_xlabel("block (Jacobian from the embeddings)")
        ax.set_title(f"{model} (d = {hidden})")
        if skipped:
            ax.text(
                0.02,
                0.02,
                "not applicable: " + ", ".join(skipped),
                transform=ax.transAxes,
                fontsize=7,
            )
    first = np.atleast_1d(axes)[0]
    first.set_ylabel(what)
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(
        f"HF models at initialization: {stat} per block (dashed: random weights; an exact 0 "
        f"is drawn at {FLOOR:g})"
    )


def training_figure(fig, trained: dict[str, Any], settings: dict[str, Any]) -> None:
    """Held-out accuracy against step for every scheme (median over seeds), the learning rate
    and effective step in the legend."""
    ax = fig.add_subplot(1, 1, 1)
    names = sorted(trained, key=lambda s: (not s.startswith("idinit"), s))
    colour = _colours(names)
    for name in names:
        e = trained[name]
        if not e.get("seeds"):
            continue
        steps = np.array(e["seeds"][0]["eval_step"])
        curves = [s["eval_accuracy"] for s in e["seeds"] if len(s["eval_accuracy"]) == len(steps)]
        y = np.median(np.array(curves, float), axis=0)
        lr, eff = e["seeds"][0]["lr"], e["seeds"][0]["effective_lr"]
        lw = 3.0 if name.startswith("idinit") else 1.5
        ax.plot(
            steps,
            y,
            marker="o",
            ms=3,
            lw=lw,
            color=colour[name],
            label=f"{name}: lr {lr:g}, η_eff {eff:g}",
        )
    ax.axhline(0.1, color="grey", lw=1, ls=":", label="chance (0.1)")
    ax.set_xlabel("training step (Adam, batch 128)")
    ax.set_ylabel("held-out accuracy (median over seeds)")
    ax.set_ylim(0, 1)
    ax.set_title(
        f"HF ViT ({settings['vit_layers']} blocks, d = {settings['hidden']}) on "
        f"Fashion-MNIST, {settings['steps']} steps"
    )
    ax.legend(fontsize=7, loc="lower right")
