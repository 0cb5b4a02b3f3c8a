"""Fixup, T-Fixup and ReZero checked against their reference implementations' structure."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from isokit.init import apply, find_branches
from isokit.init.blocks import block_of, group_blocks
from isokit.models import ResNet, Transformer
from tests.torchvision_style import Bottleneck, conv1x1

# ------------------------------------------------------------------------------------- Fixup


def _set_scalars(model: nn.Module) -> None:
    """Give every added scalar a distinct nonzero value, so that each one's place shows."""
    with torch.no_grad():
        for i, (_, p) in enumerate(n for n in model.named_parameters() if "isokit_" in n[0]):
            p.fill_(0.1 * (i + 1) * (-1) ** i)


def test_fixup_basic_block_computes_the_reference_block():
    model = apply(ResNet(depth=8, width=4, shortcut="pad"), "fixup", seed=0)
    _set_scalars(model)
    block = model.layer2[0]  # stride 2, 4 -> 8 channels, option-A shortcut
    x = torch.randn(2, 4, 8, 8)
    b1a, b1b = block.conv1.isokit_bias_in, block.conv1.isokit_bias_out
    b2a, scale, b2b = (
        block.conv2.isokit_bias_in,
        block.conv2.isokit_scale,
        block.conv2.isokit_bias_out,
    )
    # fixup_resnet_cifar.FixupBasicBlock.forward, written out
    out = F.conv2d(x + b1a, block.conv1.weight, block.conv1.bias, stride=2, padding=1)
    out = F.relu(out + b1b)
    out = F.conv2d(out + b2a, block.conv2.weight, block.conv2.bias, padding=1)
    out = out * scale + b2b
    identity = (x + b1a)[:, :, ::2, ::2]
    identity = torch.cat((identity, torch.zeros_like(identity)), 1)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(out + identity), atol=1e-6, rtol=1e-6)


def test_fixup_network_has_the_stem_bias_and_the_classifier_bias():
    model = apply(ResNet(depth=8, width=4), "fixup", seed=0)
    _set_scalars(model)
    x = torch.randn(2, 3, 8, 8)
    stem = model.stem[0]
    # x = relu(conv1(x) + bias1); ...; fc(pool(x) + bias2)
    h = F.relu(F.conv2d(x, stem.weight, stem.bias, padding=1) + stem.isokit_bias_out)
    with torch.no_grad():
        torch.testing.assert_close(model.stem(x), h, atol=1e-6, rtol=1e-6)
        h = model.layer3(model.layer2(model.layer1(h))).mean(dim=(-2, -1))
        expected = F.linear(h + model.fc.isokit_bias_in, model.fc.weight, model.fc.bias)
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=1e-6)


class _Bottlenecks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        down = nn.Sequential(conv1x1(16, 32, 2), nn.BatchNorm2d(32))
        self.layer1 = nn.Sequential(Bottleneck(16, 8, 2, down), Bottleneck(32, 8))
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        x = self.layer1(self.relu(self.conv1(x)))
        return self.fc(x.mean(dim=(-2, -1)))


def test_fixup_bottleneck_scalars_and_depth_factor():
    model, report = apply(_Bottlenecks(), "fixup", seed=0, return_report=True)
    block = model.layer1[0]
    names = {n for n, _ in block.named_parameters() if "isokit_" in n}
    # b1a, b1b, b2a, b2b, b3a, scale, b3b (the downsample shares b1a)
    assert names == {
        "conv1.isokit_bias_in", "conv1.isokit_bias_out", "conv2.isokit_bias_in",
        "conv2.isokit_bias_out", "conv3.isokit_bias_in", "conv3.isokit_scale",
        "conv3.isokit_bias_out",
    }  # fmt: skip
    assert block.downsample.isokit_bias_in is block.conv1.isokit_bias_in
    factor = 2 ** (-1 / 4)  # L = 2 blocks, m = 3
    for conv in ("conv1", "conv2"):
        row = next(r for r in report.rows if r.name == f"layer1.0.{conv}.weight")
        assert "m=3" in row.options and f"{factor:.4g}" in row.options
    assert torch.all(block.conv3.weight == 0) and torch.all(model.fc.weight == 0)
    # The projection shortcut: He fan_out without the depth factor.
    w = block.downsample[0].weight
    assert abs(w.std().item() / math.sqrt(2 / 32) - 1) < 0.25


def test_fixup_on_attention_follows_the_transformer_variant_and_says_so():
    depth = 3
    model, report = apply(
        Transformer(depth, 16, 2, 32, 4, norm="none"), "fixup", seed=0, return_report=True
    )
    n_branches = 2 * depth
    attn = model.blocks[0].attn
    bound = math.sqrt(6 / 32)  # Xavier-uniform of one 16 × 16 projection
    q_factor = n_branches ** (-1 / 6)  # m = 4
    assert attn.q.weight.abs().max() <= bound * q_factor + 1e-7
    assert attn.q.weight.abs().max() > 0.9 * bound * q_factor
    assert torch.all(attn.out.weight == 0) and torch.all(model.blocks[0].ffn.fc2.weight == 0)
    fc1 = model.blocks[0].ffn.fc1.weight
    assert fc1.abs().max() <= math.sqrt(6 / 48) * n_branches**-0.5 + 1e-7
    assert any("attention" in n and "m = 4" in n for n in report.notes)
    # One shift of the attention input (read by q, k and v), a multiplier after out.
    assert hasattr(attn, "isokit_bias_in") and not hasattr(attn.q, "isokit_bias_in")
    assert attn.out.isokit_scale.item() == 1 and not hasattr(attn.out, "isokit_bias_out")
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), x + model.pos_embedding)  # every block starts at identity


def test_fixup_shifts_query_key_and_value_of_a_torch_self_attention():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = apply(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False), "fixup", seed=0)
    attn = model.layers[0].self_attn
    with torch.no_grad():
        attn.isokit_bias_in.fill_(0.5)
        attn.out_proj.weight.normal_()
    x = torch.randn(2, 3, 8)
    seen = {}
    hook = attn.register_forward_hook(lambda m, a, o: seen.update(args=a), with_kwargs=False)
    with torch.no_grad():
        model(x)
    hook.remove()
    q, k, v = seen["args"][:3]
    assert q is k is v and torch.allclose(q, x + 0.5)


# ----------------------------------------------------------------------------------- T-Fixup


class _Seq2Seq(nn.Module):
    """Token embeddings tied between encoder, decoder and output layer, learned positions."""

    def __init__(self, n_enc: int, n_dec: int, d: int = 16, vocab: int = 50) -> None:
        super().__init__()
        self.encoder_embed = nn.Embedding(vocab, d)
        self.decoder_embed = self.encoder_embed
        self.embed_positions = nn.Embedding(10, d)
        self.transformer = nn.Transformer(d, 2, n_enc, n_dec, 32, dropout=0.0, batch_first=True)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.encoder_embed.weight

    def branches(self):
        found = find_branches(self.transformer)
        return [
            type(b)(layers=tuple(f"transformer.{n}" for n in b.layers), gate=b.gate, norm=b.norm)
            for b in found
        ]


def _max_ratio(w: torch.Tensor, bound: float) -> float:
    return (w.abs().max() / bound).item()


def test_t_fixup_encoder_and_decoder_rules():
    n_enc, n_dec, d = 2, 3, 16
    model = _Seq2Seq(n_enc, n_dec, d)
    pos_before = model.embed_positions.weight.detach().clone()
    model, report = apply(model, "t-fixup", seed=0, branches=model.branches(), return_report=True)
    bound = math.sqrt(6 / (2 * d))  # per-projection Xavier-uniform
    enc, dec = 0.67 * n_enc**-0.25, (9 * n_dec) ** -0.25
    e = model.transformer.encoder.layers[0]
    dl = model.transformer.decoder.layers[1]
    for w, factor in [
        (e.self_attn.in_proj_weight[2 * d :], enc),  # v
        (e.self_attn.out_proj.weight, enc),
        (dl.self_attn.in_proj_weight[2 * d :], dec),
        (dl.multihead_attn.in_proj_weight[2 * d :], dec),  # cross-attention v
        (dl.multihead_attn.out_proj.weight, dec),
        (e.self_attn.in_proj_weight[:d], 1.0),  # q is not scaled
        (dl.multihead_attn.in_proj_weight[d : 2 * d], 1.0),  # nor is the cross-attention k
    ]:
        assert 0.9 < _max_ratio(w, bound * factor) <= 1 + 1e-6
    fc_bound = math.sqrt(6 / (d + 32))
    assert 0.9 < _max_ratio(dl.linear1.weight, fc_bound * dec) <= 1 + 1e-6
    assert 0.9 < _max_ratio(e.linear2.weight, fc_bound * enc) <= 1 + 1e-6
    # Tied token embeddings: set once, with the encoder-side factor; positions kept.
    emb = model.encoder_embed.weight
    expected_std = d**-0.5 * (9 * n_enc) ** -0.25
    assert abs(emb.std().item() / expected_std - 1) < 0.1
    assert model.lm_head.weight is emb
    assert [r.name for r in report.rows].count("encoder_embed.weight") == 1
    assert not any(r.name.startswith("lm_head") and r.rule == "xavier-uniform" for r in report.rows)
    assert torch.equal(model.embed_positions.weight, pos_before)
    assert any("N_e = 2" in n and "N_d = 3" in n for n in report.notes)


def test_t_fixup_encoder_only_counts_layers_not_branches():
    depth = 4
    model, report = apply(Transformer(depth, 32, 4, 64, 6), "t-fixup", seed=0, return_report=True)
    factor = 0.67 * depth ** (-0.25)
    v = model.blocks[0].attn.v.weight
    assert 0.9 < _max_ratio(v, math.sqrt(6 / 64) * factor) <= 1 + 1e-6
    assert any("no decoder layer" in n for n in report.notes)


# ------------------------------------------------------------------------------------ ReZero


def _torch_encoder(n: int = 2) -> nn.Module:
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, n, enable_nested_tensor=False)


def test_blocks_are_layer_modules():
    model = _torch_encoder(2)
    groups = group_blocks(model, find_branches(model))
    assert groups == {"layers.0": [0, 1], "layers.1": [2, 3]}
    resnet = ResNet(depth=8, width=4)
    assert [block_of(resnet, b) for b in resnet.residual_branches()] == [
        "layer1.0", "layer2.0", "layer3.0"
    ]  # fmt: skip


def test_rezero_shares_one_alpha_per_block_by_default():
    model, report = apply(_torch_encoder(2), "rezero", seed=0, alpha=0.25, return_report=True)
    for layer in model.layers:
        assert layer.self_attn.isokit_scale is layer.linear2.isokit_scale
    scales = {id(p) for n, p in model.named_parameters() if n.endswith("isokit_scale")}
    assert len(scales) == 2
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        y = model(x)
        model.layers[0].self_attn.isokit_scale.fill_(0.0)  # one gate switches both sub-layers
        model.layers[1].linear2.isokit_scale.fill_(0.0)
        assert torch.equal(model(x), x) and not torch.allclose(y, x)


def test_rezero_shares_the_alpha_of_a_decoder_layers_three_sub_layers():
    layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = nn.TransformerDecoder(layer, 2)
    branches = find_branches(model)
    apply(model, "rezero", seed=0, branches=branches)
    for block in model.layers:
        gate = block.self_attn.isokit_scale
        assert block.multihead_attn.isokit_scale is gate and block.linear2.isokit_scale is gate


def test_rezero_one_alpha_per_sub_layer():
    model = apply(_torch_encoder(2), "rezero", seed=0, share_alpha=False)
    layer = model.layers[0]
    assert layer.self_attn.isokit_scale is not layer.linear2.isokit_scale
    assert sum(n.endswith("isokit_scale") for n, _ in model.named_parameters()) == 4


def test_rezero_per_sub_layer_on_a_model_declaring_one_gate_per_block():
    model, report = apply(
        Transformer(2, 16, 4, 32, 5, gate="scalar"), "rezero", seed=0, share_alpha=False,
        return_report=True,
    )  # fmt: skip
    assert model.blocks[0].gate.item() == 1.0  # held at 1, each sub-layer has its own α = 0
    assert model.blocks[0].attn.out.isokit_scale.item() == 0.0
    assert model.blocks[0].ffn.fc2.isokit_scale.item() == 0.0
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), x + model.pos_embedding)
    shared = apply(Transformer(2, 16, 4, 32, 5, gate="scalar"), "rezero", seed=0)
    assert shared.blocks[0].gate.item() == 0.0
    assert not any("isokit_scale" in n for n, _ in shared.named_parameters())


def test_t_fixup_on_hf_t5_tells_decoder_layers_and_sets_the_shared_embedding_once():
    transformers = pytest.importorskip("transformers")
    d, n_enc, n_dec = 32, 2, 3
    cfg = transformers.T5Config(
        vocab_size=99, d_model=d, d_kv=16, d_ff=37, num_layers=n_enc,
        num_decoder_layers=n_dec, num_heads=2,
    )  # fmt: skip
    model = transformers.T5Model(cfg)
    rel = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    rel_before = rel.detach().clone()
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "decoder_input_ids": ids}
    model, report = apply(model, "t-fixup", seed=0, example_inputs=inputs, return_report=True)
    assert any("N_e = 2" in n and "N_d = 3" in n for n in report.notes)
    cross = model.decoder.block[1].layer[1].EncDecAttention
    bound, dec = math.sqrt(6 / 64), (9 * n_dec) ** -0.25
    assert 0.9 < _max_ratio(cross.v.weight, bound * dec) <= 1 + 1e-6
    assert 0.9 < _max_ratio(cross.k.weight, bound) <= 1 + 1e-6
    shared = model.shared.weight
    assert model.decoder.embed_tokens.weight is shared
    assert abs(shared.std().item() / (d**-0.5 * (9 * n_enc) ** -0.25) - 1) < 0.1
    assert torch.equal(rel, rel_before)  # relative-attention biases are not token embeddings


def test_t_fixup_on_hf_bert_rescales_only_the_token_embeddings():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37,
    )  # fmt: skip
    model = transformers.BertModel(cfg)
    emb = model.embeddings
    kept = [emb.position_embeddings.weight.detach().clone(), emb.token_type_embeddings.weight]
    kept[1] = kept[1].detach().clone()
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))
    apply(model, "t-fixup", seed=0, example_inputs=(ids,))
    assert torch.equal(emb.position_embeddings.weight, kept[0])
    assert torch.equal(emb.token_type_embeddings.weight, kept[1])
    word = emb.word_embeddings.weight
    assert abs(word.std().item() / (32**-0.5 * 18**-0.25) - 1) < 0.1


def test_fixup_on_hf_t5_scales_the_cross_attention_key_and_value_like_its_query():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.T5Config(
        vocab_size=99, d_model=32, d_kv=16, d_ff=37, num_layers=2, num_decoder_layers=2,
        num_heads=2,
    )  # fmt: skip
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "decoder_input_ids": ids}
    model = apply(transformers.T5Model(cfg), "fixup", seed=0, example_inputs=inputs)
    n_branches = 2 * 2 + 3 * 2
    bound = math.sqrt(6 / 64) * n_branches ** (-1 / 6)  # Xavier-uniform 32 × 32, m = 4
    cross = model.decoder.block[0].layer[1].EncDecAttention
    for proj in (cross.q, cross.k, cross.v):
        assert 0.9 < _max_ratio(proj.weight, bound) <= 1 + 1e-6
    assert torch.all(cross.o.weight == 0)


def test_fixup_identity_shortcut_takes_x_without_the_bias_and_scalars_are_reported():
    model, report = apply(ResNet(depth=8, width=4), "fixup", seed=0, return_report=True)
    _set_scalars(model)
    block = model.layer1[0]  # identity shortcut
    x = torch.rand(2, 4, 8, 8)
    c1, c2 = block.conv1, block.conv2
    out = F.conv2d(x + c1.isokit_bias_in, c1.weight, c1.bias, padding=1)
    out = F.relu(out + c1.isokit_bias_out)
    out = F.conv2d(out + c2.isokit_bias_in, c2.weight, c2.bias, padding=1)
    out = out * c2.isokit_scale + c2.isokit_bias_out
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(out + x), atol=1e-6, rtol=1e-6)
    assert report.rule_of("layer1.0.conv2.isokit_scale") == "const 1"
    row = next(r for r in report.rows if r.name == "stem.0.isokit_bias_out")
    assert row.rule == "const 0" and "added" in row.options


def _gpt2():
    pytest.importorskip("transformers")
    from tests.matrix_models import gpt2

    torch.manual_seed(0)
    return gpt2()


def test_t_fixup_on_gpt2_scales_only_the_value_third_of_the_packed_projection():
    model, ids = _gpt2()
    apply(model, "t-fixup", seed=0, example_inputs=ids)
    d = model.config.n_embd
    bound = math.sqrt(6 / (2 * d))  # Xavier-uniform of one [d, d] projection
    factor = 0.67 * 2**-0.25  # two encoder-rule layers
    w = model.h[0].attn.c_attn.weight.t()  # Conv1D: [in, 3d] stored, [3d, in] as a layer
    q, k, v = w[:d], w[d : 2 * d], w[2 * d :]
    assert q.abs().max() <= bound and k.abs().max() <= bound
    assert v.abs().max() <= factor * bound < q.abs().max()  # 256 uniform draws: never all small
    assert model.h[0].mlp.c_fc.weight.abs().max() <= factor * math.sqrt(6 / (5 * d))


def test_fixup_on_gpt2_counts_q_k_v_and_out_of_the_packed_projection():
    model, ids = _gpt2()
    _, report = apply(model, "fixup", seed=0, example_inputs=ids, return_report=True)
    assert report.rule_of("h.0.attn.c_proj.weight") == "zero"
    for part in "qkv":
        row = next(r for r in report.rows if r.name == f"h.0.attn.c_attn.weight[{part}]")
        assert "m=4" in row.options
    assert torch.count_nonzero(model.h[0].attn.c_proj.weight) == 0
