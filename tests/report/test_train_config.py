"""The ``[train]`` section of a config and ``isokit train``: checked keys, one training run per
model × scheme × seed equal to training by hand, and a report that carries the results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from isokit.cli import main
from isokit.report import ConfigError, load_results, parse_config
from isokit.report.run import run_one
from isokit.train import TrainOptions, load_data, train

ROOT = Path(__file__).resolve().parents[2]

# Teacher–student regression with 8 inputs and 3 targets: an MLP of 8 → 3 needs no images.
TABLE = {
    "seeds": [0, 1],
    "schemes": ["idinit", "orthogonal"],
    "inputs": {"examples": 2},
    "models": [
        {
            "kind": "mlp",
            "in_features": 8,
            "width": 8,
            "depth": 2,
            "activation": "tanh",
            "out_features": 3,
        }
    ],
    "train": {
        "data": "teacher-student",
        "data_options": {"n_train": 64, "n_test": 32, "in_features": 8, "out_features": 3},
        "optimizer": "sgd-momentum",
        "lr": 0.05,
        "batch_size": 16,
        "steps": 12,
        "eval_every": 4,
        "checkpoints": [0, 12],
        "probe_examples": 2,
    },
}

TOML = """
seeds = [0]
schemes = ["idinit"]
[inputs]
examples = 2
[[models]]
kind = "mlp"
in_features = 8
width = 8
depth = 2
out_features = 3
[train]
data = "teacher-student"
data_options = {n_train = 32, n_test = 16, in_features = 8, out_features = 3}
lr = 0.05
steps = 6
batch_size = 8
checkpoints = [0, 6]
probe_examples = 2
"""


def _with(**train) -> dict:
    table = json.loads(json.dumps(TABLE))
    table["train"].update(train)
    return table


def _error(table: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(table)
    return info.value


# ------------------------------------------------------------------------------ the section


def test_the_section_reads_into_train_options_and_back():
    cfg = parse_config(TABLE)
    assert cfg.train.data == "teacher-student"
    assert cfg.train.options == TrainOptions.from_mapping(
        {k: v for k, v in TABLE["train"].items() if k not in ("data", "data_options")}
    )
    again = parse_config(cfg.to_dict())
    assert again.train == cfg.train and again.to_dict() == cfg.to_dict()


BAD = {
    "unknown option, close match": ({"optimiser": "adam"}, "train.optimiser", "'optimizer'"),
    "optimizer value": ({"optimizer": "rmsprop"}, "train.optimizer", "'sgd-momentum'"),
    "lr not a number": ({"lr": "fast"}, "train.lr", "'fast'"),
    "negative lr": ({"lr": -0.1}, "train.lr", "-0.1"),
    "momentum 1": ({"momentum": 1.0}, "train.momentum", "< 1"),
    "steps and epochs": ({"epochs": 1}, "train.steps", "not both"),
    "checkpoint after the end": ({"checkpoints": [0, 99]}, "train.checkpoints", "[99]"),
    "seed in the section": ({"seed": 3}, "train.seed", "seeds"),
    "unknown data set": ({"data": "cifar10"}, "train.data", "fashion-mnist"),
    "data set typo": ({"data": "teacher_student"}, "train.data", "'teacher-student'"),
    "data option": ({"data_options": {"n_trian": 3}}, "train.data_options", "'n_train'"),
    "batch size zero": ({"batch_size": 0}, "train.batch_size", "0"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_key_is_named_with_the_fix(case):
    change, key, hint = BAD[case]
    err = _error(_with(**change))
    assert err.key == key and hint in err.message, str(err)


def test_checkpoints_after_an_epoch_based_end_are_refused():
    # 64 examples in batches of 16: one epoch is 4 steps, so checkpoint 12 lies after it.
    err = _error(_with(steps=None, epochs=1))
    assert err.key == "train.checkpoints" and "[12]" in err.message and "4" in err.message


def test_a_model_that_does_not_take_the_data_is_refused_naming_it():
    table = _with()
    table["models"][0]["in_features"] = 5
    err = _error(table)
    assert err.key == "models[0].input_shape" and "[5]" in err.message and "[8]" in err.message
    table = _with()
    table["models"][0]["out_features"] = 4
    err = _error(table)
    assert err.key == "models[0]" and "4 outputs" in err.message and "3 targets" in err.message


def test_a_config_without_train_section_has_none_and_writes_none():
    table = {k: v for k, v in TABLE.items() if k != "train"}
    cfg = parse_config(table)
    assert cfg.train is None and "train" not in cfg.to_dict()


# ------------------------------------------------------------------------------ runs


def test_each_run_trains_like_a_hand_built_model_with_its_seed():
    """run_one's training equals train() on a model built, initialized and seeded by hand."""
    from isokit.init import apply
    from isokit.models import MLP

    cfg = parse_config(TABLE)
    data = cfg.train.load()
    for seed in cfg.seeds:
        record = run_one(cfg, cfg.models[0], cfg.schemes[0], seed, data=data)
        assert record.ok and record.train is not None
        assert record.train.options.seed == seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MLP(8, 8, depth=2, activation="tanh", out_features=3)
        apply(model, "idinit", seed=seed)
        options = cfg.train.options.replace(seed=seed)
        by_hand = train(
            model, load_data("teacher-student", **TABLE["train"]["data_options"]), options
        )
        np.testing.assert_array_equal(record.train.loss, by_hand.loss)
        np.testing.assert_array_equal(record.train.eval_loss, by_hand.eval_loss)
        assert sorted(record.train.checkpoints) == [0, 12]
        # The checkpoint at step 0 probes the initialized weights: its m1 is the untrained one.
        np.testing.assert_allclose(
            record.train.checkpoints[0].stat("m1"), by_hand.checkpoints[0].stat("m1"), rtol=0
        )
    seeds = [run_one(cfg, cfg.models[0], cfg.schemes[0], s, data=data).train for s in (0, 1)]
    assert not np.array_equal(seeds[0].loss, seeds[1].loss)


def test_a_model_with_a_start_trains_and_its_checkpoints_measure_from_there():
    from isokit.init import apply
    from isokit.models import MLP
    from isokit.probe import profile

    table = _with()
    table["models"][0].update(depth=3, start="acts.0")
    cfg = parse_config(table)
    data = cfg.train.load()
    record = run_one(cfg, cfg.models[0], cfg.schemes[0], 0, data=data)
    assert record.ok and sorted(record.train.checkpoints) == [0, 12]
    at_init = record.train.checkpoints[0]
    assert at_init.names == record.profile.names == ["acts.1", "acts.2", "head"]
    # The step-0 checkpoint is ∂h_l/∂h_start of the initialized weights on the probe batch.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MLP(8, 8, depth=3, activation="tanh", out_features=3)
    apply(model, "idinit", seed=0)
    by_hand = profile(model, data.test.inputs[:2].float(), start="acts.0")
    np.testing.assert_allclose(at_init.stat("m1"), by_hand.stat("m1"), rtol=1e-12)


def test_isokit_train_writes_every_train_result_and_the_training_figures(tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text(TOML, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    results = load_results(out)
    (record,) = results.records
    assert record.train is not None and record.train.steps == 6
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"isometry_vs_training", "checkpoints_mlp-relu-w8-d2"} <= figures, figures
    assert any(name.startswith("training_") for name in figures)
    assert (out / "training.csv").is_file()


def test_isokit_train_refuses_a_config_without_train_section(tmp_path, capsys):
    config = tmp_path / "probe_only.toml"
    config.write_text(TOML.split("[train]")[0], encoding="utf-8")
    out = tmp_path / "out"
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("isokit: error: train: ") and "has no [train] section" in line
    assert not out.exists()


# ------------------------------------------------------------------------------ Fashion-MNIST


def _fashion_mnist_installed() -> bool:
    from isokit.train import DatasetUnavailableError, load_fashion_mnist

    try:
        load_fashion_mnist("test", limit=1)
    except DatasetUnavailableError:
        return False
    return True


@pytest.mark.slow
def test_the_quick_fashion_mnist_config_trains_and_reports(tmp_path):
    if not _fashion_mnist_installed():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "quick"
    config = ROOT / "analyses" / "configs" / "train_fmnist_quick.toml"
    isokit = shutil.which("isokit", path=str(Path(sys.executable).parent))
    subprocess.run([isokit, "train", str(config), "--out", str(out), "--quiet"], check=True)
    results = load_results(out)
    assert len(results.records) == len(results.config.schemes)
    trained = [r.train for r in results.records if r.train is not None]
    assert trained and all(t.data["name"] == "fashion-mnist" for t in trained)
    # IDInit learns within the run: held-out accuracy well above chance (0.1) at the end.
    idinit = next(r.train for r in results.records if r.scheme == "idinit")
    assert not idinit.diverged and idinit.final_accuracy > 0.3
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"isometry_vs_training", "steps_to_target"} <= figures, figures


def test_checkpoints_probe_the_models_own_taps_like_the_probe_at_init():
    table = json.loads(json.dumps(TABLE))
    table["models"][0]["taps"] = ["acts.1", "head"]
    cfg = parse_config(table)
    record = run_one(cfg, cfg.models[0], cfg.schemes[1], 0, data=cfg.train.load())
    at_init = [t.name for t in record.profile.taps]
    assert at_init == ["acts.1", "head"]
    for step, prof in record.train.checkpoints.items():
        assert [t.name for t in prof.taps] == at_init, step
