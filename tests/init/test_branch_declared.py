"""Branch discovery's errors and declared branches: branches=, branch_last= (completed from
the graph or the module tree), residual_branches(), and a property test on random stacks."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from isokit.init.branches import BranchDiscoveryError, find_branches
from isokit.structure import ResidualBranch
from tests.init.test_branch_transformers import _layer_branches
from tests.init.test_branches import (
    GatedMLP,
    ResMLP,
    ResNet,
    UntraceableBottleneck,
    UntraceableResNet,
    _expected_resnet,
)
from tests.torchvision_style import BasicBlock, Bottleneck

# ----------------------------------------------------------------- errors and declarations


class TwoTowers(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_equal_weight_counts_raise():
    with pytest.raises(BranchDiscoveryError, match="ambiguous.*'a'.*'b'.*branch_last="):
        find_branches(TwoTowers())


class DataDependent(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.f1, self.f2 = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        if x.sum() > 0:
            return x + self.f2(self.f1(x))
        return x


def test_untraceable_without_preset_raises_howto():
    with pytest.raises(BranchDiscoveryError) as info:
        find_branches(DataDependent())
    msg = str(info.value)
    for needle in (
        "DataDependent",
        "TraceError",
        "residual_branches()",
        "branches=",
        "branch_last=",
    ):
        assert needle in msg
    assert isinstance(info.value, ValueError)
    assert find_branches(DataDependent(), branch_last=["f2"]) == [
        ResidualBranch(layers=("f1", "f2"))
    ]


class Declares(ResMLP):
    def residual_branches(self):
        return [ResidualBranch(layers=("blocks.0.3",))]


def test_explicit_branches_win():
    model = Declares()
    assert find_branches(model) == [ResidualBranch(layers=("blocks.0.3",))]
    override = [(["blocks.1.0", "blocks.1.3"], None), ["blocks.2.3"]]
    assert find_branches(model, branches=override) == [
        ResidualBranch(layers=("blocks.1.0", "blocks.1.3")),
        ResidualBranch(layers=("blocks.2.3",)),
    ]
    assert find_branches(GatedMLP(), branches=[(("fc1", "fc2"), "alpha")]) == [
        ResidualBranch(layers=("fc1", "fc2"), gate="alpha")
    ]
    with pytest.raises(BranchDiscoveryError, match="either branches= or branch_last="):
        find_branches(model, branches=[], branch_last=["blocks.0.3"])
    # branches= also wins over an ambiguous or untraceable structure
    assert find_branches(TwoTowers(), branches=[ResidualBranch(layers=("b",))]) == [
        ResidualBranch(layers=("b",))
    ]


def test_branch_last_globs():
    model = ResNet(Bottleneck)
    # the traced graph completes each branch, norm included
    assert find_branches(model, branch_last="layer*.*.conv3") == _expected_resnet(model, True)
    # where no graph is available, the module tree completes it (norm and gate unknown)
    assert find_branches(UntraceableResNet(UntraceableBottleneck), branch_last="*.conv3") == [
        ResidualBranch(layers=b.layers) for b in _expected_resnet(model, bottleneck=True)
    ]
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2, enable_nested_tensor=False)
    # naming the attention module means its output projection
    assert find_branches(enc, branch_last=["*.self_attn", "*.linear2"]) == (
        _layer_branches("layers.0.") + _layer_branches("layers.1.")
    )


class _SelfAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        if x.shape[1] > 1:  # a shape check, as HF attention makes: fx cannot follow it
            x = x * 1.0
        att = torch.softmax(self.query(x) @ self.key(x).transpose(1, 2), -1)
        return att @ self.value(x)


class _Output(nn.Module):
    """BERT's post-norm output: LayerNorm(dense(h) + the block input, passed in)."""

    def __init__(self, d_in, d):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(d_in, d), nn.LayerNorm(d)

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class _Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.self, self.output = _SelfAttention(d), _Output(d, d)

    def forward(self, x):
        return self.output(self.self(x), x)


class _Layer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attention = _Attention(d)
        self.intermediate = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU())
        self.output = _Output(2 * d, d)

    def forward(self, x):
        a = self.attention(x)
        return self.output(self.intermediate(a), a)


class HandBert(nn.Module):
    """BERT's module tree: the skip of each block is added in a submodule that receives it."""

    def __init__(self, d=8, depth=2):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(d) for _ in range(depth))

    def forward(self, x):
        for layer in self.layer:
            x = layer(x)
        return x


def _hand_bert_branches(depth=2):
    out = []
    for i in range(depth):
        a = f"layer.{i}.attention"
        out.append(
            ResidualBranch(
                layers=(f"{a}.self.query", f"{a}.self.key", f"{a}.self.value", f"{a}.output.dense")
            )
        )
        out.append(ResidualBranch(layers=(f"layer.{i}.intermediate.0", f"layer.{i}.output.dense")))
    return out


def test_branch_last_completes_branches_across_submodules():
    model = HandBert()
    lasts = ["*.attention.output.dense", "*.output.dense"]
    # no graph: the module tree of each block completes the branch
    assert find_branches(model, branch_last=lasts) == _hand_bert_branches()
    # with the captured graph, the same branches, and discovery needs no names at all
    x = torch.randn(2, 3, 8)
    assert find_branches(model, branch_last=lasts, example_inputs=x) == _hand_bert_branches()
    assert find_branches(model, example_inputs=x) == _hand_bert_branches()
    with pytest.raises(BranchDiscoveryError, match="hold no residual addition"):
        find_branches(model)


def test_unknown_names_list_close_matches():
    model = ResNet(BasicBlock)
    with pytest.raises(BranchDiscoveryError, match=r"'layer1\.0\.cnv2'.*'layer1\.0\.conv2'"):
        find_branches(model, branches=[("layer1.0.conv1", "layer1.0.cnv2")])
    with pytest.raises(BranchDiscoveryError, match="close matches.*layer1.0.conv2"):
        find_branches(model, branch_last=["layer1.0.conv_2"])
    with pytest.raises(BranchDiscoveryError, match="not a weight layer"):
        find_branches(model, branches=[("layer1.0.bn1",)])
    with pytest.raises(BranchDiscoveryError, match="scalar"):
        find_branches(GatedMLP(), branches=[ResidualBranch(layers=("fc2",), gate="fc1.weight")])


def test_declared_conflicts_raise():
    model = GatedMLP()
    with pytest.raises(BranchDiscoveryError, match="last for one branch and non-last"):
        find_branches(model, branches=[("fc1", "fc2"), ("fc2", "fc3")])
    with pytest.raises(BranchDiscoveryError, match="shared by two branches"):
        find_branches(model, branches=[("fc1", "fc2"), ("fc1", "fc4")])


# ----------------------------------------------------------------- property: random ResMLPs


class RandomResNet(nn.Module):
    def __init__(self, spec, d=4):
        super().__init__()
        self.spec = spec
        self.blocks = nn.ModuleList()
        for depth, _, _ in spec:
            self.blocks.append(nn.ModuleList(nn.Linear(d, d) for _ in range(depth)))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in spec)
        self.gates = nn.ParameterList(nn.Parameter(torch.zeros(())) for _ in spec)

    def forward(self, x):
        for i, (_, norm, gate) in enumerate(self.spec):
            h = x
            for lin in self.blocks[i]:
                h = lin(torch.relu(h))
            if norm:
                h = self.norms[i](h)
            if gate:
                h = self.gates[i] * h
            x = x + h
        return x


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.booleans(), st.booleans()), min_size=1, max_size=4))
def test_random_residual_stacks(spec):
    model = RandomResNet(spec)
    expected = []
    for i, (depth, norm, gate) in enumerate(spec):
        expected.append(
            ResidualBranch(
                layers=tuple(f"blocks.{i}.{j}" for j in range(depth)),
                norm=f"norms.{i}" if norm else None,
                gate=f"gates.{i}" if gate else None,
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_branches(model) == expected


@pytest.mark.parametrize("bad", [True, 3, [1], ["fc", None]])
def test_branch_last_must_name_layers(bad):
    with pytest.raises(BranchDiscoveryError, match="branch_last= must be a layer name or glob"):
        find_branches(nn.Sequential(nn.Linear(2, 2)), branch_last=bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": "conv2"}, "sequence of module names"),  # not ('c', 'o', 'n', 'v', '2')
        ({"layers": ("conv1", 2)}, "non-empty module names"),
        ({"layers": ("conv1", "")}, "non-empty module names"),
        ({"layers": ("conv1",), "gate": 1.0}, "gate must be a module or parameter name"),
        ({"layers": ("conv1",), "norm": ""}, "norm must be a module or parameter name"),
    ],
)
def test_residual_branch_refuses_what_is_not_a_name(kwargs, match):
    with pytest.raises(TypeError, match=match):
        ResidualBranch(**kwargs)
    assert ResidualBranch(layers=["conv1", "conv2"]).layers == ("conv1", "conv2")
