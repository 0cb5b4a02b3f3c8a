"""Branch discovery from the graph torch.export captures with example inputs, on hand-written
models (the same answers as the fx path) and on what capture must not do to a model."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from isokit.init.branch_export import capture
from isokit.init.branches import BranchDiscoveryError, BranchDiscoveryWarning, find_branches
from isokit.structure import ResidualBranch
from tests.init.test_branch_transformers import TimmViT, TinyViT, _layer_branches
from tests.init.test_branches import (
    GatedMLP,
    GLUBlock,
    InPlaceBlock,
    NestedBlocks,
    PosEmbed,
    PreActNet,
    ResMLP,
    ResNet,
    SEBlock,
    Shared,
    _expected_resnet,
)
from tests.torchvision_style import BasicBlock, Bottleneck

IMG = torch.randn(2, 3, 16, 16)
VEC = torch.randn(2, 6)

# model factory, example inputs, the branches the fx tests establish for it
CASES = {
    "resnet-basic": (lambda: ResNet(BasicBlock), IMG, None),
    "resnet-bottleneck": (lambda: ResNet(Bottleneck), IMG, None),
    "preact": (
        PreActNet,
        IMG,
        [
            ResidualBranch(layers=("b1.conv1", "b1.conv2")),
            ResidualBranch(layers=("b2.conv1", "b2.conv2")),
        ],
    ),
    "gates": (
        GatedMLP,
        VEC,
        [
            ResidualBranch(layers=("fc1", "fc2"), gate="alpha"),
            ResidualBranch(layers=("fc3", "fc4"), gate="scale.weight"),
        ],
    ),
    "resmlp-norm": (
        lambda: ResMLP(norm=True),
        torch.randn(2, 4),
        [
            ResidualBranch(layers=(f"blocks.{i}.0", f"blocks.{i}.3"), norm=f"blocks.{i}.4")
            for i in range(3)
        ],
    ),
    "squeeze-excitation": (
        SEBlock,
        torch.randn(2, 8, 6, 6),
        [ResidualBranch(layers=("conv1", "se_fc1", "se_fc2", "conv2"), norm="bn2")],
    ),
    "glu": (GLUBlock, VEC, [ResidualBranch(layers=("gate", "up"))]),
    "in-place": (
        InPlaceBlock,
        VEC,
        [ResidualBranch(layers=("a", "b")), ResidualBranch(layers=("c", "d"))],
    ),
    "nested": (
        NestedBlocks,
        VEC,
        [ResidualBranch(layers=("f1", "f2")), ResidualBranch(layers=("a", "b"))],
    ),
    "shared": (Shared, VEC, [ResidualBranch(layers=("block.0", "block.2"))]),
    "positional": (PosEmbed, (torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2, 4))), []),
    "timm-vit": (
        TimmViT,
        IMG[:, :, :8, :8],
        [
            ResidualBranch(layers=(f"blocks.{i}.{a}", f"blocks.{i}.{b}"))
            for i in range(2)
            for a, b in (("attn.qkv", "attn.proj"), ("mlp.fc1", "mlp.fc2"))
        ],
    ),
    "torch-transformer": (
        TinyViT,
        IMG[:, :, :8, :8],
        _layer_branches("encoder.layers.0.") + _layer_branches("encoder.layers.1."),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_export_finds_what_fx_finds(case):
    make, inputs, expected = CASES[case]
    torch.manual_seed(0)
    model = make()
    if expected is None:
        expected = _expected_resnet(model, bottleneck="bottleneck" in case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the capture itself succeeds: no fallback warning
        assert find_branches(model, example_inputs=inputs) == expected
    assert find_branches(model) == expected  # and the fx path agrees


class Seq2Seq(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.t = nn.Transformer(d, 2, 1, 1, 16, batch_first=True)
        self.head = nn.Linear(d, 3)

    def forward(self, src, tgt):
        return self.head(self.t(src, tgt))


def test_transformer_modules_inside_a_captured_model_are_presets():
    model = Seq2Seq()
    enc, dec = "t.encoder.layers.0", "t.decoder.layers.0"
    expected = [
        *_layer_branches(f"{enc}."),
        ResidualBranch(layers=(f"{dec}.self_attn", f"{dec}.self_attn.out_proj")),
        ResidualBranch(layers=(f"{dec}.multihead_attn", f"{dec}.multihead_attn.out_proj")),
        ResidualBranch(layers=(f"{dec}.linear1", f"{dec}.linear2")),
    ]
    inputs = (torch.randn(2, 4, 8), torch.randn(2, 3, 8))
    assert find_branches(model, example_inputs=inputs) == expected
    assert find_branches(model) == expected


class ShapeBranching(nn.Module):
    """fx cannot follow `if x.shape[1] > 4` (a proxy in a condition); export sees real shapes."""

    def __init__(self, d=6):
        super().__init__()
        self.f1, self.f2, self.g = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, *, scale=1.0):
        if x.shape[1] > 4:
            x = x + self.f2(torch.relu(self.f1(x)))
        return self.g(x) * scale


def test_export_where_fx_cannot_trace():
    model = ShapeBranching()
    expected = [ResidualBranch(layers=("f1", "f2"))]
    assert find_branches(model, example_inputs=VEC) == expected
    assert find_branches(model, example_inputs=(VEC,)) == expected
    assert find_branches(model, example_inputs={"x": VEC, "scale": 2.0}) == expected
    with pytest.raises(BranchDiscoveryError, match="no example_inputs were given"):
        find_branches(model)


class Outputs(nn.Module):
    """Returns what HF models return: records with non-tensor members, and takes use_cache."""

    def __init__(self, d=6):
        super().__init__()
        self.f1, self.f2 = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, use_cache=True):
        if use_cache:
            raise RuntimeError("a cache was requested during capture")
        y = x + self.f2(self.f1(x))
        return {"last": y, "cache": object(), "extra": [("text", y.sum())], "none": None}


def test_non_tensor_outputs_and_use_cache():
    model = Outputs()
    # the forward defaults to use_cache=True and refuses it: capture passed use_cache=False
    assert find_branches(model, example_inputs=VEC) == [ResidualBranch(layers=("f1", "f2"))]
    with pytest.raises(BranchDiscoveryError, match="a cache was requested"):
        # an explicit use_cache=True is honoured, and its failure is named in the error
        find_branches(model, example_inputs={"x": VEC, "use_cache": True})


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def test_capture_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = ResNet(BasicBlock)
    model.train()
    model.layer1.eval()  # mixed modes are restored module by module
    model(IMG)  # running statistics away from their initial values
    before = _state(model)
    modes = {n: m.training for n, m in model.named_modules()}
    rng = torch.get_rng_state()
    params = [id(p) for p in model.parameters()]
    capture(model, IMG)
    after = _state(model)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert modes == {n: m.training for n, m in model.named_modules()}
    assert torch.equal(rng, torch.get_rng_state())
    assert params == [id(p) for p in model.parameters()]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class DataDependent(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.f1, self.f2 = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        if x.sum() > 0:  # neither fx nor export follows a branch on a tensor's value
            return x + self.f2(self.f1(x))
        return x


def test_error_names_every_route():
    with pytest.raises(BranchDiscoveryError) as info:
        find_branches(DataDependent(), example_inputs=VEC)
    msg = str(info.value)
    for needle in (
        "DataDependent",
        "(1) torch.export could not capture DataDependent with example_inputs",
        "(2) torch.fx could not trace DataDependent (TraceError",
        "(3) no preset",
        "example_inputs=",
        "branches=",
        "branch_last=",
    ):
        assert needle in msg, needle
    with pytest.raises(BranchDiscoveryError) as info:
        find_branches(DataDependent())
    assert "(1) no example_inputs were given, so torch.export was not tried" in str(info.value)


def test_export_failure_then_fx_warns():
    """A forward export cannot capture but fx can: fx answers, and the warning says why."""

    class ExportOnlyFails(ResMLP):
        def forward(self, x):
            if not isinstance(x, torch.fx.Proxy) and x.sum() > 1e9:
                x = x * 1.0
            return super().forward(x)

    model = ExportOnlyFails()
    with pytest.warns(BranchDiscoveryWarning, match="torch.export could not capture.*fx traced"):
        found = find_branches(model, example_inputs=torch.randn(2, 4))
    assert found == [ResidualBranch(layers=(f"blocks.{i}.0", f"blocks.{i}.3")) for i in range(3)]
