"""analyses/dead_weights.py (claim D): its first batch and step-1 gradients against what
``isokit.train.train`` actually does, and its quick run's fractions against properties derived
from the initializations (a zero classifier blocks every gradient below it; IDInit's truncated
IDI head passes gradient to 10 of the last stage's 64 channels; the Zero-γ + zero-conv pair
never moves)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import pytest
import torch

import isokit
from isokit.models import ResNet
from isokit.train import Split, TrainData, train
from tests.analyses.conftest import ANALYSES

NAME = "dead_weights"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(ANALYSES))
    try:
        spec = importlib.util.spec_from_file_location(NAME, ANALYSES / f"{NAME}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ANALYSES))
    return module


def _data(n: int = 24) -> TrainData:
    gen = torch.Generator().manual_seed(3)
    split = Split(
        inputs=torch.rand(n, 3, 8, 8, generator=gen, dtype=torch.float64),
        targets=torch.randint(0, 10, (n,), generator=gen),
    )
    return TrainData(name="toy", task="classification", train=split, test=split, num_classes=10)


def test_step_one_gradients_are_the_first_update_of_train(script):
    """One plain SGD step of train moves every parameter by −lr × the gradient the script
    computes on its first batch: the same batch, the same mode, the same loss."""
    data = _data()
    torch.manual_seed(0)
    model = isokit.init.apply(ResNet(depth=8, width=4), "kaiming-normal", seed=0).double()
    names = [n for n, _ in model.named_parameters()]
    grads = script.step_one_gradients(model, script.first_batch(data, 8, seed=5), names, "cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, data, optimizer="sgd", lr=0.5, batch_size=8, steps=1, seed=5, dtype="float64")
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - 0.5 * grads[n], rtol=0, atol=1e-12)


def test_groups_name_the_branch_layers_stem_and_classifier(script):
    groups = script.groups_of(ResNet(depth=8, width=2, shortcut="conv"))
    assert groups["stem.0.weight"] == "stem" and groups["fc.weight"] == "classifier"
    assert groups["layer2.0.conv1.weight"] == "branch first layer"
    assert groups["layer2.0.conv2.weight"] == "branch last layer"
    assert groups["layer2.0.downsample.0.weight"] == "shortcut"
    assert all(name.endswith("weight") for name in groups)  # biases are not weights


def test_the_zero_gamma_pair_zeroes_the_last_conv_and_its_gamma(script):
    setting = next(s for s in script.SETTINGS if s.zero_last_conv)
    args = argparse.Namespace(depth=8, width=2)
    model = script.build(setting, args, seed=0)
    for block in (model.layer1[0], model.layer2[0], model.layer3[0]):
        assert torch.all(block.conv2.weight == 0) and torch.all(block.bn2.weight == 0)
        assert torch.any(block.conv1.weight != 0)


def _param(record, key: str, name: str) -> dict:
    return next(p for p in record["numbers"]["runs"][key][0]["params"] if p["name"] == name)


@pytest.mark.slow
def test_a_zero_classifier_blocks_every_gradient_below_it(quick_run):
    summary = quick_run(NAME).record["numbers"]["summary"]
    for key in ("fixup", "zero"):
        for group in ("stem", "branch first layer", "branch last layer"):
            assert summary[key]["zero_grad"][group] == 1.0, (key, group)
    # Exact zero on the branch's last conv: no gradient reaches the first conv at step 1.
    assert summary["idinit-zero"]["zero_grad"]["branch first layer"] == 1.0


@pytest.mark.slow
def test_the_truncated_idi_head_feeds_back_ten_of_sixty_four_channels(quick_run):
    """fc = [I | 0] reads pooled features 0-9, so the last stage's gradient lives on channels
    0-9 and every conv2 row of output channel 10-63 has zero gradient at step 1; tiling the
    head reads every feature, and most of those rows get a gradient."""
    record = quick_run(NAME).record
    for block in range(3):  # ResNet-20: three blocks per stage
        truncate = _param(record, "idinit-idiz", f"layer3.{block}.conv2.weight")
        tile = _param(record, "idinit-idiz-tile", f"layer3.{block}.conv2.weight")
        assert truncate["zero_grad"] >= 54 / 64 - 1e-12
        assert tile["zero_grad"] < 0.5
    summary = record["numbers"]["summary"]
    assert summary["idinit-idiz"]["zero_grad"]["classifier"] == 0.0


@pytest.mark.slow
def test_the_zero_gamma_zero_conv_pair_never_moves(quick_run):
    record = quick_run(NAME).record
    for p in record["numbers"]["runs"]["zero-gamma-zero-conv"][0]["params"]:
        if p["group"] in ("branch first layer", "branch last layer") or p["name"].endswith(
            "bn2.weight"
        ):
            assert p["unmoved"] == 1.0 and p["zero_grad"] == 1.0, p["name"]
    # Nearly everything IDInit (idiz) starts with moves within the quick run's few steps (a
    # float32 update below half an ulp of its weight can leave a few entries as they were).
    assert record["numbers"]["summary"]["idinit-idiz"]["unmoved"]["all weights"] < 0.01


@pytest.mark.slow
def test_summaries_and_verdicts_follow_from_the_per_parameter_records(quick_run, script):
    record = quick_run(NAME).record
    numbers = record["numbers"]
    for key, runs in numbers["runs"].items():
        for metric in ("zero_grad", "unmoved"):
            weights = [p for p in runs[0]["params"] if p["group"] != "bias, gain or scalar"]
            total = sum(p["numel"] for p in weights)
            expected = sum(p[metric] * p["numel"] for p in weights) / total
            assert numbers["summary"][key][metric]["all weights"] == pytest.approx(expected)
    assert record["verdict"] == script.verdicts(numbers["summary"])[0]
    assert record["verdict"]["the Zero-γ + zero-conv pair stays dead"] == "confirmed"
    stems = {f.rsplit(".", 1)[0] for f in record["figures"]}
    assert stems == {f"{NAME}_step1", f"{NAME}_unmoved"}
