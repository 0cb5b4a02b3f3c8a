"""The ablation of IDInit's two components (claim E): patch-maintain convolutions (IDIC) and
the zero-preserving last layer of each residual branch (IDIZ), on ResNet-20 without
normalization trained on Fashion-MNIST.

Four combinations of the IDInit options ``conv_mode`` ("patch": with IDIC; "channel": without)
and ``residual_last`` ("idiz": with IDIZ; "zero": without), 5 seeds, the same data and schedule
for all: the final held-out accuracy (mean ± std over seeds), the steps to a target accuracy,
and the paired per-seed effect of each component. See docs/analyses/ablation.md.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

import numpy as np
from common import main_guarded, start
from lib_train import figures
from lib_train.runs import (
    CHANCE,
    Budget,
    Run,
    add_budget_flags,
    budget_from_flags,
    collect_runs,
    resnet_sweep,
    run_grid,
)
from lib_train.stats import paired_effect

from isokit.report.style import Palette

#: (conv_mode, residual_last) → the combination's name, in the paper's table order.
COMBOS = {
    ("channel", "zero"): "neither",
    ("patch", "zero"): "IDIC only",
    ("channel", "idiz"): "IDIZ only",
    ("patch", "idiz"): "IDIC + IDIZ",
}
#: An effect whose CI lies below this (accuracy, a fraction) excludes the benefit of several
#: points the paper reports for each component.
MARGIN = 0.005
RULE = (
    "Per seed, the effect of a component is the mean over the other component's two settings "
    "of (final held-out accuracy with it − without it); a diverged run counts as chance, 0.1. "
    "Its mean over seeds gets a 95% Student-t interval. confirmed: both effects' intervals lie "
    "above 0 and IDIC + IDIZ has the highest mean accuracy; contradicted: some effect's "
    f"interval lies entirely below +{MARGIN} (a benefit of half a point or more is excluded); "
    "unclear otherwise."
)


def add_flags(p: argparse.ArgumentParser) -> None:
    add_budget_flags(
        p, width_help="ResNet-20 width (full: 16)", steps_help="training steps (full: 469)"
    )


def budget(run) -> Budget:
    return budget_from_flags(run.args, quick=run.quick, width=(8, 16), target=(0.3, 0.8))


def label_runs(runs: list[Run]) -> list[Run]:
    """Each run named by its combination (:data:`COMBOS`), in the table's order."""
    named = [
        replace(r, scheme=COMBOS[(r.axes["option.conv_mode"], r.axes["option.residual_last"])])
        for r in runs
    ]
    order = list(COMBOS.values())
    return sorted(named, key=lambda r: (order.index(r.scheme), r.seed))


def combo_table(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per combination: final accuracy mean ± std over seeds, steps to the target."""
    out = {}
    for name in COMBOS.values():
        mine = [r for r in runs if r.scheme == name]
        acc = np.array([r.accuracy_outcome for r in mine])
        reached = [r.steps_to_target for r in mine if r.steps_to_target is not None]
        out[name] = {
            "runs": len(mine),
            "seeds": [r.seed for r in mine],
            "final_accuracy": acc.tolist(),
            "mean_accuracy": float(acc.mean()),
            "std_accuracy": float(acc.std(ddof=1)) if acc.size > 1 else None,
            "diverged": sum(r.diverged_at is not None for r in mine),
            "reached": len(reached),
            "steps_to_target": [r.steps_to_target for r in mine],
            "median_steps_to_target": float(np.median([r.steps_outcome for r in mine])),
            "mean_steps_reached": float(np.mean(reached)) if reached else None,
        }
    return out


def effects(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Paired per-seed effects of IDIC, of IDIZ, and their interaction (module docstring)."""
    acc = {(r.scheme, r.seed): r.accuracy_outcome for r in runs}
    seeds = sorted({r.seed for r in runs if all((n, r.seed) in acc for n in COMBOS.values())})
    both, idic, idiz, neither = (
        np.array([acc[(n, s)] for s in seeds])
        for n in ("IDIC + IDIZ", "IDIC only", "IDIZ only", "neither")
    )
    return {
        "IDIC (patch vs channel)": {
            **paired_effect((both + idic - idiz - neither) / 2),
            "seeds": seeds,
        },
        "IDIZ (idiz vs zero)": {
            **paired_effect((both + idiz - idic - neither) / 2),
            "seeds": seeds,
        },
        "interaction": {**paired_effect(both - idic - idiz + neither), "seeds": seeds},
    }


def judge(table: dict[str, dict], eff: dict[str, dict]) -> str:
    """The verdict by :data:`RULE`."""
    main = [eff["IDIC (patch vs channel)"], eff["IDIZ (idiz vs zero)"]]
    if any(e["ci"][0] != e["ci"][0] for e in main):  # fewer than two seeds: no interval
        return "unclear"
    best = max(table, key=lambda n: table[n]["mean_accuracy"])
    if all(e["ci"][0] > 0 for e in main) and best == "IDIC + IDIZ":
        return "confirmed"
    if any(e["ci"][1] < MARGIN for e in main):
        return "contradicted"
    return "unclear"


def main() -> None:
    run = start("ablation", __doc__, seeds=(0, 1, 2, 3, 4), quick_seeds=(0, 1), options=add_flags)
    b = budget(run)
    sweep = {
        "schemes": ["idinit"],
        "option.conv_mode": ["patch", "channel"],
        "option.residual_last": ["idiz", "zero"],
        "seeds": list(run.seeds),
    }
    out = run.sweep_dir("resnet20")
    wall = run_grid(resnet_sweep(b, sweep), out, quick=run.quick, device=run.device)
    raw, skipped = collect_runs(out)
    runs = label_runs(raw)
    table, eff = combo_table(runs), effects(runs)
    verdict = judge(table, eff)
    model = runs[0].model
    palette = Palette(tuple(COMBOS.values()))
    fig = run.new_figure(7.5, 5.0)
    figures.mean_std(
        fig, table, palette, f"{model}: final held-out accuracy, mean ± std over seeds"
    )
    run.save_figure(fig, "accuracy")
    fig = run.new_figure(12, 5.2)
    figures.accuracy_curves(
        fig, {model: runs}, palette, "Held-out accuracy of the four combinations", b.target
    )
    run.save_figure(fig, "curves")
    fig = run.new_figure(7.5, 5.0)
    figures.steps_strip(fig, {model: runs}, palette, f"Steps to {b.target:g} held-out accuracy")
    run.save_figure(fig, "steps")
    fig = run.new_figure(7.5, 3.2)
    figures.forest(
        fig,
        list(eff.items()),
        "Paired effect on final accuracy, mean over seeds, 95% t-interval",
        "effect on the final held-out accuracy (fraction; + means the component helps)",
    )
    run.save_figure(fig, "effects")
    run.finish(
        {
            "model": model,
            "combinations": table,
            "effects": eff,
            "sweep_wall_s": wall,
            "not_trained": skipped,
            "runs": [{"combination": r.scheme, **r.to_dict()} for r in runs],
        },
        verdict={"claim E: both components improve accuracy": verdict, "rule": RULE},
        settings={
            "budget": {**asdict(b), "effective_lr": b.effective_lr},
            "combinations": {
                name: {"conv_mode": c, "residual_last": z} for (c, z), name in COMBOS.items()
            },
            "diverged": f"a diverged run's final accuracy counts as {CHANCE}",
        },
    )


if __name__ == "__main__":
    main_guarded(main)
