"""analyses/ablation.py: the four combinations are the IDInit options they claim to be, and
the table, the paired effects and the verdict follow from the per-run records."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
from scipy import stats

from tests.analyses.conftest import ANALYSES

if str(ANALYSES) not in sys.path:
    sys.path.insert(0, str(ANALYSES))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"analysis_{name}", ANALYSES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ablation = _script("ablation")


def _table(acc_by_combo: dict[str, list[float]]) -> dict[str, dict]:
    return {n: {"mean_accuracy": float(np.mean(a))} for n, a in acc_by_combo.items()}


def _effect(mean: float, lo: float, hi: float) -> dict:
    return {"mean": mean, "ci": [lo, hi]}


@pytest.mark.parametrize(
    ("idic", "idiz", "best", "verdict"),
    [
        ((0.02, 0.01, 0.03), (0.03, 0.01, 0.05), "IDIC + IDIZ", "confirmed"),
        ((0.02, 0.01, 0.03), (0.03, 0.01, 0.05), "neither", "unclear"),
        ((0.00, -0.01, 0.004), (0.03, 0.01, 0.05), "IDIC + IDIZ", "contradicted"),
        ((0.01, -0.01, 0.03), (0.03, 0.01, 0.05), "IDIC + IDIZ", "unclear"),
        ((0.01, math.nan, math.nan), (0.03, 0.01, 0.05), "IDIC + IDIZ", "unclear"),
    ],
)
def test_the_verdict_rule(idic, idiz, best, verdict):
    table = _table({n: [0.9 if n == best else 0.8] for n in ablation.COMBOS.values()})
    eff = {"IDIC (patch vs channel)": _effect(*idic), "IDIZ (idiz vs zero)": _effect(*idiz)}
    assert ablation.judge(table, eff) == verdict


@pytest.mark.slow
def test_quick_cells_carry_the_options_of_their_combination(quick_run):
    from isokit.sweep import load_sweep

    run = quick_run("ablation")
    sweep = load_sweep(run.out.parent / "work" / "resnet20")
    assert len(sweep.results) == 4 * len(run.record["seeds"])
    names = {v: k for k, v in ablation.COMBOS.items()}
    recorded = {(r["combination"], r["seed"]) for r in run.record["numbers"]["runs"]}
    for cell in sweep.results:
        options = cell.config.schemes[0].options
        combo = ablation.COMBOS[(options["conv_mode"], options["residual_last"])]
        assert names[combo] == (options["conv_mode"], options["residual_last"])
        assert cell.config.schemes[0].name == "idinit"
        assert (combo, cell.axes["seed"]) in recorded
    # Same data, schedule and seed, different initialization: no two combinations of one seed
    # train alike (if the options were dropped, pairs would be bit-identical).
    runs = run.record["numbers"]["runs"]
    for seed in run.record["seeds"]:
        losses = [r["final_train_loss"] for r in runs if r["seed"] == seed]
        assert len(set(losses)) == 4, losses
    budgets = {(r["steps"], tuple(r["eval_step"])) for r in runs}
    assert len(budgets) == 1  # one schedule for all


@pytest.mark.slow
def test_quick_table_effects_and_verdict_follow_from_the_runs(quick_run):
    record = quick_run("ablation").record
    numbers = record["numbers"]
    acc = {}
    for r in numbers["runs"]:
        value = 0.1 if r["diverged_at"] is not None else r["final_accuracy"]
        acc[(r["combination"], r["seed"])] = value
    for name, row in numbers["combinations"].items():
        mine = [acc[(name, s)] for s in record["seeds"]]
        assert row["mean_accuracy"] == pytest.approx(np.mean(mine))
        assert row["std_accuracy"] == pytest.approx(np.std(mine, ddof=1))
    seeds = record["seeds"]
    pick = {n: np.array([acc[(n, s)] for s in seeds]) for n in ablation.COMBOS.values()}
    idic = (pick["IDIC + IDIZ"] + pick["IDIC only"] - pick["IDIZ only"] - pick["neither"]) / 2
    got = numbers["effects"]["IDIC (patch vs channel)"]
    assert got["mean"] == pytest.approx(idic.mean())
    ci = stats.ttest_1samp(idic, 0.0).confidence_interval(0.95)
    assert got["ci"] == pytest.approx([ci.low, ci.high])
    want = ablation.judge(numbers["combinations"], numbers["effects"])
    assert record["verdict"]["claim E: both components improve accuracy"] == want
    assert max(acc.values()) > 0.2  # the runs learned (chance is 0.1)
