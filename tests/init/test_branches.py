"""Tests for residual-branch discovery (isokit.init.branches)."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from isokit.init.branches import (
    BranchDiscoveryError,
    BranchDiscoveryWarning,
    find_branches,
    weight_layers,
)
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


# ----------------------------------------------------------------- transformers


class HandEncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer's slow path, written so that torch.fx can trace it."""

    def __init__(self, d, heads, ff, norm_first):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout, self.dropout1, self.dropout2 = nn.Dropout(), nn.Dropout(), nn.Dropout()
        self.norm_first = norm_first

    def _sa(self, x):
        return self.dropout1(self.self_attn(x, x, x, need_weights=False)[0])

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(torch.relu(self.linear1(x)))))

    def forward(self, x):
        if self.norm_first:
            x = x + self._sa(self.norm1(x))
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x))
        return self.norm2(x + self._ff(x))


def _layer_branches(p=""):
    return [
        ResidualBranch(layers=(f"{p}self_attn", f"{p}self_attn.out_proj")),
        ResidualBranch(layers=(f"{p}linear1", f"{p}linear2")),
    ]


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer(norm_first):
    torch_layer = nn.TransformerEncoderLayer(8, 2, 16, norm_first=norm_first, batch_first=True)
    hand = HandEncoderLayer(8, 2, 16, norm_first)
    # The preset for the (untraceable) torch layer and the fx trace of an equivalent hand-written
    # layer agree, pre- and post-norm alike.
    assert find_branches(torch_layer) == find_branches(hand) == _layer_branches()


def test_transformer_encoder_two_layers():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    assert find_branches(enc) == _layer_branches("layers.0.") + _layer_branches("layers.1.")


class TinyViT(nn.Module):
    """Traceable model around an untraceable nn.TransformerEncoder."""

    def __init__(self, d=8):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.pos = nn.Parameter(torch.zeros(1, 4, d))
        layer = nn.TransformerEncoderLayer(d, 2, 16, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.encoder(x).mean(1))


def test_transformer_inside_traced_model():
    assert find_branches(TinyViT()) == (
        _layer_branches("encoder.layers.0.") + _layer_branches("encoder.layers.1.")
    )


class TimmAttention(nn.Module):
    def __init__(self, dim, num_heads=2):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class TimmMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TimmBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim), TimmAttention(dim), nn.Identity()
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim), TimmMlp(dim, 2 * dim), nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class TimmViT(nn.Module):
    def __init__(self, dim=8, depth=2, traceable=True):
        super().__init__()
        self.traceable = traceable
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        self.blocks = nn.Sequential(*(TimmBlock(dim) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        if not self.traceable and x.sum() > 0:
            x = x * 1.0
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class UntraceableTimmBlock(TimmBlock):
    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


def test_timm_vit_preset_matches_fx():
    expected = [
        ResidualBranch(layers=(f"blocks.{i}.{a}", f"blocks.{i}.{b}"))
        for i in range(2)
        for a, b in (("attn.qkv", "attn.proj"), ("mlp.fc1", "mlp.fc2"))
    ]
    assert find_branches(TimmViT()) == expected
    with pytest.warns(BranchDiscoveryWarning, match="block by block"):
        assert find_branches(TimmViT(traceable=False)) == expected
    model = TimmViT(traceable=False)
    model.blocks = nn.Sequential(UntraceableTimmBlock(8), UntraceableTimmBlock(8))
    with pytest.warns(BranchDiscoveryWarning, match="name presets"):
        assert find_branches(model) == expected


def test_weight_layers_lists_attention_and_out_proj():
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    assert weight_layers(layer) == ["self_attn", "self_attn.out_proj", "linear1", "linear2"]


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
