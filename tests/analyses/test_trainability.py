"""analyses/trainability.py: the rank statistics against scipy, the verdict rule, and the
quick run's numbers recomputed from its own per-run records and from isokit's trainer."""

from __future__ import annotations

import doctest
import importlib.util
import math
import sys

import numpy as np
import pytest
from scipy import stats

from tests.analyses.conftest import ANALYSES

if str(ANALYSES) not in sys.path:
    sys.path.insert(0, str(ANALYSES))

from lib_train import runs as lib_runs  # noqa: E402
from lib_train import stats as lib_stats  # noqa: E402


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"analysis_{name}", ANALYSES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


trainability = _script("trainability")


def test_the_helpers_docstring_examples_run():
    for module in (lib_stats, lib_runs):
        assert doctest.testmod(module).failed == 0


def test_spearman_rows_equals_scipy_with_ties_and_infinities():
    rng = np.random.default_rng(3)
    for _ in range(50):
        x = rng.integers(0, 5, 12).astype(float)
        x[rng.integers(0, 12, 2)] = np.inf
        y = rng.normal(size=12).round(1)
        want = stats.spearmanr(x, y).statistic
        assert lib_stats.spearman_rows(x[None], y[None])[0] == pytest.approx(want, abs=1e-12)
    assert np.isnan(lib_stats.spearman_rows(np.ones((1, 4)), np.arange(4.0)[None])[0])


def test_cluster_bootstrap_resamples_whole_clusters():
    # Monotone within and across clusters: every defined resample has rho = 1.
    x = np.arange(12.0)
    c = lib_stats.bootstrap_spearman(x, 2 * x, np.repeat(list("abcd"), 3), resamples=500, seed=0)
    assert c["rho"] == 1.0 and c["ci"] == [1.0, 1.0] and c["n_clusters"] == 4
    # A resample that draws one cluster only has constant x within... not constant: clusters of
    # one identical x value are, and are counted as undefined rather than dropped silently.
    xs = np.repeat([1.0, 2.0], 3)
    c = lib_stats.bootstrap_spearman(xs, np.arange(6.0), list("aaabbb"), resamples=400, seed=1)
    assert 0 < c["undefined_resamples"] < 400  # about half draw the same cluster twice
    again = lib_stats.bootstrap_spearman(xs, np.arange(6.0), list("aaabbb"), resamples=400, seed=1)
    assert again == c  # seeded
    with pytest.raises(ValueError, match="NaN"):
        lib_stats.bootstrap_spearman([1, math.nan], [1, 2], "ab", resamples=10, seed=0)


def test_the_bootstrap_interval_covers_a_known_correlation():
    # 8 clusters of 3 noisy points on a decreasing line: rho is strongly negative, CI below 0.
    rng = np.random.default_rng(0)
    x = np.repeat(np.arange(8.0), 3) + rng.normal(0, 0.1, 24)
    y = -x + rng.normal(0, 0.5, 24)
    c = lib_stats.bootstrap_spearman(x, y, np.repeat(np.arange(8), 3), resamples=2000, seed=0)
    # (A percentile interval need not contain rho: resamples that repeat a cluster tie ranks.)
    assert c["rho"] < -0.9 and c["ci"][0] < c["ci"][1] < -0.8


def test_paired_effect_is_the_t_interval():
    d = np.array([0.01, 0.03, -0.005, 0.02, 0.012])
    e = lib_stats.paired_effect(d)
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert e["mean"] == pytest.approx(d.mean()) and e["ci"] == pytest.approx([ci.low, ci.high])


@pytest.mark.parametrize(
    ("sign", "ci", "verdict"),
    [
        (-1, [-0.9, -0.2], "confirmed"),
        (+1, [0.1, 0.8], "confirmed"),
        (-1, [0.2, 0.9], "contradicted"),
        (-1, [-0.25, 0.2], "contradicted"),  # inside the null band: no useful prediction
        (-1, [-0.8, 0.4], "unclear"),
        (-1, [math.nan, math.nan], "unclear"),
    ],
)
def test_the_verdict_rule(sign, ci, verdict):
    assert trainability.judge({"ci": ci, "expected_sign": sign}) == verdict


def _runs(record):
    return record["numbers"]["runs"]


def _outcomes(run):
    acc = lib_runs.CHANCE if run["diverged_at"] is not None else run["final_accuracy"]
    steps = math.inf if run["steps_to_target"] is None else run["steps_to_target"]
    return acc, steps


@pytest.mark.slow
def test_quick_correlations_recomputed_from_the_runs(quick_run):
    record = quick_run("trainability").record
    models = record["numbers"]["models"]
    assert len(models) == 2  # ResNet-20 and the deeper one
    for i, (model, m) in enumerate(models.items()):
        mine = [r for r in _runs(record) if r["model"] == model]
        assert {r["scheme"] for r in mine} == set(trainability.SCHEMES)
        primary = (
            "gap_nonzero"
            if all(math.isfinite(float(r["init_gap_nonzero"])) for r in mine)
            else "var"
        )
        assert m["primary_statistic"] == primary
        for key, c in m["correlations"].items():
            stat, outcome = key.split("~")
            x = [float(r[f"init_{stat}"]) for r in mine]  # the JSON writes inf as "inf"
            y = [_outcomes(r)[0 if outcome == "accuracy" else 1] for r in mine]
            # The JSON writes NaN (an outcome constant over the runs) as "nan": float() reads it.
            want = float(lib_stats.spearman_rows(np.array([x]), np.array([y]))[0])
            if math.isfinite(want):
                assert want == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
            assert float(c["rho"]) == pytest.approx(want, abs=1e-12, nan_ok=True)
            again = lib_stats.bootstrap_spearman(
                x, y, [r["scheme"] for r in mine], resamples=c["resamples"], seed=1000 + i
            )
            got = [float(v) for v in c["ci"]]
            assert got == pytest.approx(again["ci"], nan_ok=True)
        assert m["verdict"] == trainability.judge(m["correlations"][f"{primary}~accuracy"])
    verdicts = {m["verdict"] for m in models.values()}
    want = verdicts.pop() if len(verdicts) == 1 else "unclear"
    assert record["verdict"]["isometry at init predicts trainability"] == want


@pytest.mark.slow
def test_quick_runs_are_consistent_and_zero_heads_have_no_jacobian(quick_run):
    record = quick_run("trainability").record
    settings = record["settings"]["budgets"]
    for r in _runs(record):
        target = settings["resnet20"]["target"]
        if r["diverged_at"] is None:
            assert r["final_accuracy"] == r["eval_accuracy"][-1]
            assert r["eval_step"][-1] == r["steps"]
        reached = [
            s for s, a in zip(r["eval_step"], r["eval_accuracy"], strict=True) if a >= target
        ]
        assert r["steps_to_target"] == (reached[0] if reached else None)
        # Fixup and ZerO start with a zero classifier: the input-output Jacobian is 0.
        if r["scheme"] in ("fixup", "zero"):
            assert r["init_rank_fraction"] == 0.0 and math.isinf(float(r["init_var"]))
        else:
            assert r["init_rank_fraction"] > 0.5 and math.isfinite(float(r["init_var"]))
    summary = record["numbers"]["models"]
    for model, m in summary.items():
        for scheme, row in m["schemes"].items():
            mine = [r for r in _runs(record) if (r["model"], r["scheme"]) == (model, scheme)]
            accs = sorted(_outcomes(r)[0] for r in mine)
            assert row["median_final_accuracy"] == accs[len(accs) // 2]


@pytest.mark.slow
def test_quick_idinit_run_equals_isokits_trainer(quick_run):
    """ResNet-20 IDInit, seed 0, retrained here with isokit.train: the same held-out curve."""
    import torch

    import isokit
    from isokit.models import ResNet
    from isokit.train import load_data, train

    record = quick_run("trainability").record
    b = record["settings"]["budgets"]["resnet20"]
    want = next(
        r for r in _runs(record) if r["scheme"] == "idinit" and r["model"].startswith("resnet20-")
    )
    torch.manual_seed(0)
    model = ResNet(depth=20, width=b["width"], norm="none", in_channels=1, num_classes=10)
    isokit.init.apply(model, "idinit", seed=0)
    data = load_data("fashion-mnist", pad_to=32, channels=1, limit=b["train_limit"])
    threads = torch.get_num_threads()
    torch.set_num_threads(b["threads"])
    try:
        result = train(
            model,
            data,
            optimizer="sgd-momentum",
            lr=b["lr"],
            momentum=b["momentum"],
            batch_size=b["batch_size"],
            steps=b["steps"],
            warmup_steps=b["warmup_steps"],
            target_accuracy=b["target"],
            eval_every=b["steps"] // b["evals"],
            eval_examples=b["eval_examples"],
            seed=0,
        )
    finally:
        torch.set_num_threads(threads)
    assert list(result.eval_step) == want["eval_step"]
    # One held-out example is 0.002 of 500: allow one for float-order differences.
    assert np.allclose(result.eval_accuracy, want["eval_accuracy"], atol=0.0021)
    assert want["final_accuracy"] > 0.2  # it learned: chance is 0.1
