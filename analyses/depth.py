"""Claim A: identity control keeps the input-output Jacobian near-isometric at any depth.

Sweeps every scheme of the default report (plus the IDInit variants of two uncertain points:
a zero last branch layer instead of IDIZ, channel-maintain instead of patch-maintain convolutions)
over depth on plain MLPs (ReLU, tanh), a residual MLP, CIFAR-style ResNets without normalization
and a Transformer without normalization, and probes the singular values of the input-output
Jacobian in float64 at initialization; then trains the MLPs and ResNets on Fashion-MNIST and
probes them again after the short (100) and, on a subset, the long (1000) run. The verdict is
computed from the growth across depth of the scale-free variance of the Jacobian's non-zero
spectrum at the last tap (docs/analyses/depth.md).

    python analyses/depth.py [--quick] [--workers 2] [--resnet-depths 20 56 110] ...
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from common import main_guarded, start
from lib_depth import figures, grids, summary

from isokit.sweep import load_sweep, local_cluster, parse_sweep, run_cell, run_sweep

VARIANTS = ("idinit", "idinit-zero-last", "idinit-channel")
PLOTTED = ("var_nonzero", "gap_nonzero", "rank_fraction", "m1", "sigma_max")
DESCRIBE = {
    "var_nonzero": "Scale-free variance of the non-zero spectrum",
    "gap_nonzero": "Isometry gap log(AM/GM) of the non-zero spectrum",
    "rank_fraction": "Rank fraction",
    "m1": "Mean squared singular value m1",
    "sigma_max": "Largest singular value",
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Budgets a GPU user scales up (every flag defaults to the quick or full budget)."""
    ints = {"type": int, "nargs": "+", "default": None}
    parser.add_argument("--mlp-depths", **ints, help="plain MLP depths at initialization")
    parser.add_argument("--resmlp-depths", **ints, help="residual-MLP depths (blocks)")
    parser.add_argument("--resnet-depths", **ints, help="ResNet depths (6n+2)")
    parser.add_argument("--transformer-depths", **ints, help="Transformer depths (blocks)")
    parser.add_argument("--train-resmlp-depths", **ints, help="trained residual-MLP depths")
    parser.add_argument("--train-resnet-depths", **ints, help="trained ResNet depths")
    parser.add_argument("--train-mlp-depths", **ints, help="trained plain MLP depths")
    for name in ("mlp-width", "resmlp-width", "resnet-width", "d-model", "examples"):
        parser.add_argument(f"--{name}", type=int, default=None)
    parser.add_argument("--short-steps", type=int, default=None, help="short run (100)")
    parser.add_argument("--long-steps", type=int, default=None, help="long run (1000)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate η")
    parser.add_argument("--no-train", action="store_true", help="initialization only")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (full mode)")


def make_budget(args: argparse.Namespace, quick: bool) -> grids.Budget:
    tuples = (
        "mlp_depths",
        "resmlp_depths",
        "resnet_depths",
        "transformer_depths",
        "train_resmlp_depths",
        "train_resnet_depths",
        "train_mlp_depths",
    )
    scalars = (
        "mlp_width",
        "resmlp_width",
        "resnet_width",
        "d_model",
        "examples",
        "short_steps",
        "long_steps",
        "batch_size",
        "lr",
    )
    over: dict[str, Any] = {k: tuple(getattr(args, k)) for k in tuples if getattr(args, k)}
    over.update({k: getattr(args, k) for k in scalars})
    return grids.budget(quick, **over)


@contextmanager
def scheduler(run: Any) -> Iterator[str | None]:
    """The address of a LocalCluster for the full mode, None (serial) in --quick."""
    if run.quick:
        yield None
        return
    with local_cluster(run.args.workers) as client:
        yield client.scheduler.address


def sweep(run: Any, label: str, config: dict, address: str | None):
    """Run (or resume) one grid in ``--work``/label and read it back."""
    grid = parse_sweep(config, source=label)
    task = functools.partial(run_cell, device=run.device)
    out = run.sweep_dir(label)
    if address is None:
        run_sweep(grid, out, serial=True, resume=True, quiet=True, task=task)
    else:
        run_sweep(grid, out, scheduler=address, resume=True, quiet=False, task=task)
    return load_sweep(out)


def verdicts(panels: dict[str, dict], residual: set[str]) -> tuple[dict, dict]:
    """Per family and IDInit variant: growth and verdict; per variant: the claim's verdict."""
    per_family: dict[str, dict] = {}
    for fam, series in panels.items():
        g = {s: summary.growth(v) for s, v in series.items()}
        k = g.get("kaiming-normal", float("nan"))
        per_family[fam] = {
            "growth": g,
            "verdict": {
                v: summary.family_verdict(g[v], k) for v in VARIANTS if v in g and fam in residual
            },
        }
    claim = {}
    for v in VARIANTS:
        found = [f["verdict"][v] for f in per_family.values() if v in f["verdict"]]
        if found:
            claim[v] = summary.claim_verdict(found)
    return per_family, claim


def at_init(run: Any, b: grids.Budget, address: str | None) -> tuple[dict, set, list, list]:
    """The at-initialization grids: each family's series, the residual families, the scheme
    order of the legends and the cells that raised."""
    panels, residual, order, failed = {}, set(), [], []
    for fam in grids.families(b):
        results = sweep(
            run, f"init-{fam.label}", grids.init_config(fam, run.seeds, b.examples), address
        )
        panels[fam.label] = summary.mean_over_seeds(summary.collect(results))
        failed += [{"grid": f"init-{fam.label}", **f} for f in summary.failures(results)]
        if fam.residual:
            residual.add(fam.label)
        order += [grids.scheme_label(s) for s in fam.schemes if grids.scheme_label(s) not in order]
    return panels, residual, order, failed


def training(run: Any, b: grids.Budget, address: str | None) -> dict[str, Any]:
    """The training grids: statistics against depth at every checkpoint, the long runs'
    statistics against step, and their loss curves."""
    rows: dict[str, dict[int, list]] = {}
    long: dict[str, dict[str, dict]] = {}
    curves: dict[str, dict] = {}
    failed: list[dict[str, Any]] = []
    for plan in grids.train_plans(b):
        results = sweep(run, plan.label, grids.train_config(plan, b, run.seeds), address)
        failed += [{"grid": plan.label, **f} for f in summary.failures(results)]
        for step in plan.checkpoints:
            got = summary.collect(results, step)
            if step in (0, b.short_steps):
                rows.setdefault(plan.family.label, {}).setdefault(step, []).extend(got)
            if plan.steps == b.long_steps:
                name = f"{plan.family.label}, depth {plan.depths[0]}"
                for scheme, s in summary.mean_over_seeds(got).items():
                    entry = long.setdefault(name, {}).setdefault(scheme, {"step": []})
                    entry["step"].append(step)
                    for stat in summary.STATS:
                        entry.setdefault(stat, []).extend(s[stat])
        if plan.steps == b.long_steps:
            curves[f"{plan.family.label}, depth {plan.depths[0]}"] = summary.train_curves(results)
    by_step = {
        step: {fam: summary.mean_over_seeds(r[step]) for fam, r in rows.items() if step in r}
        for step in (0, b.short_steps)
    }
    drift = {
        # NaN where the run diverged before the long checkpoint.
        name: {
            s: summary.growth({**v, "depth": v["step"]})
            if v["step"][-1] == b.long_steps
            else float("nan")
            for s, v in series.items()
        }
        for name, series in long.items()
    }
    return {"by_step": by_step, "long": long, "drift": drift, "curves": curves, "failed": failed}


def train_verdict(drift: dict[str, dict[str, float]]) -> dict[str, str]:
    """IDInit keeps the logits' Jacobian as isometric after the long run as at step 0:
    confirmed if its drift (1 + v(T))/(1 + v(0)) ≤ 1.5 (FLAT) on every long-run model,
    contradicted if ≥ 2 (GROWS) on any, else unclear; per IDInit variant."""
    out = {}
    for v in VARIANTS:
        found = [d[v] for d in drift.values() if v in d]
        if not found:
            continue
        if any(x >= summary.GROWS for x in found):
            out[v] = "contradicted"
        elif all(x <= summary.FLAT for x in found):
            out[v] = "confirmed"
        else:
            out[v] = "unclear"
    return out


def draw(run: Any, init: dict, trained: dict | None, order: list, b: grids.Budget) -> None:
    where = "last tap: last hidden layer; ResNet: logits"
    for stat in PLOTTED:
        figures.against(
            run,
            f"init_{stat}",
            f"{DESCRIBE[stat]} of the input-output Jacobian at initialization ({where})",
            init,
            stat=stat,
            schemes=order,
        )
    if not trained:
        return
    step = b.short_steps
    for stat in ("var_nonzero", "rank_fraction"):
        figures.against(
            run,
            f"train{step}_{stat}",
            f"{stat} at the logits after {step} steps on Fashion-MNIST "
            f"(lr {b.lr:g}, η/(1−β) {b.effective_lr:g})",
            trained["by_step"].get(step, {}),
            stat=stat,
            schemes=order,
        )
        figures.against(
            run,
            f"steps_{stat}",
            f"{stat} at the logits during training (lr {b.lr:g}, η/(1−β) {b.effective_lr:g})",
            trained["long"],
            stat=stat,
            x="step",
            xlabel="training step (updates; symlog)",
            schemes=order,
        )
    figures.loss_curves(
        run,
        "train_loss",
        "Training loss of the long runs on Fashion-MNIST",
        trained["curves"],
        order,
    )


def main(argv: list[str] | None = None) -> None:
    run = start("depth", __doc__, seeds=(0, 1, 2), quick_seeds=(0,), options=add_flags, argv=argv)
    b = make_budget(run.args, run.quick)
    with scheduler(run) as address:
        init, residual, order, failed = at_init(run, b, address)
        trained = None if run.args.no_train else training(run, b, address)
    per_family, claim = verdicts(init, residual)
    numbers: dict[str, Any] = {"init": {"series": init, "families": per_family, "failed": failed}}
    verdict: dict[str, Any] = {"rule": summary.RULE, "claim A at initialization": claim}
    if trained is not None:
        fam_short, claim_short = verdicts(trained["by_step"].get(b.short_steps, {}), residual)
        numbers["train"] = {**trained, "families_after_short": fam_short}
        verdict[f"claim A after {b.short_steps} steps"] = claim_short
        verdict[f"IDInit stays near-isometric over {b.long_steps} steps"] = train_verdict(
            trained["drift"]
        )
        verdict["train rule"] = train_verdict.__doc__.split("\n\n")[0].replace("\n   ", "")
    draw(run, init, trained, order, b)
    settings = {k: v for k, v in vars(b).items()}
    settings["effective_lr"] = b.effective_lr
    run.finish(numbers, verdict=verdict, settings=settings)


if __name__ == "__main__":
    main_guarded(main)
