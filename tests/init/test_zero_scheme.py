"""ZerO as a model transform: deterministic, identity-like at initialization, and trainable.

Every weight tensor must move within a few SGD steps: a zero layer next to another zero layer
never would (the reference ResNet gives each zero layer its own skip for that reason).
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from isokit.init import apply, get_scheme
from isokit.models import ResidualMLP, ResNet, Transformer
from tests.torchvision_style import BasicBlock, conv1x1


def encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


class _TorchvisionNet(nn.Module):
    """torchvision's BasicBlocks with BatchNorm (kept by ZerO, as in the reference)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        down = nn.Sequential(conv1x1(4, 8, 2), nn.BatchNorm2d(8))
        self.layer1 = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 8, 2, down))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.layer1(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(-2, -1)))


MODELS = {
    "torchvision-basic": (_TorchvisionNet, (4, 3, 8, 8)),
    "resnet8": (lambda: ResNet(depth=8, width=4), (4, 3, 8, 8)),
    "resnet8-conv-shortcut": (lambda: ResNet(depth=8, width=4, shortcut="conv"), (4, 3, 8, 8)),
    "residual-mlp": (lambda: ResidualMLP(8, 16, 3, out_features=4), (6, 8)),
    "transformer-encoder": (encoder, (3, 5, 16)),
    "isokit-transformer": (lambda: Transformer(2, 16, 2, 32, 5, norm="pre"), (3, 5, 16)),
}


def train(model: nn.Module, x: torch.Tensor, steps: int, lr: float = 0.1) -> nn.Module:
    target = torch.randn(model(x).shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - target) ** 2).mean().backward()
        opt.step()
    return model


def unmoved(model: nn.Module, x: torch.Tensor, steps: int = 5) -> list[str]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, x, steps)
    return [n for n, p in model.named_parameters() if torch.equal(p, before[n])]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_parameter_moves_within_three_sgd_steps(name):
    build, shape = MODELS[name]
    model = apply(build(), "zero")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert unmoved(model, x, steps=3) == []  # the head, then the branch ends, then the rest


def test_zeroing_both_branch_layers_is_the_degenerate_network_the_skips_avoid():
    # Without the added skips (the old construction) the first branch layers never move.
    model = apply(ResNet(depth=8, width=4), "zero")
    for m in model.modules():
        if "isokit_zero_skip" in m._buffers:
            m._forward_hooks.clear()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    stuck = unmoved(model, x)
    assert "layer1.0.conv1.weight" in stuck and "layer1.0.conv2.weight" in stuck


def test_resnet_blocks_start_as_the_identity_and_branch_weights_as_zero():
    model = apply(ResNet(depth=8, width=4), "zero")
    x = torch.rand(2, 4, 8, 8)
    assert torch.equal(model.layer1[0](x), x)
    assert torch.all(model.layer1[0].conv1.weight == 0)
    assert torch.all(model.layer1[0].conv2.weight == 0)
    # The first block of stage 2 maps x to its option-A shortcut (stride 2, zero channels).
    y = model.layer2[0](x)
    assert torch.equal(y[:, :4], x[:, :, ::2, ::2]) and torch.all(y[:, 4:] == 0)


def test_skip_applies_the_algorithm_2_kernel_with_the_layers_stride():
    model = apply(ResNet(depth=8, width=4), "zero")
    conv1 = model.layer2[0].conv1  # 4 -> 8 channels, stride 2: partial identity + Hadamard
    x = torch.randn(2, 4, 8, 8, dtype=torch.float32)
    h8 = torch.tensor(
        [[1, 1, 1, 1, 1, 1, 1, 1], [1, -1, 1, -1, 1, -1, 1, -1], [1, 1, -1, -1, 1, 1, -1, -1],
         [1, -1, -1, 1, 1, -1, -1, 1], [1, 1, 1, 1, -1, -1, -1, -1], [1, -1, 1, -1, -1, 1, -1, 1],
         [1, 1, -1, -1, -1, -1, 1, 1], [1, -1, -1, 1, -1, 1, 1, -1]], dtype=torch.float32
    )  # fmt: skip
    expected = torch.einsum("oc,bchw->bohw", h8[:, :4] / 8**0.5, x[:, :, ::2, ::2])
    torch.testing.assert_close(conv1(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["resnet8", "residual-mlp", "transformer-encoder"])
def test_augmented_and_folded_train_identically(name):
    build, shape = MODELS[name]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = train(apply(build().double(), "zero"), x, 3)
    b = train(apply(build().double(), "zero", skips="folded"), x, 3)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=1e-10, rtol=1e-10)
    assert not any(name.endswith("isokit_zero_skip") for name, _ in b.named_buffers())


def test_zero_is_deterministic_and_the_state_dict_is_the_models():
    a, report = apply(ResNet(depth=8, width=4), "zero", seed=0, return_report=True)
    b = apply(ResNet(depth=8, width=4), "zero", seed=5)
    assert set(a.state_dict()) == set(ResNet(depth=8, width=4).state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert "skip (added)" in next(r.options for r in report.rows if r.name.endswith("conv1.weight"))
    assert any("only one zero layer" in n for n in report.notes)
    for clone in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        with torch.no_grad():
            assert torch.equal(clone(x), a(x))


def test_failed_zero_leaves_no_skip_behind(monkeypatch):
    import isokit.init.zero_scheme as zero_scheme

    model = ResNet(depth=8, width=4)

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(zero_scheme, "finish_norms", fail)
    with pytest.raises(RuntimeError, match="boom"):
        apply(model, "zero")
    assert not any("isokit_zero_skip" in m._buffers for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_bad_skips_option_is_refused_without_a_model():
    with pytest.raises(ValueError, match="skips"):
        apply(ResNet(depth=8, width=4), "zero", skips="none")
    with pytest.raises(ValueError, match="skips='none'"):
        get_scheme("zero").check_options({"skips": "none"})


def test_skip_survives_torchs_fused_encoder_path():
    model = apply(encoder(), "zero")
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y_train = model(x)
        model.eval()  # eval + no_grad is where torch takes its fused path, if nothing stops it
        assert torch.equal(model(x), y_train)


class _GroupedBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.conv2 = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(x)))


def test_skip_of_a_grouped_conv_is_the_per_group_identity():
    model = apply(_GroupedBlock(), "zero", branches=[("conv1", "conv2")])
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.conv1(x), x)
        assert torch.equal(model(x), x)
    assert model.conv1.isokit_zero_skip.shape == model.conv1.weight.shape


def test_one_layer_relu_branches_are_named_in_the_report_as_untrainable():
    model, report = apply(
        ResidualMLP(None, 8, 2, branch_layers=1), "zero", return_report=True
    )  # x + relu(W x): W = 0 sits where ReLU has zero slope
    assert any("one-layer branches blocks.0.fc1, blocks.1.fc1" in n for n in report.notes)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    assert "blocks.0.fc1.weight" in unmoved(model, x)


def test_gpt2_conv1d_branch_layers_get_the_added_skip_and_every_parameter_moves():
    pytest.importorskip("transformers")
    from tests.matrix_models import gpt2

    torch.manual_seed(0)
    model, ids = gpt2()
    _, report = apply(model, "zero", example_inputs=ids, return_report=True)
    assert report.rule_of("h.0.mlp.c_fc.weight") == "zero"
    assert report.rule_of("h.0.attn.c_attn.weight[v]") == "zero"
    skip = model.h[0].attn.c_attn.isokit_zero_skip  # [3d, d] as a layer: q, k, v identities
    torch.testing.assert_close(skip, torch.eye(model.config.n_embd).repeat(3, 1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    target = torch.randn(
        model(**ids).last_hidden_state.shape, generator=torch.Generator().manual_seed(1)
    )
    for _ in range(3):
        opt.zero_grad()
        ((model(**ids).last_hidden_state - target) ** 2).mean().backward()
        opt.step()
    assert [n for n, p in model.named_parameters() if torch.equal(p, before[n])] == []
