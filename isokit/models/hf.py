"""Small Hugging Face ``transformers`` models from configs, and their inputs, as factories.

Each function builds a randomly initialized model from a tiny config (never ``from_pretrained``:
no download, no network) and is meant to be named by import path, by a report config
(``factory = "isokit.models.hf:bert"`` with ``kwargs``) or by ``isokit probe --factory``; every
keyword not listed is passed to the model's config class. Attention is the eager
implementation, which every probe transform can differentiate. :func:`token_ids` is the inputs
factory of the language models (``inputs = "isokit.models.hf:token_ids"``), :func:`pixels` the
one of ViT by keyword (``{"pixel_values": ...}``).

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

__all__ = ["bert", "gpt2", "pixels", "token_ids", "vit"]

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
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        attn_implementation="eager",
        **config,
    )
    return ViTModel(cfg, add_pooling_layer=False)


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
