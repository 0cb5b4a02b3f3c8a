"""The figures of analyses/momentum_toy.py: the loss curves of every run, and where each run
left the eigendirections of the sample covariance."""

from __future__ import annotations

import matplotlib
import numpy as np
import seaborn as sns

from isokit.report import style


def _colors(cases) -> dict:
    palette = sns.color_palette("colorblind", max(10, len(cases)))
    return {c.name: palette[i % len(palette)] for i, c in enumerate(cases)}


def _legend(case) -> str:
    beta = " β = 0.9," if case.optimizer == "sgd-momentum" else ""
    return f"{case.label} (η = {case.lr:g},{beta} η/(1−β) = {case.effective_lr:g})".replace(
        f"η = {case.lr:g}, η/(1−β)", f"η = {case.lr:g}, step η/(1−β)"
    )


def loss_curves(run, cases, runs: dict, theory: np.ndarray, beta: float) -> None:
    """Training loss against the step, log scale; × marks the last finite loss of a diverged
    run; the dashed line is the scalar recursion of full-batch GD."""
    colors = _colors(cases)
    with matplotlib.rc_context(style.style()):
        fig = run.new_figure(11, 6.5)
        ax = fig.subplots()
        floor = 1e-33
        for case in cases:
            for i, r in enumerate(runs[case.name]):
                step, loss = np.asarray(r["step"]), np.asarray(r["loss"], dtype=float)
                ok = np.isfinite(loss)
                ax.plot(
                    step[ok],
                    np.maximum(loss[ok], floor),
                    color=colors[case.name],
                    lw=1.6 if i == 0 else 0.8,
                    alpha=1.0 if i == 0 else 0.7,
                    ls=":" if case.loose is None else "-",
                    label=_legend(case)
                    + (f", {len(runs[case.name])} seed(s)" if case.seeded else "")
                    if i == 0
                    else None,
                )
                if r["diverged_at"] is not None and ok.any():
                    # drawn at the top edge when the last finite loss is off the axis
                    ax.plot(
                        step[ok][-1],
                        min(loss[ok][-1], 3e2),
                        "x",
                        ms=10,
                        mew=2,
                        color=colors[case.name],
                        clip_on=False,
                    )
        ax.plot(
            np.arange(len(theory)),
            theory,
            color="0.1",
            ls="--",
            lw=1.0,
            label="theory: GD as the scalar recursion w ← w − ηλw²(w³+1)",
        )
        half = runs["gd"][0]["half_trace"]
        ax.axhline(half, color="0.5", lw=0.8, ls="-.")
        ax.text(
            len(theory) * 0.6,
            half * 2.5,
            f"½·tr Σ = {half:.3g} (output 0)",
            fontsize=8,
            color="0.3",
        )
        ax.set_yscale("log")
        ax.set(
            xlabel="training step (updates)",
            ylabel="training loss ½·mean‖f(x) − y‖² (floor 1e-33)",
            ylim=(floor / 3, 1e3),
            title="3-layer linear 10×10 network from the identity (IDInit), target −I: "
            "training loss (× = diverged)",
        )
        ax.legend(fontsize=7.5, loc="center right")
        run.save_figure(fig, "loss")


def direction_plot(run, cases, runs: dict, crossed: float) -> None:
    """The end product ``W₃W₂W₁`` in each eigendirection of Σ against its eigenvalue."""
    colors = _colors(cases)
    with matplotlib.rc_context(style.style()):
        fig = run.new_figure(10, 5.5)
        ax = fig.subplots()
        markers = "osD^vP*Xp<>h"
        for i, case in enumerate(cases):
            r = runs[case.name][0]
            if r["direction_values"] is None:
                continue  # a diverged run has no finite product
            jitter = (i - len(cases) / 2) * 0.002
            ax.plot(
                np.asarray(r["eigenvalues"]) + jitter,
                r["direction_values"],
                markers[i % len(markers)],
                color=colors[case.name],
                ms=6,
                alpha=0.85,
                label=_legend(case),
            )
        ax.axhline(0, color="0.4", lw=0.8)
        ax.axhline(-1, color="0.2", lw=0.8, ls="--")
        ax.axhline(crossed, color="0.6", lw=0.6, ls=":")
        ax.text(ax.get_xlim()[0], -0.97, " solution −I", fontsize=8, va="bottom")
        ax.text(ax.get_xlim()[0], 0.03, " saddle 0", fontsize=8, va="bottom")
        ax.set(
            xlabel="eigenvalue λ_k of the sample covariance Σ (dimensionless)",
            ylabel="v_kᵀ W₃W₂W₁ v_k after training",
            ylim=(-1.3, 1.3),
            title="Where each run left the eigendirections (first seed; diverged runs omitted)",
        )
        ax.legend(fontsize=7.5, loc="upper right")
        run.save_figure(fig, "directions")
