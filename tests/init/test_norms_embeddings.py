"""One norm predicate for discovery, reset and removal, and embeddings and tied weights left to
their own rule (``docs/idinit.md`` §7), on hand-made modules and tiny Hugging Face models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from isokit.init import apply
from isokit.init.layers import (
    RemovedNorm,
    parameter_roles,
    replace_norms,
    reset_norms,
    unsupported_modules,
    weight_slots,
)
from isokit.init.norms import _REGISTERED, is_norm, register_norm
from isokit.init.report import InitReport, add_kept_rows
from isokit.structure import ResidualBranch
from tests.init.test_modules import _gpt2, _gpt2_branches, _transformers

# ---------------------------------------------------------------------------------- norms


class _ScaledLinearNorm(nn.Module):
    """Named like a norm, shaped like a norm, but no normalization: not a norm."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * x


def test_the_norm_predicate():
    tr = _transformers()
    t5 = tr.models.t5.modeling_t5.T5LayerNorm(8)
    llama = tr.models.llama.modeling_llama.LlamaRMSNorm(8)
    assert is_norm(t5) and is_norm(llama)
    assert is_norm(nn.LayerNorm(8)) and is_norm(nn.BatchNorm2d(3)) and is_norm(nn.GroupNorm(2, 4))
    assert not is_norm(nn.LocalResponseNorm(2))
    assert not is_norm(nn.Linear(8, 8))
    fake = type("FakeNorm", (_ScaledLinearNorm,), {})
    assert not is_norm(fake(8))

    class Odd(nn.Module):
        def forward(self, x):
            return x / x.norm(dim=-1, keepdim=True)

    assert not is_norm(Odd())
    register_norm(Odd)
    try:
        assert is_norm(Odd())
    finally:
        _REGISTERED.remove(Odd)
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_norm(3)


def test_removed_hf_norms_keep_their_eps():
    t5_norm = _transformers().models.t5.modeling_t5.T5LayerNorm(4, eps=1e-3)
    model = nn.Sequential(nn.Linear(4, 4), t5_norm)
    assert replace_norms(model) == ["1"]
    assert isinstance(model[1], RemovedNorm)
    assert model[1].eps == 1e-3 and model[1].variance_epsilon == 1e-3


def _t5():
    tr = _transformers()
    config = tr.T5Config(
        vocab_size=99,
        d_model=32,
        d_kv=16,
        d_ff=37,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    return tr.T5Model(config)


def test_idinit_resets_t5_norms_and_keeps_relative_attention_biases():
    model = _t5()
    norm_cls = _transformers().models.t5.modeling_t5.T5LayerNorm
    norms = [n for n, m in model.named_modules() if isinstance(m, norm_cls)]
    with torch.no_grad():
        for n in norms:
            model.get_submodule(n).weight.fill_(0.5)
    rel = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    before = model.get_parameter(rel).detach().clone()
    _, report = apply(model, "idinit", branches=[], return_report=True)
    assert norms
    for n in norms:
        assert torch.equal(model.get_submodule(n).weight, torch.ones(32)), n
        assert report.rule_of(f"{n}.weight") == "const 1"
    assert torch.equal(model.get_parameter(rel), before)
    assert report.rule_of(rel) == "kept"
    assert not [r for r in report.rows if "unsupported" in r.rule]


def _llama():
    _transformers()
    from tests.matrix_models import llama

    torch.manual_seed(0)
    return llama()[0]


def test_rezero_removes_llama_norms():
    model = _llama()
    branches = [
        ResidualBranch(layers=tuple(f"layers.{i}.{p}" for p in names))
        for i in range(2)
        for names in (
            ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
            ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
        )
    ]
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))
    apply(model, "rezero", seed=0, branches=branches)
    norm_cls = _transformers().models.llama.modeling_llama.LlamaRMSNorm
    assert not any(isinstance(m, norm_cls) for m in model.modules())
    assert model.layers[0].input_layernorm.variance_epsilon == model.config.rms_norm_eps
    out = model(input_ids=ids).last_hidden_state
    # α = 0 on every branch and no norms left: the output is the token embedding itself.
    torch.testing.assert_close(out, model.embed_tokens(ids))


# ----------------------------------------------------------------- embeddings, tied weights


def test_tied_lm_head_is_set_once_with_the_embedding_rule():
    model = _gpt2(lm_head=True)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert "lm_head" not in [s.module for s in weight_slots(model)]
    before = model.lm_head.weight.detach().clone()
    _, report = apply(model, "kaiming-normal", seed=0, return_report=True)
    assert torch.equal(model.transformer.wte.weight, before)
    assert report.rule_of("transformer.wte.weight") == "kept"
    assert [r.options for r in report.rows if r.name == "lm_head.weight"] == [
        "same tensor as transformer.wte.weight"
    ]
    assert report.rule_of("lm_head.weight") == "tied"
    names = [r.name for r in report.rows]
    assert len(names) == len(set(names))
    # torch-default resets the table once, as an embedding (N(0, 1)), not as a Linear.
    apply(model, "torch-default", seed=0)
    assert 0.9 < float(model.transformer.wte.weight.detach().std()) < 1.1


def test_a_weight_shared_by_two_linears_is_one_slot():
    a = nn.Linear(4, 4)
    b = nn.Linear(4, 4)
    b.weight = a.weight
    model = nn.Sequential(a, nn.ReLU(), b)
    assert [s.name for s in weight_slots(model)] == ["0.weight"]
    _, report = apply(model, "orthogonal", seed=0, return_report=True)
    assert report.rule_of("0.weight") == "orthogonal"
    assert report.rule_of("2.weight") == "tied"


def test_vit_and_convnext_parameters_all_have_a_known_role():
    tr = _transformers()
    vit = tr.ViTModel(
        tr.ViTConfig(
            image_size=8,
            patch_size=4,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
        )
    )
    roles = parameter_roles(vit)
    assert roles["embeddings.cls_token"] == ("embedding", "ViTEmbeddings")
    assert roles["embeddings.position_embeddings"] == ("embedding", "ViTEmbeddings")
    assert unsupported_modules(vit) == []
    convnext = tr.ConvNextModel(
        tr.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1])
    )
    assert unsupported_modules(convnext) == []
    name = "encoder.stages.0.layers.0.layer_scale_parameter"
    assert parameter_roles(convnext)[name][0] == "layer scale"


def _hf_models():
    tr = _transformers()
    bert = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    )
    resnet = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    return {
        "bert-mlm": lambda: tr.BertForMaskedLM(tr.BertConfig(**bert)),
        "distilbert": lambda: tr.DistilBertModel(
            tr.DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
        ),
        "gpt2-lm": lambda: _gpt2(lm_head=True),
        "t5": _t5,
        "llama": _llama,
        "resnet-basic": lambda: tr.ResNetModel(tr.ResNetConfig(layer_type="basic", **resnet)),
        "resnet-bottleneck": lambda: tr.ResNetModel(
            tr.ResNetConfig(layer_type="bottleneck", **resnet)
        ),
        "mobilenetv2": lambda: tr.MobileNetV2Model(
            tr.MobileNetV2Config(image_size=32, depth_multiplier=0.35)
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "bert-mlm",
        "distilbert",
        "gpt2-lm",
        "t5",
        "llama",
        "resnet-basic",
        "resnet-bottleneck",
        "mobilenetv2",
    ],
)
def test_every_parameter_of_hf_models_is_handled(name):
    model = _hf_models()[name]()
    roles = parameter_roles(model)
    assert not [n for n, (role, _) in roles.items() if role == "unsupported"]
    slot_ids = {id(s.param) for s in weight_slots(model)}
    params = dict(model.named_parameters())
    # every matrix or kernel is a weight slot or an embedding table
    for n, p in params.items():
        if p.dim() >= 2:
            assert id(p) in slot_ids or roles[n][0] == "embedding", n
    before = {n: p.detach().clone() for n, p in params.items()}
    _, report = apply(model, "kaiming-normal", seed=0, return_report=True, unsupported="raise")
    names = [r.name for r in report.rows]
    assert len(names) == len(set(names))
    # A packed q/k/v projection has one row per block: c_attn.weight[q], [k], [v].
    assert set(params) <= {n.partition("[")[0] for n in names}
    for s in weight_slots(model):
        assert not torch.equal(s.param, before[s.name.partition("[")[0]]), s.name


def test_offset_norms_get_unit_scale_as_weight_zero():
    gemma = _transformers().models.gemma.modeling_gemma.GemmaRMSNorm
    model = nn.Sequential(nn.Linear(8, 8), gemma(8))
    with torch.no_grad():
        model[1].weight.fill_(0.7)
    _, report = apply(model, "kaiming-normal", seed=0, return_report=True)
    assert torch.equal(model[1].weight, torch.zeros(8))
    assert report.rule_of("1.weight") == "const 0"
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    rms = model[1](x).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones(5), atol=1e-4, rtol=0)
    # Zero-γ semantics: the scale 0 is weight −1.
    reset_norms(model, gamma={"1": 0.0})
    assert torch.equal(model[1].weight, -torch.ones(8))


def test_an_extra_tensor_on_a_linear_subclass_is_unsupported():
    class LoraLinear(nn.Linear):
        def __init__(self):
            super().__init__(4, 4)
            self.lora_a = nn.Parameter(torch.zeros(2, 4))

    _, report = apply(LoraLinear(), "orthogonal", seed=0, return_report=True)
    assert report.rule_of("weight") == "orthogonal"
    assert report.rule_of("lora_a") == "kept (unsupported: LoraLinear)"


def test_torch_default_on_bert_mlm_resets_the_tied_decoder_bias_once():
    model = _hf_models()["bert-mlm"]()
    bias = model.cls.predictions.bias
    assert bias is model.cls.predictions.decoder.bias
    table = model.bert.embeddings.word_embeddings.weight.detach().clone()
    _, report = apply(model, "torch-default", seed=0, return_report=True)
    names = [r.name for r in report.rows]
    assert len(names) == len(set(names))
    assert report.rule_of("cls.predictions.bias") == "torch-default"
    assert float(bias.detach().abs().max()) > 0  # drawn U(±1/√32), not left at 0
    # The decoder's weight is the word-embedding table: reset once, as an embedding.
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, table)
    assert 0.9 < float(model.cls.predictions.decoder.weight.detach().std()) < 1.1


class _HeadFirst(nn.Module):
    """A decoder whose output layer, registered before the table, is tied to it."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 200, bias=False)
        self.emb = nn.Embedding(200, 16)
        self.mid = nn.Linear(16, 16)
        self.head.weight = self.emb.weight


@pytest.mark.parametrize("scheme", ["idinit", "torch-default", "xavier-normal"])
def test_a_head_tied_to_a_later_table_keeps_the_embedding_rule(scheme):
    model = _HeadFirst()
    table = model.emb.weight.detach().clone()
    options = {"branches": []} if scheme == "idinit" else {}
    _, report = apply(model, scheme, seed=0, return_report=True, **options)
    names = [r.name for r in report.rows]
    assert len(names) == len(set(names))
    assert report.rule_of("emb.weight") == "tied"
    assert [s.module for s in weight_slots(model)] == ["mid"]
    if scheme == "torch-default":  # the table's own default, N(0, 1), not a Linear's U(±1/4)
        assert report.rule_of("head.weight") == "torch-default"
        assert float(model.emb.weight.detach().abs().max()) > 1.0
    else:
        assert report.rule_of("head.weight") == "kept"
        assert torch.equal(model.emb.weight, table)


def test_the_behaviour_probe_leaves_the_module_and_its_hooks_alone():
    class CustomBatchNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))
            self.bias = nn.Parameter(torch.zeros(d))
            self.register_buffer("running_mean", torch.zeros(d))

        def forward(self, x):
            if self.training:
                self.running_mean.add_(x.mean(0))
            return self.weight * (x - x.mean(0)) / (x.std(0) + 1e-6) + self.bias

    norm = CustomBatchNorm(4).eval()
    calls = []
    norm.register_forward_hook(lambda *args: calls.append(1))
    assert is_norm(norm)
    assert torch.equal(norm.running_mean, torch.zeros(4)) and not norm.training
    assert calls == []


def test_a_row_under_any_name_of_a_tied_tensor_counts_for_it():

    model = _HeadFirst()  # head.weight is the first name, emb.weight the alias
    report = InitReport(scheme="demo")
    report.add("emb.weight", (200, 16), "normal")
    add_kept_rows(model, report, parameter_roles(model))
    # one row per tensor: the scheme's, under the alias it used; no kept or tied row besides
    assert [r.name for r in report.rows] == ["emb.weight", "mid.weight", "mid.bias"]


def test_a_parametrized_weight_is_no_slot_and_is_named():
    model = nn.Sequential(nn.Linear(4, 4), weight_norm(nn.Linear(4, 4)))
    assert [s.module for s in weight_slots(model)] == ["0"]
    _, report = apply(model, "kaiming-normal", seed=0, return_report=True)
    assert report.rule_of("1.parametrizations.weight.original1") == (
        "kept (unsupported: ParametrizationList)"
    )
    assert report.rule_of("1.bias") == "zero"


def test_relative_position_bias_tables_are_embeddings():
    class WindowAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))

    assert parameter_roles(WindowAttention())["relative_position_bias_table"][0] == "embedding"


def _t5_branches(model) -> list[ResidualBranch]:
    branches = []
    for stack in ("encoder", "decoder"):
        for i, block in enumerate(getattr(model, stack).block):
            for j, layer in enumerate(block.layer):
                prefix = f"{stack}.block.{i}.layer.{j}"
                if hasattr(layer, "DenseReluDense"):
                    parts = ("DenseReluDense.wi", "DenseReluDense.wo")
                else:
                    attn = "SelfAttention" if hasattr(layer, "SelfAttention") else "EncDecAttention"
                    parts = tuple(f"{attn}.{p}" for p in ("q", "k", "v", "o"))
                branches.append(ResidualBranch(layers=tuple(f"{prefix}.{p}" for p in parts)))
    return branches


@pytest.mark.parametrize("scheme", ["rezero", "skipinit", "fixup", "t-fixup"])
def test_norm_free_schemes_remove_t5_norms(scheme):
    model = _t5()
    norm_cls = _transformers().models.t5.modeling_t5.T5LayerNorm
    n_norms = sum(isinstance(m, norm_cls) for m in model.modules())
    _, report = apply(model, scheme, seed=0, branches=_t5_branches(model), return_report=True)
    assert n_norms == 2 * 2 + 3 * 2 + 2  # per layer, plus each stack's final norm
    assert not any(isinstance(m, norm_cls) for m in model.modules())
    assert sum(isinstance(m, RemovedNorm) for m in model.modules()) == n_norms
    assert any("removed normalization layers" in note for note in report.notes)
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids, decoder_input_ids=ids).last_hidden_state
    assert torch.isfinite(out).all()


def test_idinit_leaves_gpt2_pre_norm_blocks_at_identity():
    model = _gpt2()
    apply(model, "idinit", seed=0, branches=_gpt2_branches(model))
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for block in model.h:
            y = block(x)
            y = y[0] if isinstance(y, tuple) else y
            # each branch ends in an IDIZ_ε Conv1D: the block adds O(ε) to its input
            assert float((y - x).abs().max()) < 1e-4 * float(x.abs().max())
