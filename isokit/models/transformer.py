"""A Transformer encoder over a (seq_len, d_model) input, with explicit q/k/v projections."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from isokit.models.activations import ACTIVATION_ARG, make_activation
from isokit.models.args import Arg, Derived, Rule, size
from isokit.models.cost import ModelSize
from isokit.models.inputs import FixedInput
from isokit.models.spec import ModelKind, kind_checked, register_model_kind
from isokit.structure import ResidualBranch


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate ``q``, ``k``, ``v`` and ``out`` projections.

    Written out (softmax of scaled dot products) rather than through fused SDPA kernels, because
    forward-mode autodiff, which the probes use, is not available for every fused kernel.
    Built on its own, it checks its sizes by the transformer kind's own specs and rule.

    Example:
        >>> SelfAttention(10, 3)
        Traceback (most recent call last):
        ...
        isokit.models.args.ModelArgError: heads: d_model = 10 must be divisible by heads = 3
    """

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        kind = TRANSFORMER_KIND
        sizes = {
            "d_model": kind.arg("d_model").check(d_model),
            "heads": kind.arg("heads").check(heads),
        }
        HEADS_DIVIDE.require(sizes)
        self.heads = heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
        y = torch.softmax(scores, dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """``fc2(φ(fc1(x)))`` with ``fc1: d_model → d_ff``."""

    def __init__(self, d_model: int, d_ff: int, activation: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """One encoder layer: an attention sub-layer and a feed-forward sub-layer.

    ``norm="pre"``: ``x + g·attn(ln1(x))``, then ``x + g·ffn(ln2(x))``;
    ``norm="post"``: ``ln1(x + g·attn(x))``, then ``ln2(x + g·ffn(x))``;
    ``norm="none"``: no LayerNorm. ``g`` is one scalar gate shared by both sub-layers (as in the
    official ReZero layer) when ``gate="scalar"``, else 1.
    """

    def __init__(
        self, d_model: int, heads: int, d_ff: int, *, norm: str, gate: str | None, activation: str
    ) -> None:
        super().__init__()
        self.norm_mode = norm
        self.attn = SelfAttention(d_model, heads)
        self.ffn = FeedForward(d_model, d_ff, activation)
        use_norm = norm != "none"
        self.ln1 = nn.LayerNorm(d_model) if use_norm else nn.Identity()
        self.ln2 = nn.LayerNorm(d_model) if use_norm else nn.Identity()
        self.gate = nn.Parameter(torch.ones(())) if gate == "scalar" else None

    def _scaled(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.gate is None else self.gate * y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_mode == "post":
            x = self.ln1(x + self._scaled(self.attn(x)))
            return self.ln2(x + self._scaled(self.ffn(x)))
        x = x + self._scaled(self.attn(self.ln1(x)))
        return x + self._scaled(self.ffn(self.ln2(x)))


class Transformer(nn.Module):
    """An encoder stack over inputs of shape ``(B, seq_len, d_model)``.

    A learned positional embedding (kept by every initializer, like token embeddings) is added
    to the input; pre-norm stacks end with a final LayerNorm ``norm``. Taps are the block
    outputs ``blocks.0 … blocks.{depth-1}``.

    Example:
        >>> model = Transformer(depth=2, d_model=32, heads=4, d_ff=64, seq_len=8)
        >>> model(torch.zeros(3, 8, 32)).shape
        torch.Size([3, 8, 32])
    """

    @kind_checked
    def __init__(
        self,
        depth: int,
        d_model: int,
        heads: int,
        d_ff: int,
        seq_len: int,
        norm: str = "pre",
        gate: str | None = None,
        *,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.d_model = d_model
        #: The shape of one example; probes read it to say what a batch should look like.
        self.input_shape = (seq_len, d_model)
        self.pos_embedding = nn.Parameter(torch.randn(1, seq_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, heads, d_ff, norm=norm, gate=gate, activation=activation)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.taps = TRANSFORMER_KIND.depth_taps(depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = {"seq_len": self.seq_len, "d_model": self.d_model}
        TRANSFORMER_KIND.inputs.check(TRANSFORMER_KIND.name, sizes, tuple(x.shape[1:]))
        x = x + self.pos_embedding
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def residual_branches(self) -> list[ResidualBranch]:
        """Two branches per block: ``q, k, v → out`` and ``fc1 → fc2``, sharing the block's gate."""
        branches = []
        for p, block in zip(self.taps, self.blocks, strict=True):
            gate = f"{p}.gate" if block.gate is not None else None
            attn = tuple(f"{p}.attn.{n}" for n in ("q", "k", "v", "out"))
            branches.append(ResidualBranch(layers=attn, gate=gate))
            branches.append(ResidualBranch(layers=(f"{p}.ffn.fc1", f"{p}.ffn.fc2"), gate=gate))
        return branches


def _heads_divide(a: Mapping[str, Any]) -> str | None:
    if a["d_model"] % a["heads"] == 0:
        return None
    return f"d_model = {a['d_model']} must be divisible by heads = {a['heads']}"


HEADS_DIVIDE = Rule(("heads", "d_model"), _heads_divide)


def _size(a: Mapping[str, Any], shape: tuple[int, ...]) -> ModelSize:
    L, t, d, ff, h = a["depth"], a["seq_len"], a["d_model"], a["d_ff"], a["heads"]
    per_block = 4 * d * d + 2 * d * ff + ff + 5 * d  # q, k, v, out, fc1, fc2 (norms not counted)
    # q, k, v, scores, softmax, mixed values, out, residuals, norms, fc1, φ, fc2 per block
    acts = L * (10 * t * d + 2 * h * t * t + 2 * t * ff)
    return ModelSize(parameters=L * per_block + t * d, activations=acts, modules=12 * L + 3)


TRANSFORMER_KIND = register_model_kind(
    ModelKind(
        name="transformer",
        factory=Transformer,
        args=(
            size("depth", flag="depth", probe_default=4),
            size("d_model", flag="width", probe_default=32),
            size("heads", probe_default=4),
            size("d_ff", probe_default=Derived("d_model", 4)),
            size("seq_len", probe_default=8),
            Arg(name="norm", type=str, choices=("pre", "post", "none"), flag="norm"),
            Arg(name="gate", type=str, choices=(None, "scalar"), none="none"),
            ACTIVATION_ARG,
        ),
        inputs=FixedInput(("seq_len", "d_model")),
        label_format="transformer-{norm}-d{depth}",
        tap_prefix="blocks.",
        rules=(HEADS_DIVIDE,),
        size_of=_size,
        example={"depth": 2, "d_model": 8, "heads": 2, "d_ff": 16, "seq_len": 4},
        description="a Transformer encoder over (seq_len, d_model) inputs",
    )
)
