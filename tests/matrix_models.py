"""Tiny models for the model × scheme matrix (``tests/init/test_model_matrix.py``).

Each builder returns ``(model, example_inputs)``: a model with random weights from a small
config (Hugging Face ``transformers`` ones are built from configs, never downloaded) and what
its forward takes. :data:`CASES` names each model with its residual branches, written out here
from the model's module tree (not from isokit's answer), the blocks its probe taps, and the
float input the probe differentiates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from isokit.structure import ResidualBranch
from tests.torchvision_style import BasicBlock, Bottleneck, conv1x1, conv3x3

SEQ = 5
VOCAB = 99


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(seed))


def _pixels(size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=16,
        attn_implementation="eager",
    )
    return BertModel(cfg, add_pooling_layer=False), {"input_ids": _ids()}


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    cfg = DistilBertConfig(
        vocab_size=VOCAB,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=37,
        max_position_embeddings=16,
        attn_implementation="eager",
    )
    return DistilBertModel(cfg), {"input_ids": _ids()}


def gpt2():
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=16,
        use_cache=False,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
        attn_implementation="eager",
    )
    return GPT2Model(cfg), {"input_ids": _ids()}


def vit():
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(
        image_size=8,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        attn_implementation="eager",
    )
    return ViTModel(cfg, add_pooling_layer=False), {"pixel_values": _pixels(8)}


def t5():
    """The encoder-decoder ``T5Model`` (self, cross attention and feed-forward layers)."""
    from transformers import T5Config, T5Model

    cfg = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=16,
        d_ff=37,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        use_cache=False,
        decoder_start_token_id=0,
        attn_implementation="eager",
    )
    ids = _ids()
    return T5Model(cfg), {"input_ids": ids, "decoder_input_ids": _ids(2)[:, :4]}


def llama():
    from transformers import LlamaConfig, LlamaModel

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
        use_cache=False,
        attn_implementation="eager",
    )
    return LlamaModel(cfg), {"input_ids": _ids()}


def hf_resnet(kind: str):
    from transformers import ResNetConfig, ResNetModel

    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type=kind)
    return ResNetModel(cfg), {"pixel_values": _pixels(8)}


def convnext():
    from transformers import ConvNextConfig, ConvNextModel

    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=8)
    return ConvNextModel(cfg), {"pixel_values": _pixels(8)}


def mobilenet_v2():
    from transformers import MobileNetV2Config, MobileNetV2Model

    cfg = MobileNetV2Config(image_size=8, depth_multiplier=0.35, min_depth=4)
    return MobileNetV2Model(cfg), {"pixel_values": _pixels(8)}


def transformer():
    """``nn.Transformer`` (post-norm encoder-decoder), batch first, ``forward(src, tgt)``."""
    model = nn.Transformer(
        d_model=16,
        nhead=2,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=24,
        dropout=0.0,
        batch_first=True,
    )
    g = torch.Generator().manual_seed(3)
    return model, (torch.randn(1, 4, 16, generator=g), torch.randn(1, 3, 16, generator=g))


class ResNeXtBlock(Bottleneck):
    """torchvision's ResNeXt block: a Bottleneck whose 3×3 convolution is grouped."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=2):
        super().__init__(inplanes, planes, stride, downsample)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=groups, bias=False)


class TorchvisionStyleNet(nn.Module):
    """A two-stage torchvision-style ResNet: stem conv + BN, blocks, pool and ``fc``."""

    def __init__(self, block: type[nn.Module], planes: int = 4, classes: int = 5):
        super().__init__()
        wide = planes * block.expansion
        self.conv1 = conv3x3(3, wide)
        self.bn1 = nn.BatchNorm2d(wide)
        self.relu = nn.ReLU(inplace=True)
        down = nn.Sequential(conv1x1(wide, 2 * wide, 2), nn.BatchNorm2d(2 * wide))
        self.layer1 = nn.Sequential(block(wide, planes))
        self.layer2 = nn.Sequential(block(wide, 2 * planes, 2, down))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * wide, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tv_resnet():
    return TorchvisionStyleNet(BasicBlock), _pixels(8)


def tv_resnext():
    return TorchvisionStyleNet(ResNeXtBlock, planes=2), _pixels(8)


# ----------------------------------------------------------------------------- the branches


def _mlp_after(prefix: str, attention: tuple[str, ...], mlp: tuple[str, ...]):
    """One attention sub-layer and one feed-forward sub-layer of a Transformer block."""
    return [
        ResidualBranch(layers=tuple(f"{prefix}.{x}" for x in attention)),
        ResidualBranch(layers=tuple(f"{prefix}.{x}" for x in mlp)),
    ]


def _per_layer(prefix: str, attention, mlp, n: int = 2):
    return [b for i in range(n) for b in _mlp_after(f"{prefix}.{i}", attention, mlp)]


def _of_class(model: nn.Module, cls: str, keep=lambda m: True) -> list[str]:
    return [n for n, m in model.named_modules() if type(m).__name__ == cls and keep(m)]


def bert_branches(model):
    # post-norm: LayerNorm(x + branch(x)), so no norm ends a branch
    qkvo = ("attention.self.query", "attention.self.key", "attention.self.value")
    return _per_layer(
        "encoder.layer", (*qkvo, "attention.output.dense"), ("intermediate.dense", "output.dense")
    )


def distilbert_branches(model):
    qkvo = tuple(f"attention.{x}_lin" for x in ("q", "k", "v", "out"))
    return _per_layer("transformer.layer", qkvo, ("ffn.lin1", "ffn.lin2"))


def gpt2_branches(model):
    # pre-norm x + attn(ln_1(x)): c_attn computes q, k and v in one Conv1D
    return _per_layer("h", ("attn.c_attn", "attn.c_proj"), ("mlp.c_fc", "mlp.c_proj"))


def vit_branches(model):
    qkvo = tuple(f"attention.{x}_proj" for x in "qkvo")
    return _per_layer("layers", qkvo, ("mlp.fc1", "mlp.fc2"))


def llama_branches(model):
    # SwiGLU: down(act(gate(x)) * up(x))
    qkvo = tuple(f"self_attn.{x}_proj" for x in "qkvo")
    return _per_layer("layers", qkvo, tuple(f"mlp.{x}_proj" for x in ("gate", "up", "down")))


def t5_branches(model):
    out = []
    qkvo = tuple(f"SelfAttention.{x}" for x in "qkvo")
    ff = ("DenseReluDense.wi", "DenseReluDense.wo")
    for i in range(2):
        p = f"encoder.block.{i}.layer"
        out.append(ResidualBranch(layers=tuple(f"{p}.0.{x}" for x in qkvo)))
        out.append(ResidualBranch(layers=tuple(f"{p}.1.{x}" for x in ff)))
    for i in range(2):
        p = f"decoder.block.{i}.layer"
        out.append(ResidualBranch(layers=tuple(f"{p}.0.{x}" for x in qkvo)))
        # cross attention: k and v read the encoder output, so only q and o are on the branch
        out.append(ResidualBranch(layers=(f"{p}.1.EncDecAttention.q", f"{p}.1.EncDecAttention.o")))
        out.append(ResidualBranch(layers=tuple(f"{p}.2.{x}" for x in ff)))
    return out


def hf_resnet_branches(model):
    # x + BN(conv(...)): the norm after the last convolution ends the branch
    out = []
    for b in _of_class(model, "ResNetBasicLayer") + _of_class(model, "ResNetBottleNeckLayer"):
        k = len(model.get_submodule(b).layer)
        out.append(
            ResidualBranch(
                layers=tuple(f"{b}.layer.{j}.convolution" for j in range(k)),
                norm=f"{b}.layer.{k - 1}.normalization",
            )
        )
    return out


def convnext_branches(model):
    # x + γ·pwconv2(act(pwconv1(LN(dwconv(x))))): the per-channel layer scale is no scalar gate
    names = ("dwconv", "pwconv1", "pwconv2")
    blocks = _of_class(model, "ConvNextLayer")
    return [ResidualBranch(layers=tuple(f"{b}.{x}" for x in names)) for b in blocks]


def mobilenet_blocks(model):
    return _of_class(model, "MobileNetV2InvertedResidual", lambda m: m.use_residual)


def mobilenet_branches(model):
    # only stride-1 blocks with as many inputs as outputs add their input
    names = ("expand_1x1", "conv_3x3", "reduce_1x1")
    return [
        ResidualBranch(
            layers=tuple(f"{b}.{x}.convolution" for x in names),
            norm=f"{b}.reduce_1x1.normalization",
        )
        for b in mobilenet_blocks(model)
    ]


def transformer_branches(model):
    # an nn.MultiheadAttention is one weight layer (its packed in-projection), then out_proj
    out = _per_layer("encoder.layers", ("self_attn", "self_attn.out_proj"), ("linear1", "linear2"))
    for i in range(2):
        p = f"decoder.layers.{i}"
        for att in ("self_attn", "multihead_attn"):
            out.append(ResidualBranch(layers=(f"{p}.{att}", f"{p}.{att}.out_proj")))
        out.append(ResidualBranch(layers=(f"{p}.linear1", f"{p}.linear2")))
    return out


def tv_branches(model):
    out = []
    for b in ("layer1.0", "layer2.0"):
        block = model.get_submodule(b)
        k = 3 if hasattr(block, "conv3") else 2
        layers = tuple(f"{b}.conv{j}" for j in range(1, k + 1))
        out.append(ResidualBranch(layers=layers, norm=f"{b}.bn{k}"))
    return out


# ----------------------------------------------------------------------------- probe views


class Embedded(nn.Module):
    """A token model as a function of its input embeddings: ``model(inputs_embeds=e, **fixed)``.

    ``fixed`` tensors are buffers, so that the probe's float64 copy converts floating ones.
    """

    def __init__(self, model: nn.Module, **fixed: torch.Tensor):
        super().__init__()
        self.model = model
        self._fixed = tuple(fixed)
        for k, v in fixed.items():
            self.register_buffer(k, v)

    def forward(self, emb):
        return self.model(inputs_embeds=emb, **{k: getattr(self, k) for k in self._fixed})


class Source(nn.Module):
    """``nn.Transformer`` as a function of its source sequence, with a fixed target."""

    def __init__(self, model: nn.Module, tgt: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("tgt", tgt)

    def forward(self, src):
        return self.model(src, self.tgt)


def token_view(model, inputs):
    """The embedded tokens and the model as a function of them."""
    ids = inputs["input_ids"]
    emb = model.get_input_embeddings()(ids).detach()
    fixed = {k: v for k, v in inputs.items() if k != "input_ids"}
    return Embedded(model, **fixed), emb


def pixel_view(model, inputs):
    return model, inputs["pixel_values"] if isinstance(inputs, dict) else inputs


def source_view(model, inputs):
    src, tgt = inputs
    return Source(model, tgt), src


@dataclass(frozen=True)
class Case:
    """One model of the matrix: how to build it, its branches, taps and probe view.

    ``taps(model)`` are the residual blocks (module names in the model); ``view(model,
    inputs)`` returns the module the probe differentiates and its float input, with the model
    as its submodule ``prefix`` (``"model."`` for wrappers, ``""`` otherwise). ``pre_norm``
    says whether each block is x + F(norm(x)); ``adds_last`` whether each block returns its
    input plus its branches with nothing after the addition (pre-norm blocks, ConvNeXt,
    MobileNetV2's linear bottlenecks); ``post_norm`` whether a norm follows each addition and
    nothing else (BERT, DistilBERT, ``nn.Transformer``). ``rtol`` is the
    agreement of the exact probe with a dense float64 Jacobian, relative to the largest
    singular value: 1e-10, except where the model computes in float32 whatever its dtype (ViT's
    and Llama's eager attention take the softmax in float32, T5's norm the variance), there
    1e-6.
    """

    build: Callable
    branches: Callable
    taps: Callable
    view: Callable = pixel_view
    prefix: str = ""
    hf: bool = True
    pre_norm: bool = False
    rtol: float = 1e-10
    adds_last: bool = False
    post_norm: bool = False

    def __post_init__(self):
        if self.pre_norm:
            object.__setattr__(self, "adds_last", True)


def _names(*patterns: str, n: int = 2) -> Callable:
    return lambda model: [p.format(i) for p in patterns for i in range(n)]


def _TV_BLOCKS(model):
    return ["layer1.0", "layer2.0"]


CASES: dict[str, Case] = {
    "bert": Case(
        bert, bert_branches, _names("encoder.layer.{}"), token_view, "model.", post_norm=True
    ),
    "distilbert": Case(
        distilbert,
        distilbert_branches,
        _names("transformer.layer.{}"),
        token_view,
        "model.",
        post_norm=True,
    ),
    "gpt2": Case(gpt2, gpt2_branches, _names("h.{}"), token_view, "model.", pre_norm=True),
    "vit": Case(vit, vit_branches, _names("layers.{}"), pre_norm=True, rtol=1e-6),
    "t5": Case(
        t5,
        t5_branches,
        _names("encoder.block.{}", "decoder.block.{}"),
        token_view,
        "model.",
        pre_norm=True,
        rtol=1e-6,
    ),
    "llama": Case(
        llama, llama_branches, _names("layers.{}"), token_view, "model.", pre_norm=True, rtol=1e-6
    ),
    "resnet-basic": Case(
        lambda: hf_resnet("basic"), hf_resnet_branches, _names("encoder.stages.{}.layers.0")
    ),
    "resnet-bottleneck": Case(
        lambda: hf_resnet("bottleneck"), hf_resnet_branches, _names("encoder.stages.{}.layers.0")
    ),
    "convnext": Case(
        convnext, convnext_branches, _names("encoder.stages.{}.layers.0"), adds_last=True
    ),
    "mobilenet-v2": Case(mobilenet_v2, mobilenet_branches, mobilenet_blocks, adds_last=True),
    "nn.Transformer": Case(
        transformer,
        transformer_branches,
        _names("encoder.layers.{}", "decoder.layers.{}"),
        source_view,
        "model.",
        hf=False,
        post_norm=True,
    ),
    "tv-resnet": Case(tv_resnet, tv_branches, _TV_BLOCKS, hf=False),
    "tv-resnext": Case(tv_resnext, tv_branches, _TV_BLOCKS, hf=False),
}
