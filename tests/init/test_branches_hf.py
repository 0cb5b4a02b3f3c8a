"""Branch discovery on Hugging Face models built from tiny configs: the branches found with
``example_inputs`` are the models' residual branches, written out here from their structure."""

from __future__ import annotations

import pytest
import torch

from isokit.init import apply
from isokit.init.branches import BranchDiscoveryError, find_branches
from isokit.structure import ResidualBranch

transformers = pytest.importorskip("transformers")

IDS = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))


def _pixels(size):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def _bert(layers=2):
    cfg = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
    )
    return transformers.BertModel(cfg)


def _bert_branches(layers=2, prefix="encoder.layer"):
    # post-norm: LayerNorm(x + branch), so no norm ends a branch
    out = []
    for i in range(layers):
        p = f"{prefix}.{i}"
        att = f"{p}.attention"
        out.append(
            ResidualBranch(
                layers=tuple(f"{att}.self.{x}" for x in ("query", "key", "value"))
                + (f"{att}.output.dense",)
            )
        )
        out.append(ResidualBranch(layers=(f"{p}.intermediate.dense", f"{p}.output.dense")))
    return out


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=16)
    return transformers.GPT2Model(cfg)


def _gpt2_branches():
    return [
        ResidualBranch(layers=(f"h.{i}.{m}.{a}", f"h.{i}.{m}.c_proj"))
        for i in range(2)
        for m, a in (("attn", "c_attn"), ("mlp", "c_fc"))
    ]


def _vit():
    cfg = transformers.ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    )
    return transformers.ViTModel(cfg)


def _llama():
    from tests.matrix_models import llama

    return llama()[0]


def _t5():
    cfg = transformers.T5Config(
        vocab_size=99, d_model=32, d_kv=16, d_ff=37, num_layers=2, num_heads=2
    )
    return transformers.T5EncoderModel(cfg)


def _resnet(kind):
    cfg = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[2, 1], layer_type=kind
    )
    return transformers.ResNetModel(cfg)


def _resnet_branches(model, kind):
    k = 2 if kind == "basic" else 3
    blocks = [
        n
        for n, m in model.named_modules()
        if type(m).__name__ in ("ResNetBasicLayer", "ResNetBottleNeckLayer")
    ]
    return [
        ResidualBranch(
            layers=tuple(f"{b}.layer.{j}.convolution" for j in range(k)),
            norm=f"{b}.layer.{k - 1}.normalization",
        )
        for b in blocks
    ]


def _convnext():
    cfg = transformers.ConvNextConfig(
        num_stages=2, hidden_sizes=[8, 16], depths=[2, 1], image_size=32
    )
    return transformers.ConvNextModel(cfg)


def _mobilenet():
    cfg = transformers.MobileNetV2Config(image_size=32, depth_multiplier=0.35, min_depth=4)
    return transformers.MobileNetV2Model(cfg)


def _per_block(model, cls, names):
    blocks = [n for n, m in model.named_modules() if type(m).__name__ == cls]
    return blocks, [ResidualBranch(layers=tuple(f"{b}.{x}" for x in names)) for b in blocks]


def test_bert():
    model = _bert().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert find_branches(model, example_inputs=IDS) == _bert_branches()
    assert find_branches(model, example_inputs={"input_ids": IDS}) == _bert_branches()
    # the capture ran in eval mode and on fake tensors: the model is as it was
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_distilbert():
    cfg = transformers.DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
    expected = []
    for i in range(2):
        p = f"transformer.layer.{i}"
        qkvo = ("q_lin", "k_lin", "v_lin", "out_lin")
        expected.append(ResidualBranch(layers=tuple(f"{p}.attention.{x}" for x in qkvo)))
        expected.append(ResidualBranch(layers=(f"{p}.ffn.lin1", f"{p}.ffn.lin2")))
    model = transformers.DistilBertModel(cfg)
    assert find_branches(model, example_inputs=IDS) == expected


def test_gpt2():
    model = _gpt2()
    assert find_branches(model, example_inputs=IDS) == _gpt2_branches()


def test_vit():
    model = _vit()
    lin = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    layers = [n for n, m in model.named_modules() if type(m).__name__ == "ViTLayer"]
    expected = []
    for p in layers:
        mine = [n for n in lin if n.startswith(p + ".")]
        # pre-norm: x + attention(layernorm_before(x)), x + mlp(layernorm_after(x))
        attn = [n for n in mine if ".attention." in n]
        expected.append(ResidualBranch(layers=tuple(attn)))
        expected.append(ResidualBranch(layers=tuple(n for n in mine if n not in attn)))
    assert len(expected[0].layers) == 4 and len(expected[1].layers) == 2
    assert find_branches(model, example_inputs=_pixels(16)) == expected


def _llama_branches():
    out = []
    for i in range(2):
        p = f"layers.{i}"
        out.append(ResidualBranch(layers=tuple(f"{p}.self_attn.{x}_proj" for x in "qkvo")))
        # SwiGLU: down(act(gate(x)) * up(x)); the product's data input is up, gate is the gate
        out.append(
            ResidualBranch(layers=tuple(f"{p}.mlp.{x}_proj" for x in ("gate", "up", "down")))
        )
    return out


def test_llama():
    assert find_branches(_llama(), example_inputs=IDS) == _llama_branches()


def _t5_branches():
    out = []
    for i in range(2):
        p = f"encoder.block.{i}.layer"
        out.append(ResidualBranch(layers=tuple(f"{p}.0.SelfAttention.{x}" for x in "qkvo")))
        out.append(ResidualBranch(layers=(f"{p}.1.DenseReluDense.wi", f"{p}.1.DenseReluDense.wo")))
    return out


def test_t5_encoder():
    assert find_branches(_t5(), example_inputs=IDS) == _t5_branches()


def test_t5_without_example_inputs_is_refused_not_read_in_part():
    # fx follows T5's feed-forward sub-layers but not its attention ones: 4 of the 10 branches
    # would come back, and Fixup would leave each attention's output layer at torch default.
    with pytest.raises(BranchDiscoveryError, match=r"only in part.*SelfAttention.*example_inputs"):
        find_branches(_t5())


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_hf_resnet(kind):
    model = _resnet(kind)
    expected = _resnet_branches(model, kind)
    assert len(expected) == 3
    assert find_branches(model, example_inputs=_pixels(32)) == expected
    # the projection shortcuts are main stem
    on = {x for b in expected for x in b.layers}
    assert not any("shortcut" in x for x in on)
    # HF ResNet's blocks trace with fx even where the whole model does not
    with pytest.warns(UserWarning):
        assert find_branches(model) == expected


def test_convnext():
    model = _convnext()
    _, expected = _per_block(model, "ConvNextLayer", ("dwconv", "pwconv1", "pwconv2"))
    assert len(expected) == 3
    # the layer scale is a per-channel vector, not a scalar gate: gate stays None
    assert find_branches(model, example_inputs=_pixels(32)) == expected


def test_mobilenet_v2():
    model = _mobilenet()
    blocks = [
        n
        for n, m in model.named_modules()
        if type(m).__name__ == "MobileNetV2InvertedResidual" and m.use_residual
    ]
    assert blocks  # stride 1 and in == out
    expected = [
        ResidualBranch(
            layers=tuple(f"{b}.{x}.convolution" for x in ("expand_1x1", "conv_3x3", "reduce_1x1")),
            norm=f"{b}.reduce_1x1.normalization",
        )
        for b in blocks
    ]
    assert find_branches(model, example_inputs=_pixels(32)) == expected


# ----------------------------------------------------------------- branch_last completeness


LASTS = ["*.attention.output.dense", "*.output.dense"]


@pytest.mark.parametrize("with_inputs", [False, True])
def test_branch_last_gives_complete_bert_branches(with_inputs):
    model = _bert()
    inputs = IDS if with_inputs else None
    assert find_branches(model, branch_last=LASTS, example_inputs=inputs) == _bert_branches()


@pytest.mark.parametrize(
    ("make", "lasts", "expected"),
    [
        (_gpt2, ["*.c_proj"], _gpt2_branches),
        (_llama, ["*.o_proj", "*.down_proj"], _llama_branches),
        (_t5, ["*.SelfAttention.o", "*.wo"], _t5_branches),
        (lambda: _resnet("bottleneck"), ["*.layer.2.convolution"], None),
    ],
    ids=["gpt2", "llama", "t5", "resnet"],
)
def test_branch_last_without_inputs_completes_from_the_module_tree(make, lasts, expected):
    model = make()
    want = _resnet_branches(model, "bottleneck") if expected is None else expected()
    found = find_branches(model, branch_last=lasts)
    assert [b.layers for b in found] == [b.layers for b in want]


# ----------------------------------------------------------------- schemes that use branches


def test_fixup_on_bert_sets_every_branch_layer():
    model = _bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply(model, "fixup", example_inputs=IDS, seed=0)
    params = dict(model.named_parameters())
    for b in _bert_branches():
        assert torch.count_nonzero(params[f"{b.last}.weight"]) == 0
        for name in b.layers[:-1]:
            w = params[f"{name}.weight"]
            assert torch.count_nonzero(w) == w.numel()
            assert not torch.equal(w, before[f"{name}.weight"]), name


@pytest.mark.parametrize("scheme", ["rezero", "skipinit"])
def test_gated_bert_encoder_starts_as_identity(scheme):
    model = _bert().eval()
    apply(model, scheme, example_inputs=IDS, seed=0)
    with torch.no_grad():
        out = model(IDS).last_hidden_state
        emb = model.embeddings(input_ids=IDS)
    torch.testing.assert_close(out, emb, rtol=0, atol=0)


@pytest.mark.parametrize("scheme", ["fixup", "rezero", "skipinit"])
def test_schemes_on_gpt2(scheme):
    model = _gpt2().eval()
    apply(model, scheme, example_inputs=IDS, seed=0)
    if scheme != "fixup":
        with torch.no_grad():
            out = model(IDS).last_hidden_state
            pos = model.wpe(torch.arange(IDS.shape[1]))
            torch.testing.assert_close(out, model.wte(IDS) + pos, rtol=0, atol=0)
    else:
        for b in _gpt2_branches():
            assert torch.count_nonzero(model.get_submodule(b.last).weight) == 0
