"""Factories from outside isokit for the config and CLI tests, named by import path.

``tests.report.factories:residual_tokens`` is a small residual model that reads token ids by
keyword (``input_ids``, optionally ``scale``), like a language model does; the others are
mistakes a user can make (a factory that raises, one that returns no module, a non-callable).
"""

from __future__ import annotations

import torch
from torch import nn

CALLS: list[dict] = []  # what residual_tokens was called with, for the tests to read


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.tanh(self.fc1(x)))


class TokenModel(nn.Module):
    """Embeddings, then residual blocks; ``forward(input_ids, scale=1.0)`` by keyword."""

    def __init__(self, vocab: int, width: int, depth: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.head = nn.Linear(width, 3)

    def forward(self, input_ids: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, None]:
        h = self.embed(input_ids) * scale
        for block in self.blocks:
            h = block(h)
        return self.head(h), None  # a tuple output, as Hugging Face models return


def residual_tokens(*, vocab: int = 11, width: int = 6, depth: int = 3) -> nn.Module:
    CALLS.append({"vocab": vocab, "width": width, "depth": depth})
    return TokenModel(vocab, width, depth)


def residual_mlp(*, width: int = 6, depth: int = 3) -> nn.Module:
    """Float inputs of ``[width]``: a model that takes ``input_shape``."""
    return nn.Sequential(*[_Block(width) for _ in range(depth)])


def token_batch(n: int, *, generator: torch.Generator, vocab: int = 11, seq_len: int = 4):
    return {"input_ids": torch.randint(0, vocab, (n, seq_len), generator=generator)}


def positional_batch(n: int, *, generator: torch.Generator, vocab: int = 11):
    return (torch.randint(0, vocab, (n, 4), generator=generator),)


def wrong_batch(n: int, *, generator: torch.Generator):
    return torch.zeros(n + 1, 6)


def fails(**kwargs) -> nn.Module:
    raise RuntimeError("the factory's own failure")


def not_a_module(**kwargs):
    return [nn.Linear(2, 2)]


NOT_CALLABLE = 3
