"""Branch discovery on Transformer layers: nn.Transformer* presets, hand-written layers that
fx traces, and timm-style ViT blocks (traced, block by block, presets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isokit.init.branches import BranchDiscoveryWarning, find_branches, weight_layers
from isokit.structure import ResidualBranch

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
