"""Tests for residual-branch discovery (isokit.init.branches): torchvision-style ResNets and
small residual patterns, through the fx trace, block by block and presets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isokit.init.branches import BranchDiscoveryWarning, find_branches, weight_layers
from isokit.structure import ResidualBranch
from tests.torchvision_style import BasicBlock, Bottleneck, conv1x1, conv3x3

# ----------------------------------------------------------------- torchvision-style ResNet


class ResNet(nn.Module):
    def __init__(self, block, layers=(2, 2), num_classes=10):
        super().__init__()
        self.inplanes = 8
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 8, layers[0])
        self.layer2 = self._make_layer(block, 16, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


class UntraceableResNet(ResNet):
    """Same modules, but the forward branches on a tensor value, so torch.fx fails."""

    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


def _blocks(model):
    return [n for n, m in model.named_modules() if isinstance(m, BasicBlock | Bottleneck)]


def _expected_resnet(model, bottleneck: bool):
    k = 3 if bottleneck else 2
    return [
        ResidualBranch(layers=tuple(f"{b}.conv{i}" for i in range(1, k + 1)), norm=f"{b}.bn{k}")
        for b in _blocks(model)
    ]


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_resnet_branches(block):
    model = ResNet(block)
    found = find_branches(model)
    assert found == _expected_resnet(model, block is Bottleneck)
    on_branch = {name for b in found for name in b.layers}
    shortcuts = [n for n in weight_layers(model) if n.endswith("downsample.0")]
    assert "layer2.0.downsample.0" in shortcuts
    assert not on_branch & set(shortcuts)  # projection shortcuts are main stem
    assert "conv1" not in on_branch and "fc" not in on_branch


class UntraceableBasic(BasicBlock):
    """A block whose forward branches on a tensor value: no fx trace reaches its additions."""

    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


class UntraceableBottleneck(Bottleneck):
    forward = UntraceableBasic.forward


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_untraceable_model_is_traced_block_by_block(block):
    torch.manual_seed(0)
    traced = find_branches(ResNet(block))
    with pytest.warns(BranchDiscoveryWarning, match="could not trace.*block by block") as rec:
        blocks = find_branches(UntraceableResNet(block))
    assert blocks == traced
    # the stem and head are outside every traced block: named as main stem
    assert "['conv1', 'fc']" in str(rec[0].message)


@pytest.mark.parametrize(
    ("block", "untraceable"),
    [(BasicBlock, UntraceableBasic), (Bottleneck, UntraceableBottleneck)],
)
def test_resnet_preset_matches_fx(block, untraceable):
    torch.manual_seed(0)
    traced = find_branches(ResNet(block))
    with pytest.warns(BranchDiscoveryWarning, match="block by block.*no residual.*name presets"):
        preset = find_branches(UntraceableResNet(untraceable))
    assert preset == traced


# ----------------------------------------------------------------- small residual patterns


class PreActBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv1x1(c_in, c_out, stride))

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv3x3(3, 8)
        self.b1 = PreActBlock(8, 8)
        self.b2 = PreActBlock(8, 16, stride=2)

    def forward(self, x):
        return self.b2(self.b1(self.stem(x)))


def test_preactivation_block():
    found = find_branches(PreActNet())
    assert found == [
        ResidualBranch(layers=("b1.conv1", "b1.conv2")),  # bn2 precedes conv2: no norm
        ResidualBranch(layers=("b2.conv1", "b2.conv2")),
    ]


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.weight * x


class GatedMLP(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)
        self.fc3, self.fc4 = nn.Linear(d, d), nn.Linear(d, d)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.scale = Scale()
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        x = x + self.alpha * self.fc2(torch.relu(self.fc1(x)))
        x = x + self.scale(self.fc4(torch.relu(self.fc3(x))))
        return self.head(x)


def test_scalar_gates():
    assert find_branches(GatedMLP()) == [
        ResidualBranch(layers=("fc1", "fc2"), gate="alpha"),
        ResidualBranch(layers=("fc3", "fc4"), gate="scale.weight"),
    ]


class ResMLP(nn.Module):
    def __init__(self, d=6, depth=3, norm=False):
        super().__init__()
        self.inp = nn.Linear(4, d)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(d, 2 * d),
                nn.GELU(),
                nn.Dropout(0.1),
                nn.Linear(2 * d, d),
                nn.LayerNorm(d) if norm else nn.Identity(),
            )
            for _ in range(depth)
        )
        self.out = nn.Linear(d, 3)

    def forward(self, x):
        x = self.inp(x)
        for block in self.blocks:
            x = torch.add(x, block(x))
        return self.out(x)


@pytest.mark.parametrize("norm", [False, True])
def test_residual_mlp(norm):
    found = find_branches(ResMLP(norm=norm))
    assert found == [
        ResidualBranch(
            layers=(f"blocks.{i}.0", f"blocks.{i}.3"), norm=f"blocks.{i}.4" if norm else None
        )
        for i in range(3)
    ]


def test_plain_mlp_has_no_branches():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert find_branches(mlp) == []


class PosEmbed(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.pos = nn.Parameter(torch.zeros(1, 4, d))
        self.tok = nn.Embedding(10, d)
        self.pos_table = nn.Embedding(16, d)
        self.fc = nn.Linear(d, d)

    def forward(self, img, ids):
        x = self.patch(img).flatten(2).transpose(1, 2) + self.pos
        t = self.tok(ids) + self.pos_table(torch.arange(ids.shape[1]))
        return self.fc(x + t.mean(1, keepdim=True))


def test_positional_embeddings_are_not_residual():
    assert find_branches(PosEmbed()) == []


class SEBlock(nn.Module):
    """Squeeze-excitation gates the branch output; its layers are non-last."""

    def __init__(self, c=8):
        super().__init__()
        self.conv1, self.conv2 = conv3x3(c, c), conv3x3(c, c)
        self.bn2 = nn.BatchNorm2d(c)
        self.se_fc1, self.se_fc2 = nn.Conv2d(c, 2, 1), nn.Conv2d(2, c, 1)

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.conv1(x))))
        s = torch.sigmoid(self.se_fc2(torch.relu(self.se_fc1(out.mean((2, 3), keepdim=True)))))
        return torch.relu(out * s + x)


class GLUBlock(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.gate, self.up = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        return x + self.up(x) * torch.sigmoid(self.gate(x))


def test_side_path_gates_are_non_last():
    assert find_branches(SEBlock()) == [
        # the last layer goes at the end even though the squeeze-excitation layers run after it
        ResidualBranch(layers=("conv1", "se_fc1", "se_fc2", "conv2"), norm="bn2")
    ]
    assert find_branches(GLUBlock()) == [ResidualBranch(layers=("gate", "up"))]


class InPlaceBlock(nn.Module):
    """`out.add_(x)` without rebinding: later code reads `out`, which must mean the sum."""

    def __init__(self, d=6):
        super().__init__()
        self.a, self.b, self.c, self.d = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        out = self.b(torch.relu(self.a(x)))
        out.add_(x)
        y = self.d(torch.relu(self.c(out)))
        return y.add_(out)


def test_in_place_add():
    assert find_branches(InPlaceBlock()) == [
        ResidualBranch(layers=("a", "b")),
        ResidualBranch(layers=("c", "d")),
    ]


class NestedAdds(nn.Module):
    """The outer branch ends in an inner residual addition: skipped with a warning."""

    def __init__(self, d=6):
        super().__init__()
        self.pre, self.f1, self.f2 = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        h = self.pre(x)
        return x + (h + self.f2(torch.relu(self.f1(h))))


def test_branch_ending_in_addition_warns():
    with pytest.warns(BranchDiscoveryWarning, match="no last layer of its own"):
        found = find_branches(NestedAdds())
    assert found == [ResidualBranch(layers=("f1", "f2"))]


class NestedBlocks(nn.Module):
    """An outer residual block whose branch contains a whole inner residual block."""

    def __init__(self, d=6):
        super().__init__()
        self.a, self.f1, self.f2, self.b = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = h + self.f2(torch.relu(self.f1(h)))
        return x + self.b(h)


def test_nested_block_layers_stay_with_the_inner_block():
    assert find_branches(NestedBlocks()) == [
        ResidualBranch(layers=("f1", "f2")),
        ResidualBranch(layers=("a", "b")),
    ]


class Shared(nn.Module):
    """One block applied twice (weight tying): the same branch, not a conflict."""

    def __init__(self, d=6):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, x):
        x = x + self.block(x)
        return x + self.block(x)


def test_repeated_block_gives_one_branch():
    assert find_branches(Shared()) == [ResidualBranch(layers=("block.0", "block.2"))]
