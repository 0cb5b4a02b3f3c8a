"""The IDInit model recipe on whole models: identity blocks, IDIZ gradients, options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isokit.init import apply, idi_, idiz_
from isokit.models import MLP, ResNet, Transformer
from isokit.structure import ResidualBranch


def _block_inputs(model: ResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The actual input of every block on a forward pass."""
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for s in range(1, 4):
        for i, block in enumerate(getattr(model, f"layer{s}")):
            hooks.append(
                block.register_forward_pre_hook(
                    lambda m, a, n=f"layer{s}.{i}": seen.__setitem__(n, a[0].detach())
                )
            )
    model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("eps", [1e-6, 1e-4])
def test_resnet_blocks_map_input_to_itself_up_to_eps(eps):
    model = apply(ResNet(depth=20, norm="none", shortcut="pad"), "idinit", seed=0, eps=eps)
    model = model.double()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    checked = 0
    for name, u in _block_inputs(model, x).items():
        block = model.get_submodule(name)
        if block.downsample is not None:
            continue
        err = (block(u) - u).norm() / u.norm()
        assert err <= 20 * eps, (name, err)
        checked += 1
    assert checked == 7  # 9 blocks, 2 of them down-sample


def _branch_out(block, u):
    return block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(u)))))


def test_idiz_branch_output_is_order_eps_and_linear_in_eps():
    x = torch.rand(2, 16, 8, 8, dtype=torch.float64)
    outs = {}
    for eps in (1e-6, 1e-3):
        model = apply(ResNet(depth=20), "idinit", seed=0, eps=eps, loose=None).double()
        block = model.layer1[1]
        outs[eps] = _branch_out(block, x)
        assert outs[eps].norm() <= 2 * 3 * eps * x.norm()
        assert outs[eps].norm() > 0
    # IDIZ is linear in ε: the branch output scales by exactly the ratio of the ε's.
    assert torch.allclose(outs[1e-3], 1e3 * outs[1e-6], rtol=1e-9)


def test_idiz_gives_gradients_where_a_zero_last_layer_gives_none():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    target = torch.randn(4, 10)
    grads = {}
    for last in ("idiz", "zero"):
        model = apply(ResNet(depth=20), "idinit", seed=0, residual_last=last)
        loss = ((model(x) - target) ** 2).sum()
        loss.backward()
        grads[last] = [
            model.get_submodule(b.layers[0]).weight.grad for b in model.residual_branches()
        ]
    assert all(g.abs().sum() > 0 for g in grads["idiz"])
    assert all(torch.all(g == 0) for g in grads["zero"])


def test_every_layer_gets_the_rule_of_its_role():
    model, report = apply(
        ResNet(depth=20, shortcut="conv"), "idinit", seed=0, return_report=True, loose=None
    )
    assert report.rule_of("stem.0.weight") == "idic-patch"
    assert report.rule_of("layer1.0.conv1.weight") == "idic-patch"
    assert report.rule_of("layer1.0.conv2.weight") == "idizc"
    assert report.rule_of("layer2.0.downsample.0.weight") == "idi" or report.rule_of(
        "layer2.0.downsample.0.weight"
    ).startswith("idic")
    assert report.rule_of("fc.weight") == "idi"
    expected = torch.empty_like(model.layer1[0].conv2.weight)
    idiz_(expected, 1e-6)
    assert torch.equal(model.layer1[0].conv2.weight, expected)
    expected = torch.empty_like(model.fc.weight)
    idi_(expected)
    assert torch.equal(model.fc.weight, expected)
    assert all(torch.all(p == 0) for n, p in model.named_parameters() if n.endswith("bias"))
    assert any("unused input channels" in f for r in report.flagged for f in r.flags)


def test_transformer_projections_per_role():
    model = apply(Transformer(2, 16, 4, 64, 5), "idinit", seed=0, loose=None)
    blk = model.blocks[0]
    assert torch.equal(blk.attn.q.weight, torch.eye(16))
    expected = torch.empty(64, 16)
    idi_(expected)
    assert torch.equal(blk.ffn.fc1.weight, expected)
    assert blk.attn.out.weight.abs().max().item() == pytest.approx(1e-6)
    assert blk.ffn.fc2.weight.abs().max().item() == pytest.approx(1e-6)
    assert torch.all(blk.ln1.weight == 1) and torch.all(blk.ln1.bias == 0)


def test_packed_attention_is_split_into_projections():
    layer = nn.TransformerEncoderLayer(8, 2, 32, dropout=0.0, batch_first=True)
    branches = [
        ResidualBranch(layers=("self_attn", "self_attn.out_proj")),
        ResidualBranch(layers=("linear1", "linear2")),
    ]
    apply(layer, "idinit", seed=0, loose=None, branches=branches)
    w = layer.self_attn.in_proj_weight
    for i in range(3):
        assert torch.equal(w[8 * i : 8 * (i + 1)], torch.eye(8))
    assert layer.self_attn.out_proj.weight.abs().max().item() == pytest.approx(1e-6)


def test_loosening_perturbs_only_tau_entries_and_depends_on_the_seed():
    a = apply(MLP(16, 16, 3), "idinit", seed=0).fcs[1].weight.double()
    b = apply(MLP(16, 16, 3), "idinit", seed=1).fcs[1].weight.double()
    off = ~torch.eye(16, dtype=torch.bool)
    assert torch.all(a[off] == 0)
    assert 0 < (a.diagonal() - 1).abs().max() < 1e-5
    assert not torch.equal(a, b)


def test_tau_map_per_layer_and_head_option():
    model = apply(
        MLP(8, 8, 2, out_features=4),
        "idinit",
        loose=None,
        tau={"fcs.1": 0.5},
        head="zero",
        head_name="head",
    )
    assert torch.equal(model.fcs[0].weight, torch.eye(8))
    assert torch.equal(model.fcs[1].weight, 0.5 * torch.eye(8))
    assert torch.all(model.head.weight == 0)


def test_last_norm_gamma_option():
    model = apply(ResNet(depth=20, norm="batch"), "idinit", last_norm_gamma=0.0)
    for b in model.residual_branches():
        assert torch.all(model.get_submodule(b.norm).weight == 0)
    assert torch.all(model.layer1[0].bn1.weight == 1)


def test_unsupported_layers_are_kept_or_raise():
    model = nn.Sequential(nn.Linear(4, 4), nn.ConvTranspose1d(2, 2, 3))
    before = model[1].weight.detach().clone()
    model, report = apply(model, "idinit", return_report=True, branches=[])
    assert torch.equal(model[1].weight, before)
    assert "unsupported layer" in report.flagged[-1].flags
    with pytest.raises(ValueError, match="unsupported='keep'"):
        apply(model, "idinit", unsupported="raise", branches=[])


def test_bad_option_value_names_the_choices():
    with pytest.raises(ValueError, match="'idiz'"):
        apply(ResNet(depth=20), "idinit", residual_last="zeros")
