"""Reference models: declared taps and branches exist, shapes and options behave."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isokit.models import ACTIVATIONS, MLP, ConvNet, ResidualMLP, ResNet, Transformer

MODELS = [
    (lambda: MLP(12, 16, 3, out_features=5), (2, 12)),
    (lambda: ConvNet(3, 8, 3, num_classes=4), (2, 3, 8, 8)),
    (lambda: ResNet(depth=20, width=8), (2, 3, 16, 16)),
    (
        lambda: ResNet(depth=20, width=8, norm="batch", gate="scalar", shortcut="conv"),
        (2, 3, 16, 16),
    ),
    (lambda: Transformer(2, 16, 4, 32, 6, norm="post", gate="scalar"), (2, 6, 16)),
    (lambda: Transformer(2, 16, 4, 32, 6, norm="none"), (2, 6, 16)),
    (lambda: ResidualMLP(12, 16, 3, out_features=4, gate="scalar"), (2, 12)),
    (lambda: ResidualMLP(None, 16, 3, branch_layers=1, scale=0.5), (2, 16)),
]


def test_one_layer_residual_block_is_the_theory_model():
    model = ResidualMLP(None, 8, 1, activation="tanh", branch_layers=1, scale=0.3)
    x = torch.randn(3, 8)
    fc = model.blocks[0].fc1
    assert torch.allclose(model(x), x + 0.3 * torch.tanh(fc(x)))


@pytest.mark.parametrize(("make", "shape"), MODELS)
def test_taps_fire_in_order_and_branches_name_real_layers(make, shape):
    model = make()
    order = []
    for name in model.taps:
        model.get_submodule(name).register_forward_hook(lambda m, a, o, n=name: order.append(n))
    model(torch.randn(shape))
    assert order == model.taps
    params = dict(model.named_parameters())
    for b in model.residual_branches():
        for layer in b.layers:
            assert isinstance(model.get_submodule(layer), nn.Linear | nn.Conv2d)
        assert b.gate is None or b.gate in params
        assert b.norm is None or isinstance(
            model.get_submodule(b.norm), nn.LayerNorm | nn.BatchNorm2d
        )


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_resnet_has_6n_plus_2_weight_layers(depth):
    model = ResNet(depth=depth, shortcut="pad")
    weights = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weights) == depth
    assert len(model.residual_branches()) == (depth - 2) // 2


def test_pad_shortcut_is_subsample_plus_zero_channels():
    model = ResNet(depth=20, width=4)
    block = model.layer2[0]
    x = torch.randn(1, 4, 8, 8)
    y = block.downsample(x)
    assert y.shape == (1, 8, 4, 4)
    assert torch.equal(y[:, :4], x[:, :, ::2, ::2]) and torch.all(y[:, 4:] == 0)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_builds(name):
    out = MLP(4, 4, 1, activation=name)(torch.linspace(-2, 2, 8).reshape(2, 4))
    assert out.shape == (2, 4)


def test_erf_activation_is_erf():
    model = MLP(3, 3, 1, activation="erf", bias=False)
    x = torch.randn(2, 3)
    assert torch.allclose(model(x), torch.erf(x @ model.fcs[0].weight.T))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ResNet(depth=21), "6n\\+2"),
        (lambda: ResNet(depth=20, norm="layer"), "norm"),
        (lambda: MLP(4, 4, -1), "depth"),
        (lambda: MLP(4, 4, 2, activation="swishy"), "activation: must be one of"),
        (lambda: ConvNet(3, 4, 2, kernel_size=2), "odd"),
        (lambda: Transformer(2, 10, 3, 8, 4), "divisible"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_transformer_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"input_shape: a transformer needs .* got \[5, 8\]"):
        Transformer(1, 8, 2, 16, 4)(torch.randn(2, 5, 8))
