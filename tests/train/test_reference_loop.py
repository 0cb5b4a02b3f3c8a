"""The trainer against a hand-written PyTorch loop (tests/train/reference.py): the same losses
step by step for every optimizer, the schedule's formula, and checkpoint Profiles equal to the
probe of independently trained weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import isokit
from isokit.probe import ProbeOptions
from isokit.train import load_data, train
from tests.train.reference import (
    blobs,
    dropout_net,
    lr_formula,
    mlp,
    reference_run,
    weights,
)

EXACT = ProbeOptions(method="exact")


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum", "adam"])
@pytest.mark.parametrize("batch_size", [96, 20])
def test_losses_and_weights_equal_a_hand_written_loop(optimizer, batch_size):
    """Dropout, weight decay and (batch 20 of 96) the documented data order; bit for bit."""
    data = blobs()
    model = dropout_net()
    twin = copy.deepcopy(model)
    lr = 0.01 if optimizer == "adam" else 0.05
    result = train(
        model,
        data,
        optimizer=optimizer,
        lr=lr,
        momentum=0.8,  # plain sgd must ignore it
        weight_decay=1e-3,
        batch_size=batch_size,
        steps=12,
        seed=5,
        dtype="float64",
    )
    want = reference_run(
        twin,
        data,
        optimizer=optimizer,
        lr=lr,
        momentum=0.8 if optimizer == "sgd-momentum" else 0.0,
        weight_decay=1e-3,
        batch_size=batch_size,
        steps=12,
        seed=5,
    )
    np.testing.assert_array_equal(result.loss, want)
    assert all(torch.equal(v, weights(twin)[k]) for k, v in weights(model).items())


def test_the_train_accuracy_is_that_of_the_logged_batch():
    data = blobs()
    model = mlp(6, 8, depth=2, out_features=3, activation="tanh").double()
    twin = copy.deepcopy(model)
    result = train(model, data, lr=0.1, batch_size=96, steps=2, dtype="float64")
    with torch.no_grad():
        first = (twin(data.train.inputs).argmax(1) == data.train.targets).double().mean()
    assert result.accuracy[0] == float(first)


@pytest.mark.parametrize(
    ("schedule", "warmup"), [("constant", 0), ("constant", 4), ("cosine", 0), ("cosine", 5)]
)
def test_the_logged_learning_rate_follows_the_schedule_formula(schedule, warmup):
    data = load_data("teacher-student", n_train=32, n_test=8, in_features=4, out_features=2)
    model = mlp(4, 8, depth=2, out_features=2, activation="tanh")
    twin = copy.deepcopy(model)
    total, lr = 20, 0.05
    result = train(
        model,
        data,
        optimizer="sgd-momentum",
        lr=lr,
        batch_size=8,
        steps=total,
        schedule=schedule,
        warmup_steps=warmup,
        dtype="float64",
    )
    want = [lr * lr_formula(s, total=total, schedule=schedule, warmup=warmup) for s in range(total)]
    np.testing.assert_allclose(result.lr, want, rtol=1e-14, atol=0)
    if warmup:
        assert result.lr[0] == pytest.approx(lr / warmup) and result.lr[warmup - 1] == lr
    if schedule == "cosine":
        assert result.lr[warmup] == lr and 0 < result.lr[-1] < lr * 0.02  # → 0 at step `total`
    losses = reference_run(
        twin,
        data,
        optimizer="sgd-momentum",
        lr=lr,
        momentum=0.9,
        batch_size=8,
        steps=total,
        schedule=schedule,
        warmup=warmup,
    )
    np.testing.assert_allclose(result.loss, losses, rtol=1e-12)


def _taps(profile) -> list:
    return profile.to_dict()["taps"]


def test_checkpoints_equal_the_probe_of_independently_trained_weights():
    data = load_data("teacher-student", n_train=48, n_test=12, in_features=5, out_features=3)
    model = isokit.init.apply(mlp(5, 6, depth=3, out_features=3, activation="tanh"), "idinit")
    start = copy.deepcopy(model)
    opts = {"optimizer": "sgd-momentum", "lr": 0.05, "batch_size": 16, "seed": 2}
    result = train(
        model,
        data,
        steps=7,
        checkpoints=[0, 3, 7],
        probe_examples=3,
        probe_options=EXACT,
        dtype="float64",
        **opts,
    )
    assert sorted(result.checkpoints) == [0, 3, 7]
    batch = data.test.inputs[:3]
    want0 = isokit.probe.profile(start, batch, EXACT)
    assert _taps(result.checkpoints[0]) == _taps(want0)
    for k in (3, 7):
        twin = copy.deepcopy(start)
        reference_run(twin, data, optimizer="sgd", momentum=0.9, lr=0.05, batch_size=16, steps=k,
                      seed=2)  # fmt: skip
        assert _taps(result.checkpoints[k]) == _taps(isokit.probe.profile(twin, batch, EXACT)), k
        assert result.checkpoints[k].meta["step"] == k
    assert _taps(result.checkpoints[7]) == _taps(isokit.probe.profile(model, batch, EXACT))
    assert _taps(result.checkpoints[3]) != _taps(want0)  # training moved the spectra


def test_checkpoints_and_grad_norms_do_not_change_the_run():
    """The probes and hooks draw from forked RNG states and read without writing: a run that
    measures gives the same losses as one that does not (dropout makes RNG use visible)."""
    data = blobs()
    plain = train(dropout_net(), data, lr=0.05, batch_size=16, steps=10, dtype="float64")
    measured = train(
        dropout_net(),
        data,
        lr=0.05,
        batch_size=16,
        steps=10,
        dtype="float64",
        grad_norms=True,
        checkpoints=[0, 4, 10],
        probe_options=ProbeOptions(method="lanczos", n_probes=4, lanczos_steps=3),
    )
    np.testing.assert_array_equal(plain.loss, measured.loss)
    np.testing.assert_array_equal(plain.eval_loss, measured.eval_loss)
