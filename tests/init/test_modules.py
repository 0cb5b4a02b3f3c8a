"""Every parametric module is handled or named (``docs/idinit.md`` §7): HF ``Conv1D`` as a Linear,
unsupported modules reported or refused (norms, embeddings and tied weights:
``test_norms_embeddings.py``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from isokit.init import SchemeNotApplicable, apply
from isokit.init.checks import OptionValueError
from isokit.init.layers import (
    bias_params,
    parameter_roles,
    unsupported_modules,
    weight_slots,
)
from isokit.init.report import UnsupportedModuleError
from isokit.structure import ResidualBranch


def _transformers():
    return pytest.importorskip("transformers")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------- HF Conv1D


def _twins():
    """An MLP of HF Conv1D layers and the same MLP of nn.Linear layers."""
    conv1d = _transformers().pytorch_utils.Conv1D
    # Conv1D(nf, nx) maps nx -> nf, as nn.Linear(nx, nf).
    conv = nn.Sequential(conv1d(16, 8), nn.ReLU(), conv1d(4, 16))
    lin = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    return conv, lin


@pytest.mark.parametrize(
    ("scheme", "options"),
    [
        ("kaiming-normal", {}),
        ("kaiming-uniform", {"mode": "fan_out"}),
        ("xavier-uniform", {}),
        ("orthogonal", {}),
        ("identity", {}),
        ("idinit", {"branches": []}),
        ("torch-default", {}),
    ],
)
def test_conv1d_gets_exactly_what_the_linear_twin_gets(scheme, options):
    conv, lin = _twins()
    apply(conv, scheme, seed=3, **options)
    apply(lin, scheme, seed=3, **options)
    for i in (0, 2):
        assert conv[i].weight.shape == lin[i].weight.T.shape
        assert torch.equal(conv[i].weight.T, lin[i].weight), (scheme, i)
        assert torch.equal(conv[i].bias, lin[i].bias), (scheme, i)


def test_lsuv_hooks_and_rescales_conv1d_as_a_linear():
    conv, lin = _twins()
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    _, report = apply(conv, "lsuv", data=x, seed=1, tol=0.01, return_report=True)
    apply(lin, "lsuv", data=x, seed=1, tol=0.01)
    assert report.rule_of("0.weight") == "lsuv" and report.rule_of("2.weight") == "lsuv"
    assert abs(float(conv[0](x).detach().std()) - 1.0) <= 0.01
    for i in (0, 2):
        torch.testing.assert_close(conv[i].weight.T, lin[i].weight, rtol=1e-5, atol=1e-7)


def test_conv1d_fans_are_the_linear_ones():
    conv1d = _transformers().pytorch_utils.Conv1D
    layer = conv1d(64, 256)  # 256 -> 64: fan_in 256, fan_out 64
    apply(layer, "kaiming-normal", seed=0)
    std = float(layer.weight.detach().std())
    assert abs(std - math.sqrt(2 / 256)) < 0.03 * math.sqrt(2 / 256)
    apply(layer, "kaiming-normal", seed=0, mode="fan_out")
    assert abs(float(layer.weight.detach().std()) - math.sqrt(2 / 64)) < 0.03 * math.sqrt(2 / 64)
    apply(layer, "torch-default", seed=0)
    top = float(layer.weight.detach().abs().max())
    assert top <= 1 / 16
    assert top > 0.9 / 16  # U(±1/√256), not U(±1/√64)


def _gpt2(lm_head: bool = False):
    tr = _transformers()
    config = tr.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    torch.manual_seed(0)
    return (tr.GPT2LMHeadModel if lm_head else tr.GPT2Model)(config)


def _gpt2_branches(model) -> list[ResidualBranch]:
    return [
        ResidualBranch(layers=(f"h.{i}.{part}.{a}", f"h.{i}.{part}.c_proj"))
        for i in range(len(model.h))
        for part, a in (("attn", "c_attn"), ("mlp", "c_fc"))
    ]


def test_gpt2_slots_and_biases_are_its_conv1d_layers():
    model = _gpt2()
    conv1d = _transformers().pytorch_utils.Conv1D
    layers = [n for n, m in model.named_modules() if isinstance(m, conv1d)]
    slots = weight_slots(model)
    assert list(dict.fromkeys(s.module for s in slots)) == layers
    for s in slots:
        assert s.transposed
        if s.module.endswith("c_attn"):  # packed q, k, v: three [d, d] row blocks of [3d, d]
            d = s.param.shape[0]
            assert s.kind == "attention" and s.shape == (d, d)
            assert torch.equal(s.tensor, s.param.T[s.rows])
        else:
            assert s.kind == "linear" and s.shape == tuple(s.param.T.shape)
    assert [s.name for s in slots if s.module == "h.0.attn.c_attn"] == [
        f"h.0.attn.c_attn.weight[{p}]" for p in "qkv"
    ]
    assert {n for n, _ in bias_params(model)} == {f"{n}.bias" for n in layers}


@pytest.mark.parametrize("scheme", ["idinit", "kaiming-normal", "zero", "orthogonal"])
def test_every_gpt2_conv1d_weight_changes(scheme):
    model = _gpt2()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _, report = apply(model, scheme, seed=0, branches=_gpt2_branches(model), return_report=True)
    for slot in weight_slots(model):
        old = before[slot.name.partition("[")[0]]
        old = old.T[slot.rows] if slot.rows is not None else old
        assert not torch.equal(slot.tensor if slot.rows is not None else slot.param, old), (
            scheme,
            slot.name,
        )
        assert report.rule_of(slot.name) != "kept"
    for name in ("wte.weight", "wpe.weight"):  # embeddings are kept
        assert torch.equal(model.get_parameter(name), before[name])
        assert report.rule_of(name) == "kept"
    assert not [r for r in report.rows if "unsupported" in r.rule]


def test_idinit_on_gpt2_makes_each_branch_end_idiz():
    model = _gpt2()
    _, report = apply(model, "idinit", branches=_gpt2_branches(model), return_report=True)
    assert report.rule_of("h.0.attn.c_proj.weight") == "idiz"
    assert report.rule_of("h.0.mlp.c_fc.weight") == "idi"
    # IDI on the [out, in] view: c_fc (32 -> 128) repeats the identity down its 128 outputs.
    w = model.h[0].mlp.c_fc.weight.T  # [128, 32]
    torch.testing.assert_close(w[:32], torch.eye(32), atol=1e-4, rtol=0)
    torch.testing.assert_close(w[32:64], torch.eye(32), atol=1e-4, rtol=0)


def test_lsuv_on_gpt2_token_ids_rescales_every_conv1d():
    model = _gpt2()
    ids = torch.randint(0, 99, (4, 8), generator=torch.Generator().manual_seed(0))
    _, report = apply(model, "lsuv", data=ids, seed=0, tol=0.05, return_report=True)
    for slot in weight_slots(model):  # LSUV rescales whole layers: a packed one has one row
        assert report.rule_of(slot.name.partition("[")[0]) == "lsuv", slot.name
    outputs = {}
    handle = model.h[1].mlp.c_fc.register_forward_hook(lambda m, a, out: outputs.update(y=out))
    with torch.no_grad():
        model.eval()(input_ids=ids)
    handle.remove()
    assert abs(float(outputs["y"].std()) - 1.0) <= 0.05


# ------------------------------------------------------------------------- unsupported modules


def test_unsupported_modules_get_their_own_rows():
    model = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4), nn.Bilinear(4, 4, 2))
    before = _state(model)
    _, report = apply(model, "kaiming-normal", seed=0, return_report=True)
    assert unsupported_modules(model) == ["1", "2"]
    assert report.rule_of("1.weight_ih_l0") == "kept (unsupported: LSTM)"
    assert report.rule_of("2.weight") == "kept (unsupported: Bilinear)"
    assert "unsupported layer" in report.flagged[-1].flags
    assert torch.equal(model[1].weight_hh_l0, before["1.weight_hh_l0"])
    assert not torch.equal(model[0].weight, before["0.weight"])


def test_unsupported_raise_names_the_modules_and_changes_nothing():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.ConvTranspose1d(4, 4, 3))
    with torch.no_grad():
        model[1].weight.fill_(3.0)
    before = _state(model)
    with pytest.raises(UnsupportedModuleError, match=r"2 \(ConvTranspose1d\).*unsupported='keep'"):
        apply(model, "idinit", branches=[], unsupported="raise")
    assert _unchanged(model, before)
    # torch-default resets what has a reset_parameters(), so nothing is left unsupported.
    _, report = apply(model, "torch-default", seed=0, unsupported="raise", return_report=True)
    assert report.rule_of("2.weight") == "torch-default"
    with pytest.raises(OptionValueError, match="'keep', 'raise'"):
        apply(model, "idinit", unsupported="skip")


def test_known_roles_are_not_unsupported():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.gate = nn.Parameter(torch.zeros(()))
            self.layer_scale = nn.Parameter(torch.ones(4))
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
            self.table = nn.Parameter(torch.zeros(4, 4))

    roles = parameter_roles(Block())
    assert roles["gate"] == ("learnable scalar", "Block")
    assert roles["layer_scale"] == ("layer scale", "Block")
    assert roles["cls_token"] == ("embedding", "Block")
    assert roles["table"] == ("unsupported", "Block")
    assert roles["fc.weight"] == ("weight layer", "Linear")


@pytest.mark.parametrize(
    ("model", "match"),
    [(nn.LSTM(4, 4), "unsupported LSTM"), (nn.Embedding(10, 4), "embedding")],
)
def test_a_scheme_that_sets_nothing_is_not_applicable(model, match):
    before = _state(model)
    with pytest.raises(SchemeNotApplicable, match=match):
        apply(model, "kaiming-normal", seed=0)
    assert _unchanged(model, before)


def test_a_model_of_norms_or_with_a_kept_head_is_still_fine():
    norm = nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.fill_(2.0)
    assert torch.equal(apply(norm, "kaiming-normal").weight, torch.ones(4))
    emb = apply(nn.Embedding(4, 4), "idinit", embeddings="idi", branches=[])
    assert torch.equal(emb.weight, torch.eye(4))
