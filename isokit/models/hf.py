"""Small Hugging Face ``transformers`` models from configs, and their inputs, as factories.

Each function builds a randomly initialized model from a tiny config (never ``from_pretrained``:
no download, no network) and is meant to be named by import path, by a report config
(``factory = "isokit.models.hf:bert"`` with ``kwargs``) or by ``isokit probe --factory``; every
keyword not listed is passed to the model's config class. Attention is the eager
implementation, which every probe transform can differentiate. :func:`token_ids` is the inputs
factory of the language models (``inputs = "isokit.models.hf:token_ids"``), :func:`pixels` the
one of ViT by keyword (``{"pixel_values": ...}``). :func:`vit_classifier` is a ViT with its
classification head whose forward returns the logits tensor, so that :func:`isokit.train.train`
(and a config's ``[train]`` section) can train it on images.

``transformers`` is the optional extra ``isokit[hf]``; it is imported when a model is built, so
without it this module still imports and building a model raises ``ModuleNotFoundError``, which
a config reports in one line naming ``pip install 'isokit[hf]'``.

Which module's output to probe from (``start``): ``"embeddings"`` for BERT and ViT (token or
patch embeddings with positions, after their LayerNorm), ``"drop"`` for GPT-2 (its token and
position embeddings are summed inside its forward, then pass this dropout); the repeated blocks
are ``"encoder.layer.*"`` (BERT), ``"h.*"`` (GPT-2) and ``"layers.*"`` (ViT).

Example:
    >>> import torch
    >>> ids = token_ids(2, generator=torch.Generator().manual_seed(0))["input_ids"]
    >>> ids.shape, ids.dtype
    (torch.Size([2, 8]), torch.int64)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Logits", "bert", "gpt2", "pixels", "token_ids", "vit", "vit_classifier"]

#: The vocabulary of every model here, so that :func:`token_ids` fits them all by default.
VOCAB = 99


def bert(
    *,
    vocab_size: int = VOCAB,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 37,
    max_position_embeddings: int = 64,
    **config: Any,
) -> nn.Module:
    """A ``BertModel`` (post-norm encoder) with random weights from a small ``BertConfig``."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        attn_implementation="eager",
        **config,
    )
    return BertModel(cfg)


def gpt2(
    *,
    vocab_size: int = VOCAB,
    n_embd: int = 32,
    n_layer: int = 2,
    n_head: int = 2,
    n_positions: int = 64,
    **config: Any,
) -> nn.Module:
    """A ``GPT2Model`` (pre-norm decoder, ``Conv1D`` layers) with random weights, no cache."""
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_positions=n_positions,
        use_cache=False,
        # GPT-2's own special tokens (50256) lie outside a small vocabulary: the last token.
        bos_token_id=config.pop("bos_token_id", vocab_size - 1),
        eos_token_id=config.pop("eos_token_id", vocab_size - 1),
        attn_implementation="eager",
        **config,
    )
    return GPT2Model(cfg)


def _vit_config(**config: Any):
    """The ``ViTConfig`` of :func:`vit` and :func:`vit_classifier`: eager attention, so that
    forward-mode probes see plain matmuls."""
    from transformers import ViTConfig

    return ViTConfig(attn_implementation="eager", **config)


def vit(
    *,
    image_size: int = 16,
    patch_size: int = 4,
    num_channels: int = 3,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 37,
    **config: Any,
) -> nn.Module:
    """A ``ViTModel`` (pre-norm encoder on patches) with random weights; input ``[C, H, W]``."""
    from transformers import ViTModel

    cfg = _vit_config(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        **config,
    )
    return ViTModel(cfg, add_pooling_layer=False)


class Logits(torch.nn.Module):
    """A Hugging Face classifier as a plain ``tensor → logits`` module.

    HF classifiers return an output object (``ImageClassifierOutput``); isokit's trainer and
    probes need a tensor. ``forward(x)`` calls ``model(**{keyword: x})`` and returns its
    ``.logits``. The wrapped model is the child ``model``, so its modules are named
    ``model.<HF name>`` (``model.vit.layers.0``, ``model.classifier``).
    """

    def __init__(self, model: nn.Module, keyword: str = "pixel_values") -> None:
        super().__init__()
        self.model = model
        self.keyword = keyword

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(**{self.keyword: x}).logits


def vit_classifier(
    *,
    num_labels: int = 10,
    image_size: int = 32,
    patch_size: int = 4,
    num_channels: int = 1,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 37,
    **config: Any,
) -> nn.Module:
    """A ``ViTForImageClassification`` with random weights, as :class:`Logits`: input
    ``[C, H, W]`` (default one 32×32 channel, Fashion-MNIST as :func:`isokit.train.load_data`
    pads it), output ``num_labels`` logits read off the final ``[CLS]`` token.

    Its blocks are ``"model.vit.layers.*"``, the patch embeddings ``"model.vit.embeddings"`` and
    the head ``"model.classifier"``.
    """
    from transformers import ViTForImageClassification

    cfg = _vit_config(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        num_labels=num_labels,
        **config,
    )
    return Logits(ViTForImageClassification(cfg))


def token_ids(
    n: int, *, generator: torch.Generator, vocab_size: int = VOCAB, seq_len: int = 8
) -> dict[str, torch.Tensor]:
    """``{"input_ids": ...}``: ``n`` sequences of ``seq_len`` token ids uniform in the vocabulary.

    The inputs factory of :func:`bert` and :func:`gpt2` (their forward takes ``input_ids``).
    """
    ids = torch.randint(0, vocab_size, (n, seq_len), generator=generator)
    return {"input_ids": ids}


def pixels(
    n: int, *, generator: torch.Generator, num_channels: int = 3, image_size: int = 16
) -> dict[str, torch.Tensor]:
    """``{"pixel_values": ...}``: ``n`` images of i.i.d. standard normal pixels, by keyword.

    The inputs factory of :func:`vit`. A ViT also takes a plain ``[C, H, W]`` batch
    (``input_shape``); by keyword, the probes treat it as they treat token ids: from ``start``,
    whose output is then also the input of the forward signal.
    """
    x = torch.randn(n, num_channels, image_size, image_size, generator=generator)
    return {"pixel_values": x}
