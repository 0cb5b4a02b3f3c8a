"""The trainer's contract: determinism, divergence as an outcome at the right step, held-out
evaluations, run length, and a failed run leaving the model as it was."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import isokit
from isokit.probe import ProbeOptions, TapError
from isokit.train import Split, TrainData, TrainOptionError, load_data, train
from tests.train.reference import (
    blobs,
    dropout_net,
    loss_of,
    mlp,
    reference_run,
    scalar_data,
    weights,
)


def _arrays(result) -> dict[str, np.ndarray]:
    return {
        "loss": result.loss,
        "accuracy": result.accuracy,
        "eval_loss": result.eval_loss,
        "eval_accuracy": result.eval_accuracy,
        "grad_norms": result.grad_norms,
        "lr": result.lr,
    }


def _dropout_run(seed: int):
    model = dropout_net()
    result = train(
        model,
        blobs(),
        optimizer="sgd-momentum",
        lr=0.05,
        batch_size=16,
        steps=24,
        seed=seed,
        eval_every=6,
        grad_norms=True,
        log_every=2,
        dtype="float64",
    )
    return result, weights(model)


def test_the_same_seed_gives_bit_identical_runs_and_another_seed_differs():
    caller_state = torch.get_rng_state()
    first, w_first = _dropout_run(seed=3)
    again, w_again = _dropout_run(seed=3)
    other, w_other = _dropout_run(seed=4)
    assert torch.equal(torch.get_rng_state(), caller_state)  # the caller's RNG is left alone
    for name, value in _arrays(first).items():
        assert value is not None and value.size > 0, name
        assert value.tobytes() == _arrays(again)[name].tobytes(), name
    assert all(torch.equal(w_first[k], w_again[k]) for k in w_first)
    # Another seed: another data order and other dropout masks, so other losses and weights.
    assert not np.array_equal(first.loss[1:], other.loss[1:])
    assert not all(torch.equal(w_first[k], w_other[k]) for k in w_first)


def test_dropout_draws_come_from_the_seeded_torch_stream():
    """Same data order (full batch), other seed: only dropout differs, and it changes the run;
    in eval mode the held-out loss at step 0 cannot depend on the seed."""
    runs = [train(dropout_net(), blobs(), lr=0.05, batch_size=96, steps=5, seed=s) for s in (0, 1)]
    assert runs[0].eval_loss[0] == runs[1].eval_loss[0]
    assert runs[0].loss[0] != runs[1].loss[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_divergence_is_recorded_at_the_first_non_finite_loss(dtype):
    """y = w·x on x = 1, target 0: the loss is ½w² and its gradient w, so lr 3 maps w to −2w and
    the loss 2^(2s−1) overflows when 2^(2s) does: at s = maxexp/2 (512 in float64)."""
    w, expected = dtype(1.0), None
    with np.errstate(over="ignore"):
        for s in range(2000):  # the same arithmetic by hand, in the same precision
            if not np.isfinite(dtype(0.5) * (w * w)):
                expected = s
                break
            w = w - dtype(3.0) * w
    assert expected == np.finfo(dtype).maxexp // 2
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    name = "float64" if dtype is np.float64 else "float32"
    result = train(model, scalar_data(), lr=3.0, batch_size=1, steps=1000, dtype=name)
    assert result.diverged and result.diverged_at == expected == result.steps
    assert result.step.tolist() == list(range(expected + 1))  # the curves end at that step
    assert result.loss[-1] == math.inf and np.isfinite(result.loss[:-1]).all()
    assert result.lr.shape == result.loss.shape
    assert result.eval_step.max() <= expected
    assert abs(model.weight.item()) == 2.0**expected  # not rolled back: divergence is an outcome


def test_a_diverging_linear_network_stops_where_a_hand_written_loop_first_fails():
    data = load_data("linear-negative-identity", n_train=200, n_test=50)
    model = isokit.init.apply(mlp(10, 10, depth=3, activation="linear", bias=False), "idinit")
    reference = reference_run(
        copy.deepcopy(model), data, optimizer="sgd", lr=1.0, steps=300, batch_size=200
    )
    result = train(
        model,
        data,
        lr=1.0,
        batch_size=200,
        steps=300,
        dtype="float64",
        checkpoints=[0, 300],
        probe_options=ProbeOptions(method="exact"),
    )
    assert not math.isfinite(reference[-1]) and len(reference) < 300
    assert result.diverged_at == len(reference) - 1
    np.testing.assert_array_equal(result.loss, reference)
    assert list(result.checkpoints) == [0]  # the one at step 300 was never reached


def test_evaluations_and_the_target_are_measured_on_the_held_out_split():
    data = blobs()
    model = mlp(6, 12, depth=2, out_features=3, activation="tanh")
    result = train(model, data, lr=0.1, batch_size=32, steps=20, eval_every=4, target_accuracy=0.5)
    assert result.eval_step.tolist() == [0, 4, 8, 12, 16, 20]
    model.eval()
    with torch.no_grad():
        out = model(data.test.inputs.float())
    want = float(loss_of("classification", out, data.test.targets))
    assert result.final_loss == pytest.approx(want)
    accuracy = float((out.argmax(1) == data.test.targets).double().mean())
    assert result.final_accuracy == accuracy
    reached = [s for s, a in zip(result.eval_step, result.eval_accuracy, strict=True) if a >= 0.5]
    assert result.steps_to_target == (reached[0] if reached else None)
    assert result.steps_to_target is not None  # three separated clusters: reached in 20 steps


def test_a_regression_run_has_no_accuracy_and_no_target():
    data = load_data("teacher-student", n_train=64, n_test=16, in_features=4, out_features=2)
    result = train(mlp(4, 8, depth=2, out_features=2), data, steps=3, target_accuracy=0.9)
    assert result.accuracy is None and result.eval_accuracy is None
    assert result.final_accuracy is None and result.steps_to_target is None


def test_epochs_count_batches_per_pass_and_eval_examples_cut_the_held_out_split():
    data = blobs(n_train=100, n_test=40)
    model = mlp(6, 8, depth=2, out_features=3)
    result = train(model, data, epochs=2, batch_size=32, log_every=3, eval_examples=10)
    assert result.steps == 2 * math.ceil(100 / 32)
    assert result.step.tolist() == [0, 3, 6, 7]  # every log_every-th step and the last
    model.eval()
    with torch.no_grad():
        out = model(data.test.inputs[:10].float())
    want = float(loss_of("classification", out, data.test.targets[:10]))
    assert result.final_loss == pytest.approx(want)


def test_checkpoints_past_an_epoch_run_are_refused_before_training():
    model = mlp(6, 8, depth=2, out_features=3)
    before = weights(model)
    with pytest.raises(TrainOptionError, match="checkpoints") as info:
        train(model, blobs(n_train=100), epochs=1, batch_size=50, checkpoints=[0, 3])
    assert info.value.option == "checkpoints"
    assert all(torch.equal(before[k], v) for k, v in weights(model).items())


def _assert_untouched(model: nn.Module, before: dict, *, training: bool) -> None:
    after = weights(model)
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype and torch.equal(after[key], value), key
    assert all(m.training == training for m in model.modules())


def test_inputs_that_do_not_fit_the_model_are_refused_and_leave_it_as_it_was():
    data = load_data("linear-negative-identity", n_train=20, n_test=5, dim=12)
    model = mlp(10, 10, depth=2).eval()
    before = weights(model)
    with pytest.raises(ValueError, match=r"inputs of shape \[12\]"):
        train(model, data, steps=3, dtype="float64")
    _assert_untouched(model, before, training=False)


@pytest.mark.parametrize(("outputs", "match"), [(3, "needs 10 outputs"), (1, "needs 10 outputs")])
def test_outputs_that_the_loss_would_broadcast_are_refused(outputs, match):
    data = load_data("linear-negative-identity", n_train=20, n_test=5)
    with pytest.raises(ValueError, match=match):
        train(mlp(10, 4, depth=1, out_features=outputs), data, steps=2)


def test_a_wrong_number_of_logits_is_refused():
    with pytest.raises(ValueError, match=r"3 classes, so it needs \[3\] logits"):
        train(mlp(6, 4, depth=1, out_features=5), blobs(), steps=2)


class _FailsOnCall(nn.Module):
    """Wraps a model and raises on its ``n``-th training-mode forward."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.n:
                raise RuntimeError("boom")
        return self.inner(x)


def test_an_error_during_training_puts_back_values_dtype_and_modes():
    model = _FailsOnCall(dropout_net().float(), n=4)
    model.train()
    model.inner[2].eval()  # a per-module mode the run must not leave changed
    before = weights(model)
    with pytest.raises(RuntimeError, match="boom"):
        train(model, blobs(), lr=0.5, batch_size=16, steps=10, dtype="float64")
    assert model.calls == 4  # three updates happened before the error
    after = weights(model)
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], before[k]) for k in after)
    assert model.training and not model.inner[2].training and model.inner[0].training


def test_unknown_taps_are_refused_and_leave_the_model_as_it_was():
    model = mlp(6, 8, depth=2, out_features=3)
    before = weights(model)
    with pytest.raises(TapError):
        train(model, blobs(), steps=2, grad_norms=True, taps="nope.*", dtype="float64")
    _assert_untouched(model, before, training=True)


def test_bad_arguments_name_what_is_wrong():
    model = mlp(6, 8, depth=2, out_features=3)
    with pytest.raises(TrainOptionError, match="lrr: unknown training option; did you mean 'lr'"):
        train(model, blobs(), lrr=0.1)
    with pytest.raises(TrainOptionError, match="options: must be TrainOptions"):
        train(model, blobs(), {"lr": 0.1})
    frozen = mlp(6, 8, depth=1, out_features=3).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(frozen, blobs(), steps=2)


def test_full_batch_float32_training_takes_the_inputs_as_they_are():
    # A TrainData with float32 inputs and a float32 model: nothing is cast behind the caller.
    x = torch.randn(8, 3)
    data = TrainData(
        name="tiny",
        task="regression",
        train=Split(inputs=x, targets=x.clone()),
        test=Split(inputs=x, targets=x.clone()),
    )
    model = nn.Sequential(nn.Linear(3, 3))
    result = train(model, data, lr=0.1, batch_size=8, steps=4)
    assert next(model.parameters()).dtype == torch.float32
    assert result.steps == 4 and result.loss[3] < result.loss[0]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_loss_is_the_documented_one(task):
    if task == "classification":
        data, model = blobs(), mlp(6, 8, depth=2, out_features=3, activation="tanh")
    else:
        data = load_data("teacher-student", n_train=40, n_test=8, in_features=6, out_features=3)
        model = mlp(6, 8, depth=2, out_features=3, activation="tanh")
    twin = copy.deepcopy(model).double()
    result = train(model, data, batch_size=len(data.train), steps=1, dtype="float64")
    with torch.no_grad():
        want = loss_of(task, twin(data.train.inputs), data.train.targets)
    assert result.loss[0] == pytest.approx(float(want), rel=1e-14, abs=0)


def test_the_probe_batch_is_the_first_held_out_inputs_whatever_eval_examples_keeps():
    data = blobs()
    result = train(
        mlp(6, 8, depth=2, out_features=3),
        data,
        steps=2,
        eval_examples=2,
        probe_examples=5,
        checkpoints=[0],
        probe_options=ProbeOptions(method="exact"),
    )
    assert result.checkpoints[0].meta["n_examples"] == 5


def test_the_progress_bar_goes_to_stderr_and_does_not_stay(capsys):
    train(mlp(6, 8, depth=2, out_features=3), blobs(), steps=3, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "0/3" in captured.err and captured.err.endswith("\r")
    train(mlp(6, 8, depth=2, out_features=3), blobs(), steps=3)
    assert capsys.readouterr().err == ""
