"""Trainability against theory: where a tanh MLP stops training on Fashion-MNIST, against ξ_c.

A tanh MLP (width 64, Xavier-normal weights of gain g, so σ_w² = g² on its square layers, no
bias variance) is trained on a σ_w² × depth grid through isokit.sweep. Each row's measured
boundary, between the deepest depth that trained and the first that failed, is compared with
the correlation depth scale ξ_c of mean-field theory (isokit.theory.depth_scales): Schoenholz
et al. (2017) found that networks much deeper than about 6·ξ_c do not train.
"""

from __future__ import annotations

import functools
import math
import statistics
from typing import Any

import numpy as np
from common import main_guarded, start
from lib_theory_map import figures
from lib_theory_map.rule import (
    CLAIMED_MULTIPLE,
    MULTIPLES,
    RULE,
    agreement,
    best_multiples,
    boundary,
    sides,
    verdict,
)

from isokit.init import get_scheme
from isokit.sweep import load_sweep, parse_sweep, run_cell, run_sweep
from isokit.theory import depth_scales

NAME = "theory_map"
SCHEME = "xavier-normal"
CHANCE = 0.1  # ten classes
FULL = {
    "sw2": [0.25, 0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 3.0, 4.0],
    "depths": [2, 4, 8, 16, 32, 64, 128, 256],
    "steps": 500,
    "eval_examples": 2000,
}
QUICK = {
    "sw2": [0.5, 1.0, 2.0, 4.0],
    "depths": [2, 8, 32, 128],
    "steps": 150,
    "eval_examples": 1000,
}


def add_flags(parser) -> None:
    parser.add_argument("--sw2", type=float, nargs="+", help="σ_w² values (rows)")
    parser.add_argument("--depths", type=int, nargs="+", help="depths (columns)")
    parser.add_argument("--steps", type=int, help="training steps per cell")
    parser.add_argument("--width", type=int, default=64, help="hidden width")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (momentum 0.9)")
    parser.add_argument("--fail-below", type=float, default=0.2, help="accuracy of a failed cell")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (full mode)")


def gain_of(sw2: float) -> float:
    """The Xavier gain whose square-layer variance is ``sw2`` (rounded: it is a grid key)."""
    return round(math.sqrt(sw2), 6)


def sweep_config(settings: dict[str, Any], seeds) -> dict[str, Any]:
    """The sweep: Xavier-normal tanh MLPs on flattened 28×28 Fashion-MNIST, one cell per
    gain × depth × seed; the probe reads only the head (the map needs the training)."""
    steps = settings["steps"]
    return {
        "title": "theory map: tanh MLP, σ_w² × depth",
        "method": "exact",
        "dtype": "float64",
        "threads": 1,
        "inputs": {"examples": 2},
        "probes": {"profile": True, "signal": False},
        "models": [
            {
                "kind": "mlp",
                "in_features": 784,
                "width": settings["width"],
                "out_features": 10,
                "activation": "tanh",
                "input_shape": [1, 28, 28],
                "taps": ["head"],
            }
        ],
        "train": {
            "data": "fashion-mnist",
            "data_options": {"pad_to": None, "test_limit": settings["eval_examples"]},
            "optimizer": "sgd-momentum",
            "lr": settings["lr"],
            "momentum": 0.9,
            "batch_size": 128,
            "steps": steps,
            "eval_every": max(1, steps // 5),
            "eval_examples": settings["eval_examples"],
            "target_accuracy": 0.5,
            "probe_examples": 2,
        },
        "sweep": {
            "depth": list(settings["depths"]),
            "schemes": [SCHEME],
            "option.gain": [gain_of(s) for s in settings["sw2"]],
            "seeds": list(seeds),
        },
    }


def law_xi(gain: float, width: int) -> tuple[float, float, float]:
    """``(σ_w², σ_b², ξ_c)`` of the scheme's own weight law at ``gain`` on a square tanh layer."""
    scheme = get_scheme(SCHEME)
    law = scheme.weight_law({**scheme.defaults, "gain": gain}, fan_in=width, bias=True)
    xi = depth_scales(act="tanh", sw2=law.sigma_w2, sb2=law.sigma_b2).xi_c.value
    return law.sigma_w2, law.sigma_b2, float(xi)


def cell_accuracy(result) -> float:
    """The final held-out accuracy of a finished cell; a diverged run counts as chance."""
    train = result.record.train
    if train.diverged or train.final_accuracy is None:
        return CHANCE
    return float(train.final_accuracy)


def measure(sweep, settings: dict[str, Any]) -> dict[str, Any]:
    """The map: per σ_w² row and depth column the median final accuracy over seeds, the
    diverged count, ξ_c, and each row's boundary."""
    gains = [gain_of(s) for s in settings["sw2"]]
    depths = list(settings["depths"])
    by = {}
    for c in sweep.results:
        if c.status == "ok":
            by.setdefault((c.axes["option.gain"], c.axes["depth"]), []).append(c)
    acc = np.full((len(gains), len(depths)), np.nan)
    diverged = np.zeros((len(gains), len(depths)), int)
    rows, sw2s, xis = [], [], []
    for i, g in enumerate(gains):
        sw2, sb2, xi = law_xi(g, settings["width"])
        sw2s.append(sw2)
        xis.append(xi)
        for j, d in enumerate(depths):
            cells = by.get((g, d), [])
            if cells:
                acc[i, j] = statistics.median(cell_accuracy(c) for c in cells)
                diverged[i, j] = sum(c.record.train.diverged for c in cells)
        trained = [bool(a >= settings["fail_below"]) for a in acc[i]]
        b = boundary(depths, trained)
        rows.append(
            {
                "gain": g,
                "sigma_w2": sw2,
                "sigma_b2": sb2,
                "xi_c": xi,
                "six_xi_c": 6 * xi,
                "accuracy": acc[i].tolist(),
                "diverged": diverged[i].tolist(),
                "trained": trained,
                "last_ok": b.last_ok,
                "first_fail": b.first_fail,
                "boundary": b.depth,
                "boundary_over_xi_c": None if b.depth is None else b.depth / xi,
            }
        )
    return {
        "depths": depths,
        "sigma_w2": sw2s,
        "xi_c": xis,
        "accuracy": acc.tolist(),
        "boundary": [r["boundary"] for r in rows],
        "rows": rows,
    }


def judge(m: dict[str, Any]) -> dict[str, Any]:
    """The claim's two sides at 6·ξ_c, the best multiple, and the verdict of :data:`RULE`."""
    depth = np.array([d for _ in m["rows"] for d in m["depths"]], float)
    xi = np.array([r["xi_c"] for r in m["rows"] for _ in m["depths"]], float)
    trained = np.array([t for r in m["rows"] for t in r["trained"]], bool)
    lo, hi, best = best_multiples(depth, xi, trained)
    side = sides(depth, xi, trained, CLAIMED_MULTIPLE)
    scores = [agreement(depth, xi, trained, k) for k in MULTIPLES]
    return {
        **side,
        "agreement_at_6": agreement(depth, xi, trained, CLAIMED_MULTIPLE),
        "best_multiples": [lo, hi],
        "best_multiple": math.sqrt(lo * hi),
        "best_agreement": best,
        "scan": {"k": MULTIPLES.tolist(), "agreement": scores},
        "verdict": verdict(side, (lo, hi)),
    }


def xi_curve(settings: dict[str, Any]) -> dict[str, list[float]]:
    """ξ_c on a fine σ_w² grid between the rows (the map's curves)."""
    lo, hi = min(settings["sw2"]), max(settings["sw2"])
    sw2 = np.linspace(lo, hi, 200)
    xi = [depth_scales(act="tanh", sw2=float(s), sb2=0.0).xi_c.value for s in sw2]
    return {"sigma_w2": sw2.tolist(), "xi_c": [float(x) for x in xi]}


def main() -> None:
    run = start(NAME, __doc__, seeds=(0, 1, 2), quick_seeds=(0,), options=add_flags)
    a = run.args
    base = QUICK if run.quick else FULL
    settings = {
        "sw2": a.sw2 or base["sw2"],
        "depths": sorted(a.depths or base["depths"]),
        "steps": a.steps or base["steps"],
        "eval_examples": base["eval_examples"],
        "width": a.width,
        "lr": a.lr,
        "fail_below": a.fail_below,
        "scheme": SCHEME,
    }
    grid = parse_sweep(sweep_config(settings, run.seeds), source=NAME)
    task = functools.partial(run_cell, device=run.device)
    where = run.sweep_dir("map")
    if run.quick:
        summary = run_sweep(grid, where, serial=True, resume=True, quiet=True, task=task)
    else:
        summary = run_sweep(grid, where, workers=a.workers, resume=True, quiet=False, task=task)
    print(summary.describe())
    m = measure(load_sweep(where), settings)
    judged = judge(m)
    eff = a.lr / (1 - 0.9)
    steps = settings["steps"]
    fig = run.new_figure(7.5, 5.6)
    figures.accuracy_map(
        fig,
        m,
        xi_curve(settings),
        f"tanh MLP (width {a.width}) on Fashion-MNIST after {steps} steps\n"
        f"SGD momentum 0.9, lr {a.lr:g}, effective step η/(1−β) = {eff:g}",
    )
    run.save_figure(fig, "accuracy")
    fig = run.new_figure(6.5, 4.8)
    figures.boundary_figure(
        fig,
        m,
        judged["best_multiple"],
        f"Where training fails against ξ_c (accuracy < {a.fail_below:g})",
    )
    run.save_figure(fig, "boundary")
    fig = run.new_figure(6.5, 4.2)
    k = np.array(judged["scan"]["k"])
    figures.agreement_figure(
        fig,
        k,
        np.array(judged["scan"]["agreement"]),
        judged["best_multiples"],
        "Does 'depth ≤ k·ξ_c' predict which cells train?",
    )
    run.save_figure(fig, "agreement")
    numbers = {
        "map": m,
        "claim": {k: v for k, v in judged.items() if k != "verdict"},
        "cells": len(grid.cells),
        "sweep_elapsed_s": summary.elapsed_s,
        "seconds_per_cell": summary.elapsed_s / max(summary.computed, 1),
    }
    run.finish(
        numbers,
        verdict={"training fails beyond about 6·ξ_c": judged["verdict"], "rule": RULE},
        settings=settings,
    )


if __name__ == "__main__":
    main_guarded(main)
