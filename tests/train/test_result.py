"""TrainResult's JSON form: an exact round trip (arrays bit for bit, NaN and inf included,
checkpoint Profiles included) and a named field for every kind of corruption."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from isokit.probe import ProbeOptions
from isokit.train import TrainResult, TrainResultFormatError, load_data, train
from tests.train.reference import blobs, mlp

ARRAYS = ("step", "loss", "accuracy", "lr", "eval_step", "eval_loss", "eval_accuracy")


@pytest.fixture(scope="module")
def finished() -> TrainResult:
    return train(
        mlp(6, 8, depth=2, out_features=3, activation="tanh"),
        blobs(),
        optimizer="sgd-momentum",
        lr=0.1,
        batch_size=16,
        steps=12,
        eval_every=4,
        target_accuracy=0.6,
        grad_norms=True,
        checkpoints=[0, 12],
        probe_options=ProbeOptions(method="exact"),
        meta={"model": "mlp", "scheme": "torch-default"},
    )


@pytest.fixture(scope="module")
def diverged() -> TrainResult:
    """A linear net in float32 at lr 10: the logits overflow and cross-entropy turns NaN."""
    return train(
        mlp(6, 8, depth=2, out_features=3, activation="linear"),
        blobs(),
        lr=10.0,
        batch_size=16,
        steps=50,
        grad_norms=True,
        checkpoints=[0],
        probe_options=ProbeOptions(method="exact"),
    )


def _same_bits(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Equal dtype, shape, NaN positions and the exact bits of every other entry (−0.0 and inf
    included; NaN payloads carry no meaning)."""
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return a.tobytes() == b.tobytes()
    nan = np.isnan(a)
    return bool((nan == np.isnan(b)).all()) and a[~nan].tobytes() == b[~nan].tobytes()


def _assert_same(got: TrainResult, want: TrainResult) -> None:
    for name in ARRAYS:
        assert _same_bits(getattr(got, name), getattr(want, name)), name
    assert _same_bits(got.grad_norms, want.grad_norms) and got.grad_taps == want.grad_taps
    assert got.options == want.options
    for name in ("steps", "diverged_at", "steps_to_target", "wall_time_s"):
        assert getattr(got, name) == getattr(want, name), name
    assert (got.data, got.environment, got.meta) == (want.data, want.environment, want.meta)
    assert sorted(got.checkpoints) == sorted(want.checkpoints)
    for step, profile in want.checkpoints.items():
        other = got.checkpoints[step]
        for mine, theirs in zip(other.taps, profile.taps, strict=True):
            assert _same_bits(mine.singular_values, theirs.singular_values)
        assert other.to_dict() == profile.to_dict()


@pytest.mark.parametrize("which", ["finished", "diverged"])
def test_the_json_round_trip_is_exact(which, request, tmp_path):
    result = request.getfixturevalue(which)
    path = tmp_path / "result.json"
    result.to_json(path)
    back = TrainResult.from_json(path)
    _assert_same(back, result)
    assert back.to_dict() == result.to_dict()  # and it writes the same JSON again
    json.loads(path.read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN literals


def test_the_runs_exercise_what_the_round_trip_must_keep(finished, diverged):
    assert finished.grad_norms.shape == (12, 3) and sorted(finished.checkpoints) == [0, 12]
    assert finished.accuracy is not None and finished.steps_to_target is not None
    assert diverged.diverged_at == 4 == diverged.steps and math.isnan(diverged.loss[-1])
    assert np.isnan(diverged.grad_norms[-1]).all() and np.isnan(diverged.accuracy[-1])
    assert repr(diverged).startswith("TrainResult(blobs, sgd, diverged at step 4")


def test_a_regression_result_round_trips_without_accuracy(tmp_path):
    data = load_data("teacher-student", n_train=32, n_test=8, in_features=4, out_features=2)
    result = train(mlp(4, 5, depth=1, out_features=2), data, steps=3)
    back = TrainResult.from_dict(json.loads(json.dumps(result.to_dict())))
    _assert_same(back, result)
    assert back.accuracy is None and back.to_dict()["train"]["accuracy"] is None


def _set(path: str, value):
    """A mutation writing ``value`` at a dotted path (``a.b[0].c``) of the dict."""

    def mutate(d: dict) -> None:
        *parents, last = path.replace("[", ".[").split(".")
        node = d
        for key in parents:
            node = node[int(key[1:-1])] if key.startswith("[") else node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last[1:-1]) if last.startswith("[") else last] = value

    return mutate


_DELETE = object()

CORRUPTIONS = [
    (_set("steps", _DELETE), "steps", "missing"),
    (_set("extra", 1), "extra", "unknown field"),
    (_set("schema", "isokit.train.result/0"), "schema", "re-run the training"),
    (_set("options.lr", -1), "options.lr", "finite number > 0"),
    (_set("options.lrr", 0.1), "options.lrr", "did you mean 'lr'"),
    (_set("train.loss", [1.0]), "train.loss", "has shape [1]"),
    (_set("train.step", "0..11"), "train.step", "must be an array"),
    (_set("train.lr", _DELETE), "train.lr", "missing"),
    (_set("eval.accuracy", [0.5]), "eval.accuracy", "has shape [1]"),
    (_set("grad_norms.values", [[1.0, 2.0, 3.0]]), "grad_norms.values", "has shape [1, 3]"),
    (_set("grad_norms.taps", "acts.0"), "grad_norms.taps", "must be"),
    (_set("grad_norms.taps", [1, 2, 3]), "grad_norms.taps[0]", "non-empty string"),
    (_set("checkpoints[0].step", -1), "checkpoints[0].step", "non-negative"),
    (_set("checkpoints[1].step", 0), "checkpoints[1].step", "appears twice"),
    (_set("checkpoints[0].profile.taps", "x"), "checkpoints[0].profile.taps", ""),
    (_set("diverged_at", "3"), "diverged_at", "must be"),
    (_set("diverged_at", 5), "diverged_at", "a diverged run stops there"),
    (_set("steps", 4), "train.step", "after the run's last step 4"),
    (_set("steps_to_target", 1.5), "steps_to_target", "must be"),
    (_set("wall_time_s", "fast"), "wall_time_s", "must hold numbers"),
    (_set("meta", []), "meta", "must be an object"),
]


@pytest.mark.parametrize(("mutate", "field", "match"), CORRUPTIONS)
def test_a_corrupted_dict_names_its_field(finished, mutate, field, match):
    d = copy.deepcopy(finished.to_dict())
    mutate(d)
    with pytest.raises(TrainResultFormatError) as info:
        TrainResult.from_dict(d)
    assert info.value.field == field
    assert match in str(info.value)


def test_not_a_result_and_not_json_are_refused(tmp_path):
    with pytest.raises(TrainResultFormatError, match="result: must be an object"):
        TrainResult.from_dict([1, 2])
    path = tmp_path / "broken.json"
    path.write_text('{"schema": ')
    with pytest.raises(TrainResultFormatError, match="is not valid JSON") as info:
        TrainResult.from_json(path)
    assert info.value.field == str(path)
