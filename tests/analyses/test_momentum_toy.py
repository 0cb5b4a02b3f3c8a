"""analyses/momentum_toy.py (claim C): its helpers against closed forms, its quick run against
the scalar recursion, the sample covariance of the data set and a hand-checked divergence, and
the expected outcomes on fixed seeds."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

from isokit.train import load_data
from tests.analyses.conftest import ANALYSES


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(ANALYSES))
    try:
        spec = importlib.util.spec_from_file_location("momentum_toy", ANALYSES / "momentum_toy.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["momentum_toy"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ANALYSES))
    return module


def test_direction_values_read_a_matrix_in_the_eigenbasis(script):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    values = np.array([1.0, 0.0, -1.0, 0.5, -0.25])
    p = (q @ torch.diag(torch.tensor(values)) @ q.T).numpy()
    np.testing.assert_allclose(script.direction_values(p, q.numpy()), values, atol=1e-12)


def test_scalar_recursion_starts_at_twice_the_trace_and_falls_to_half_of_it(script):
    lam = np.array([0.9, 1.0, 1.1])
    losses = script.scalar_losses(lam, 0.1, 3000)
    assert losses[0] == pytest.approx(2 * lam.sum())  # (1 + 1)² / 2 per direction
    assert losses[-1] == pytest.approx(0.5 * lam.sum(), rel=1e-4)  # w → 0: the saddle
    assert np.all(np.diff(losses) <= 0)


def test_the_effective_step_of_each_case(script):
    cases = {c.name: c for c in script.cases(0.1, 200, True, 2000)}
    assert cases["gd_momentum"].effective_lr == pytest.approx(1.0)
    assert cases["gd_lr_effective"].lr == pytest.approx(cases["gd_momentum"].effective_lr)
    assert cases["sgd_mean"].lr == pytest.approx(0.01) and cases["gd_lr_half"].lr == 0.5
    assert cases["gd_n2x"].n_train == 4000


@pytest.fixture(scope="module")
def record(quick_run):
    return quick_run("momentum_toy").record


@pytest.mark.slow
def test_full_batch_gd_follows_the_scalar_recursion_and_stalls_at_half_the_trace(record):
    numbers = record["numbers"]
    gd = numbers["runs"]["gd"][0]
    data = load_data("linear-negative-identity", seed=0)
    x = data.train.inputs
    half_trace = 0.5 * float(torch.trace(x.T @ x)) / len(x)  # independent of the script
    assert gd["half_trace"] == pytest.approx(half_trace, rel=1e-12)
    assert gd["final_train_loss"] == pytest.approx(half_trace, rel=1e-3)
    assert abs(gd["final_train_loss"] - 5.0) < 0.5  # ≈ d/2
    step, loss = np.asarray(gd["step"]), np.asarray(gd["loss"])
    theory = np.asarray(numbers["theory_gd_loss"])
    assert numbers["theory_gd_step"] == gd["step"]
    np.testing.assert_allclose(loss[step < 1000], theory[step < 1000], rtol=1e-5)
    # Every direction sits at the saddle: the product is 0 there, not −1.
    assert gd["at_saddle"] == 10 and gd["crossed"] == 0
    assert numbers["runs"]["gd_strict"][0]["at_saddle"] == 10


@pytest.mark.slow
def test_momentum_and_minibatches_converge_and_the_controls_do_not(record):
    runs = record["numbers"]["runs"]
    assert runs["gd_momentum"][0]["final_train_loss"] < 1e-8
    assert runs["gd_momentum"][0]["crossed"] == 10
    assert runs["gd_momentum"][0]["effective_lr"] == pytest.approx(1.0)
    assert all(r["final_train_loss"] < 1e-8 and r["crossed"] == 10 for r in runs["sgd"])
    # Plain GD at the momentum run's effective step diverges (curvature 3λ at −I exceeds 2/η).
    effective = runs["gd_lr_effective"][0]
    assert effective["diverged_at"] is not None and effective["diverged_at"] < 100
    assert effective["direction_values"] is None and effective["lr"] == pytest.approx(1.0)
    # At lr 0.5 the first step sends w = 1 to 1 − λ, below 0 exactly where λ > 1.
    half = runs["gd_lr_half"][0]
    lam, values = np.asarray(half["eigenvalues"]), np.asarray(half["direction_values"])
    assert 0 < half["crossed"] < 10
    assert np.array_equal(values < -0.5, lam > 1.0)
    # The loss averaged over outputs is a tenth of the step: SGD no longer converges.
    assert all(r["final_train_loss"] > 1e-3 for r in runs["sgd_mean"])
    # ... while momentum at η/(1−β) equal to GD's step still converges: the inertia, not the
    # step size, carries the directions through the saddle.
    matched = runs["gd_momentum_mean"][0]
    assert matched["effective_lr"] == pytest.approx(runs["gd"][0]["lr"])
    assert matched["final_train_loss"] < 1e-8 and matched["crossed"] == 10


@pytest.mark.slow
def test_the_verdict_follows_its_rule(record, script):
    assert record["verdict"] == script.verdicts(record["numbers"]["runs"], 10)
    assert record["verdict"]["claim C"] == "confirmed"
    for name, case in record["numbers"]["cases"].items():
        beta = 0.9 if case["optimizer"] == "sgd-momentum" else 0.0
        assert case["effective_lr"] == pytest.approx(case["lr"] / (1 - beta)), name
        assert math.isclose(
            record["numbers"]["runs"][name][0]["effective_lr"], case["effective_lr"], rel_tol=1e-12
        )
