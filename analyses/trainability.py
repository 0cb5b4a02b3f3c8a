"""Trainability on Fashion-MNIST: does isometry at initialization predict how well a ResNet
trains?

ResNet-20 and ResNet-56 without normalization (width 8), every scheme of the default report,
3 seeds, a fixed budget of SGD with momentum (ResNet-20: one epoch, 469 steps; ResNet-56: half
an epoch). Per run: the isometry statistics at the last tap at initialization, the final
held-out accuracy and the steps to a target accuracy. Per model: Spearman's ρ between each
isometry statistic and each outcome, with a cluster-bootstrap interval over schemes.
See docs/analyses/trainability.md.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

from common import main_guarded, start
from lib_train import figures
from lib_train.runs import (
    CHANCE,
    Budget,
    Run,
    add_budget_flags,
    budget_from_flags,
    by_key,
    collect_runs,
    resnet_sweep,
    run_grid,
)
from lib_train.stats import bootstrap_spearman

from isokit.report import load_config
from isokit.report.style import Palette
from isokit.report.training_scatter import isometry_x
from isokit.report.training_series import TrainPoint

#: Every scheme of the default report config, which owns the list.
SCHEMES = tuple(s.label for s in load_config(None).schemes)
#: Expected sign of ρ if isometry at init predicts trainability: a larger gap or variance
#: (farther from isometry) gives lower accuracy and more steps; a larger rank fraction the
#: opposite.
EXPECTED = {
    ("gap_nonzero", "accuracy"): -1,
    ("var", "accuracy"): -1,
    ("rank_fraction", "accuracy"): +1,
    ("gap_nonzero", "steps"): +1,
    ("var", "steps"): +1,
    ("rank_fraction", "steps"): -1,
}
#: |ρ| below this is no useful prediction (a CI inside ±NULL_BAND contradicts the claim).
NULL_BAND = 0.3
RULE = (
    "Per model, the primary pair is (the report's isometry statistic at the last tap at init: "
    "gap_nonzero if finite for every run, else the scale-free variance var) against the final "
    "held-out accuracy (a diverged run counts as chance, 0.1). confirmed: the 95% cluster-"
    "bootstrap CI of Spearman's rho lies entirely on the expected side of 0 (negative: farther "
    "from isometry, lower accuracy); contradicted: it lies entirely on the other side, or "
    f"entirely inside (-{NULL_BAND}, {NULL_BAND}); unclear otherwise. Overall: confirmed or "
    "contradicted if every model says so, else unclear."
)


def add_flags(p: argparse.ArgumentParser) -> None:
    add_budget_flags(
        p, width_help="ResNet width (default 8)", steps_help="ResNet-20 steps (full: 469)"
    )
    p.add_argument("--deep-steps", type=int, default=None, help="ResNet-56 steps (full: 235)")
    p.add_argument("--deep-depth", type=int, default=56, help="the deeper ResNet's depth")
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")


def budgets(run) -> list[Budget]:
    """ResNet-20 and the deeper ResNet: the full budget, or the quick one (module docs)."""
    a, quick = run.args, run.quick
    base = budget_from_flags(a, quick=quick, width=(8, 8), target=(0.3, 0.75))
    deep = replace(base, depth=a.deep_depth, steps=a.deep_steps or (20 if quick else 235))
    return [base, deep]


def primary_stat(runs: list[Run]) -> str:
    """The report's choice of isometry statistic (:func:`isometry_x`) for these runs."""
    points = [
        TrainPoint(
            model=r.model,
            scheme=r.scheme,
            seed=r.seed,
            task="classification",
            gap_nonzero=r.iso["gap_nonzero"],
            var=r.iso["var"],
            rank_fraction=r.iso["rank_fraction"],
            target=None,
            steps_to_target=None,
            diverged_at=None,
            final=0.0,
            steps=r.steps,
        )
        for r in runs
    ]
    return isometry_x(points)


def correlations(runs: list[Run], resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """ρ of every isometry statistic against every outcome, with its bootstrap interval."""
    out = {}
    clusters = [r.scheme for r in runs]
    for (stat, outcome), sign in EXPECTED.items():
        xs = [r.iso[stat] for r in runs]
        if any(x != x for x in xs):  # a run without the statistic: not computable
            out[f"{stat}~{outcome}"] = {"rho": None, "ci": [None, None], "missing": True}
            continue
        ys = [r.accuracy_outcome if outcome == "accuracy" else r.steps_outcome for r in runs]
        c = bootstrap_spearman(xs, ys, clusters, resamples=resamples, seed=seed)
        out[f"{stat}~{outcome}"] = {**c, "expected_sign": sign}
    return out


def judge(c: dict[str, Any]) -> str:
    """The verdict of one correlation by :data:`RULE`."""
    lo, hi = c["ci"]
    if lo is None or lo != lo:
        return "unclear"
    sign = c["expected_sign"]
    if (sign < 0 and hi < 0) or (sign > 0 and lo > 0):
        return "confirmed"
    if (sign < 0 and lo > 0) or (sign > 0 and hi < 0) or (lo > -NULL_BAND and hi < NULL_BAND):
        return "contradicted"
    return "unclear"


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Per scheme: runs, diverged, reached, median final accuracy and steps to the target."""
    out = {}
    for scheme, mine in by_key(runs, lambda r: r.scheme).items():
        acc = sorted(r.accuracy_outcome for r in mine)
        steps = sorted(r.steps_outcome for r in mine)
        out[scheme] = {
            "runs": len(mine),
            "diverged": sum(r.diverged_at is not None for r in mine),
            "reached": sum(r.steps_to_target is not None for r in mine),
            "median_final_accuracy": acc[len(acc) // 2],
            "median_steps_to_target": steps[len(steps) // 2],
            **{f"init_{k}": mine[0].iso[k] for k in mine[0].iso},
        }
    return out


def main() -> None:
    run = start("trainability", __doc__, seeds=(0, 1, 2), quick_seeds=(0,), options=add_flags)
    groups: dict[str, list[Run]] = {}
    wall, skipped, settings = {}, {}, {}
    for budget in budgets(run):
        label = f"resnet{budget.depth}"
        config = resnet_sweep(budget, {"schemes": list(SCHEMES), "seeds": list(run.seeds)})
        wall[label] = run_grid(config, run.sweep_dir(label), quick=run.quick, device=run.device)
        runs, skipped[label] = collect_runs(run.sweep_dir(label))
        groups[runs[0].model] = runs
        settings[label] = {**asdict(budget), "effective_lr": budget.effective_lr}
    stats = {model: primary_stat(runs) for model, runs in groups.items()}
    corr = {
        model: correlations(runs, run.args.resamples, seed=1000 + i)
        for i, (model, runs) in enumerate(groups.items())
    }
    per_model = {model: judge(corr[model][f"{stats[model]}~accuracy"]) for model in groups}
    verdicts = set(per_model.values())
    overall = verdicts.pop() if len(verdicts) == 1 else "unclear"
    palette = Palette(SCHEMES)
    target = budgets(run)[0].target
    fig = run.new_figure(12, 5.6)
    figures.loss_curves(fig, groups, palette, "Training loss on Fashion-MNIST, every scheme")
    run.save_figure(fig, "loss")
    fig = run.new_figure(12, 5.2)
    figures.accuracy_curves(fig, groups, palette, "Held-out accuracy on Fashion-MNIST", target)
    run.save_figure(fig, "accuracy")
    fig = run.new_figure(12, 5.0)
    figures.steps_strip(fig, groups, palette, f"Steps to {target:g} held-out accuracy")
    run.save_figure(fig, "steps")
    fig = run.new_figure(12, 10.0)
    figures.isometry_scatter(
        fig,
        groups,
        palette,
        stats.__getitem__,
        corr,
        "Isometry at initialization against trainability (Spearman ρ, cluster bootstrap)",
    )
    run.save_figure(fig, "scatter")
    rows = [
        (
            f"{model}: {key.replace('~', ' vs ')} (expected {'+−'[c['expected_sign'] < 0]})",
            c,
        )
        for model, cs in corr.items()
        for key, c in cs.items()
        if c["rho"] is not None
    ]
    fig = run.new_figure(9, 0.45 * len(rows) + 1.5)
    figures.forest(
        fig,
        rows,
        "Spearman ρ, 95% CI (bootstrap over schemes)",
        "Spearman ρ (isometry statistic at init vs outcome)",
    )
    run.save_figure(fig, "correlations")
    run.finish(
        {
            "models": {
                model: {
                    "primary_statistic": stats[model],
                    "verdict": per_model[model],
                    "correlations": corr[model],
                    "schemes": summarize(runs),
                    "sweep_wall_s": wall[label],
                    "not_trained": skipped[label],
                }
                for (model, runs), label in zip(groups.items(), wall, strict=True)
            },
            "runs": [r.to_dict() for runs in groups.values() for r in runs],
        },
        verdict={"isometry at init predicts trainability": overall, "rule": RULE},
        settings={
            "budgets": settings,
            "bootstrap": {
                "unit": "scheme (all its seeds resampled together)",
                "resamples": run.args.resamples,
                "interval": "percentile, 95%",
                "seeds": {m: 1000 + i for i, m in enumerate(groups)},
            },
            "outcomes": {
                "final_accuracy": f"last held-out accuracy; diverged runs count as {CHANCE}",
                "steps_to_target": "first evaluated step at or above the target; never reached "
                "(diverged before it included) counts as +inf, ranked last",
                "isometry": "median over probe examples at the last tap (fc); inf (a zero "
                "Jacobian: fixup, zero) ranks as the farthest from isometry",
            },
        },
    )


if __name__ == "__main__":
    main_guarded(main)
