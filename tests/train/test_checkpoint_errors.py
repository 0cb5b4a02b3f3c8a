"""A checkpoint whose weights cannot be measured (their Jacobian overflows) is recorded as
failed and training goes on; a caller's mistake at a checkpoint still raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isokit.probe import NonFiniteError, ProbeOptions, TapError, profile
from isokit.train import TrainResult, TrainResultFormatError, train
from tests.train.reference import blobs, mlp


def _overflowing_mlp():
    """A linear MLP with finite float64 logits of order 1e240 whose Jacobian Gram, of order
    1e480, does not fit in float64."""
    model = mlp(6, 12, depth=2, out_features=3, activation="linear").double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e80)
    return model


def _run(model, **kwargs):
    options = dict(lr=1e-200, batch_size=32, steps=4, dtype="float64", checkpoints=[0, 2, 4])
    options["probe_options"] = ProbeOptions(method="exact")
    return train(model, blobs(), **{**options, **kwargs})


def test_an_overflowing_checkpoint_is_recorded_and_training_goes_on():
    model = _overflowing_mlp()
    with pytest.raises(NonFiniteError, match="NaN or inf"):  # the probe alone refuses it
        profile(model, blobs().test.inputs[:2], ProbeOptions(method="exact"))
    result = _run(model)
    assert result.diverged_at is None and result.steps == 4
    assert np.isfinite(result.loss).all() and result.loss.min() > 1e200  # finite, huge logits
    assert result.checkpoints == {}
    assert sorted(result.checkpoint_errors) == [0, 2, 4]
    assert all("NaN or inf" in e for e in result.checkpoint_errors.values())


def test_a_measurable_run_has_no_checkpoint_errors_and_the_same_curves():
    model = mlp(6, 12, depth=2, out_features=3, activation="tanh").double()
    result = _run(model, lr=0.1)
    assert sorted(result.checkpoints) == [0, 2, 4] and result.checkpoint_errors == {}


def test_a_bad_tap_at_a_checkpoint_still_raises():
    model = mlp(6, 12, depth=2, out_features=3, activation="tanh").double()
    with pytest.raises(TapError):
        _run(model, checkpoints=[0], probe_options=ProbeOptions(method="exact", taps=["nope"]))


def test_failed_checkpoints_round_trip_through_json(tmp_path):
    model = mlp(6, 12, depth=2, out_features=3, activation="tanh").double()
    result = _run(model, lr=0.1)
    result.checkpoint_errors[3] = "the Jacobian at tap 'acts.1' holds NaN or inf"
    result.to_json(tmp_path / "r.json")
    back = TrainResult.from_json(tmp_path / "r.json")
    assert back.checkpoint_errors == {3: "the Jacobian at tap 'acts.1' holds NaN or inf"}
    assert sorted(back.checkpoints) == [0, 2, 4]
    for step, p in result.checkpoints.items():
        assert back.checkpoints[step].to_dict() == p.to_dict()
    entries = result.to_dict()["checkpoints"]
    assert [e["step"] for e in entries] == [0, 2, 3, 4]  # one list, in step order


def test_a_step_both_measured_and_failed_is_refused():
    model = mlp(6, 12, depth=2, out_features=3, activation="tanh").double()
    d = _run(model, lr=0.1).to_dict()
    d["checkpoints"].append({"step": 2, "error": "overflow"})
    with pytest.raises(
        TrainResultFormatError, match=r"checkpoints\[3\].step: step 2 appears twice"
    ):
        TrainResult.from_dict(d)
    d["checkpoints"][-1] = {"step": 3, "error": ""}
    with pytest.raises(TrainResultFormatError, match=r"checkpoints\[3\].error"):
        TrainResult.from_dict(d)
