"""TrainOptions: every bad value is refused naming its option; run length, checkpoints,
warm-up and evaluation steps; the mapping form and the effective step."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from isokit.train import TrainOptionError, TrainOptions

#: For every option, values it must refuse (wrong type, out of range, non-finite).
BAD: dict[str, list] = {
    "optimizer": ["rmsprop", "SGD", None, 1],
    "lr": [0, -0.1, math.nan, math.inf, "0.1", True, None],
    "momentum": [1.0, -0.1, math.nan, "0.9", False],
    "weight_decay": [-1e-4, math.inf, "0", None],
    "batch_size": [0, -3, 1.5, 128.0, True, "128"],
    "steps": [0, -1, 10.0, True, "10"],
    "epochs": [0, 1.5, False],
    "schedule": ["linear", "Cosine", None],
    "warmup_steps": [-1, 0.5, None],
    "seed": [-1, 1.5, "0", None, True],
    "target_accuracy": [0, -0.5, 1.5, math.nan, "0.9", True],
    "checkpoints": ["0,10", 10, [0, 0], [-1], [1.5], [True], {0: 1}],
    "eval_every": [0, 2.0, True],
    "eval_examples": [0, -5, "all"],
    "log_every": [0, None, 1.0],
    "grad_norms": [1, 0, "yes", None],
    "probe_examples": [0, None, 2.5],
    "dtype": ["float16", "double", None],
}


def test_the_table_of_bad_values_covers_every_option():
    assert set(BAD) == set(TrainOptions.names())


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in BAD.items() for value in values]
)
def test_every_bad_value_is_refused_naming_its_option(name, value):
    with pytest.raises(TrainOptionError) as info:
        TrainOptions(**{name: value})
    assert info.value.option.split("[")[0] == name
    assert str(info.value).startswith(info.value.option + ": ")
    if not isinstance(value, dict | list):
        assert repr(value) in str(info.value) or "duplicates" in str(info.value)


def test_good_values_are_normalized_to_plain_python():
    opts = TrainOptions(
        lr=np.float32(0.5),
        batch_size=np.int64(32),
        momentum=0,
        checkpoints=[100, 0, np.int32(10)],
        grad_norms=np.bool_(True),
        target_accuracy=1,
    )
    assert opts.lr == 0.5 and type(opts.lr) is float and type(opts.momentum) is float
    assert opts.batch_size == 32 and type(opts.batch_size) is int
    assert opts.checkpoints == (0, 10, 100) and all(type(c) is int for c in opts.checkpoints)
    assert opts.grad_norms is True and opts.target_accuracy == 1.0
    json.dumps(opts.to_dict())  # plain JSON


def test_steps_and_epochs_together_are_refused():
    with pytest.raises(TrainOptionError, match="give steps or epochs, not both") as info:
        TrainOptions(steps=10, epochs=1)
    assert info.value.option == "steps"


def test_checkpoints_and_warmup_past_the_end_are_refused():
    with pytest.raises(TrainOptionError, match=r"\[11, 20\] lie after the run's last step 10"):
        TrainOptions(steps=10, checkpoints=[0, 10, 11, 20])
    assert TrainOptions(steps=10, checkpoints=[0, 10]).checkpoints == (0, 10)
    with pytest.raises(TrainOptionError, match="warmup_steps: 11 is longer than the run"):
        TrainOptions(steps=10, warmup_steps=11)
    # With epochs the length is known only with the data: total_steps checks then.
    opts = TrainOptions(epochs=2, batch_size=50, checkpoints=[0, 5])
    with pytest.raises(TrainOptionError, match=r"\[5\] lie after the run's last step 4"):
        opts.total_steps(100)
    assert opts.total_steps(150) == 6
    with pytest.raises(TrainOptionError, match="checkpoints"):
        TrainOptions(checkpoints=[101]).total_steps(10)  # the default run is 100 steps


@pytest.mark.parametrize(
    ("kwargs", "n_train", "steps"),
    [
        ({"steps": 7}, 10, 7),
        ({"epochs": 1, "batch_size": 128}, 1000, 8),  # ceil(1000 / 128)
        ({"epochs": 3, "batch_size": 100}, 1000, 30),
        ({"epochs": 2, "batch_size": 5000}, 1000, 2),  # full batch: one step per epoch
        ({}, 1000, 100),
    ],
)
def test_the_run_length(kwargs, n_train, steps):
    assert TrainOptions(**kwargs).total_steps(n_train) == steps


@pytest.mark.parametrize(
    ("every", "total", "want"),
    [
        (None, 100, list(range(0, 101, 10))),
        (None, 5, [0, 1, 2, 3, 4, 5]),
        (7, 20, [0, 7, 14, 20]),
        (50, 20, [0, 20]),
    ],
)
def test_evaluations_include_the_first_and_last_steps(every, total, want):
    assert TrainOptions(eval_every=every).eval_steps(total) == want


@pytest.mark.parametrize(
    ("key", "hint"),
    [("lrr", "did you mean 'lr'"), ("batchsize", "did you mean 'batch_size'"), ("zzz", "")],
)
def test_unknown_keys_are_refused_with_the_close_match(key, hint):
    builds = (
        lambda: TrainOptions().replace(**{key: 1}),
        lambda: TrainOptions.from_mapping({key: 1}),
    )
    for build in builds:
        with pytest.raises(TrainOptionError, match="unknown training option") as info:
            build()
        assert info.value.option == key and hint in str(info.value)
        assert "allowed: optimizer, lr" in str(info.value)


def test_the_mapping_form_reads_back_and_refuses_non_tables():
    opts = TrainOptions(
        optimizer="adam", lr=3e-4, steps=50, checkpoints=[0, 25, 50], target_accuracy=0.8
    )
    again = TrainOptions.from_mapping(json.loads(json.dumps(opts.to_dict())))
    assert again == opts
    with pytest.raises(TrainOptionError, match="options: must be a table"):
        TrainOptions.from_mapping([("lr", 0.1)])
    assert opts.replace(lr=0.1).lr == 0.1 and opts.lr == 3e-4  # frozen: replace copies


@pytest.mark.parametrize(
    ("optimizer", "lr", "momentum", "effective"),
    [("sgd-momentum", 0.1, 0.9, 1.0), ("sgd-momentum", 0.2, 0.0, 0.2), ("sgd", 0.1, 0.9, 0.1),
     ("adam", 1e-3, 0.9, 1e-3)],
)  # fmt: skip
def test_the_effective_step(optimizer, lr, momentum, effective):
    opts = TrainOptions(optimizer=optimizer, lr=lr, momentum=momentum)
    assert opts.effective_lr == pytest.approx(effective, rel=1e-15)
