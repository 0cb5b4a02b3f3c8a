"""A residual MLP: the setting of residual-network mean-field and free-probability theory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from isokit.models.activations import ACTIVATION_ARG, make_activation
from isokit.models.args import Arg, size
from isokit.models.cost import ModelSize
from isokit.models.inputs import FlatInput
from isokit.models.spec import ModelKind, kind_checked, register_model_kind
from isokit.structure import ResidualBranch

if TYPE_CHECKING:
    from isokit.theory.law import Chain


class ResidualBlock(nn.Module):
    """``x + scale · branch(x)``: ``branch`` is ``φ(fc1 x)`` or ``fc2 φ(fc1 x)``.

    With one layer the block is ``x + a·φ(W x + b)``, the model of ``docs/theory.md`` §4; with
    two it is the usual pre-activation-free residual MLP block whose last layer IDIZ and Fixup
    act on.
    """

    def __init__(
        self,
        width: int,
        activation: str,
        branch_layers: int,
        scale: float,
        gate: str | None,
        bias: bool,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width, bias=bias)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(width, width, bias=bias) if branch_layers == 2 else None
        self.scale = float(scale)
        self.gate = nn.Parameter(torch.ones(())) if gate == "scalar" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.fc1(x))
        if self.fc2 is not None:
            y = self.fc2(y)
        if self.gate is not None:
            y = self.gate * y
        return x + self.scale * y


class ResidualMLP(nn.Module):
    """An input layer, ``depth`` residual blocks of equal width and an optional head.

    Args:
        in_features: input dimension; ``None`` (or equal to ``width``) skips the input layer,
            so the blocks act on the input directly as in the theory.
        width: the residual stream's width.
        depth: number of residual blocks.
        out_features: size of an optional linear head.
        activation: a name from :data:`isokit.models.activations.ACTIVATIONS`.
        branch_layers: 1 (``x + a·φ(Wx + b)``) or 2 (``x + a·W₂φ(W₁x + b₁) + …``).
        scale: the fixed branch multiplier ``a``.
        gate: ``None`` or ``"scalar"`` (a learnable branch gate, initially 1).
        bias: whether the layers have biases.

    Taps are the block outputs ``blocks.0 … blocks.{depth-1}`` (and ``head``).

    Example:
        >>> model = ResidualMLP(None, 64, depth=8, branch_layers=1, scale=0.5)
        >>> model.taps[-1]
        'blocks.7'
    """

    @kind_checked
    def __init__(
        self,
        in_features: int | None,
        width: int,
        depth: int,
        out_features: int | None = None,
        activation: str = "relu",
        *,
        branch_layers: int = 2,
        scale: float = 1.0,
        gate: str | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.stem = None
        if in_features is not None and in_features != width:
            self.stem = nn.Linear(in_features, width, bias=bias)
        self.blocks = nn.ModuleList(
            ResidualBlock(width, activation, branch_layers, scale, gate, bias) for _ in range(depth)
        )
        self.head = None if out_features is None else nn.Linear(width, out_features, bias=bias)
        self.taps = RESIDUAL_MLP_KIND.depth_taps(depth) + ([] if self.head is None else ["head"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.stem is not None:
            x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x if self.head is None else self.head(x)

    def residual_branches(self) -> list[ResidualBranch]:
        """One branch per block: ``fc1`` (and ``fc2``), gated by the block's gate if any."""
        out = []
        for tap, block in zip(self.taps, self.blocks, strict=False):  # taps may end in "head"
            layers = (f"{tap}.fc1",) + ((f"{tap}.fc2",) if block.fc2 is not None else ())
            gate = f"{tap}.gate" if block.gate is not None else None
            out.append(ResidualBranch(layers=layers, gate=gate))
        return out


def _chain(a: Mapping[str, Any]) -> Chain:
    from isokit.theory.law import Chain

    # A scalar gate starts at 1, so the branch multiplier at initialization is ``scale``.
    return Chain(
        layer="dense",
        activation=a["activation"],
        width=a["width"],
        in_width=a["width"] if a["in_features"] is None else a["in_features"],
        depth=a["depth"],
        fan_in=a["width"],
        bias=a["bias"],
        taps=tuple(RESIDUAL_MLP_KIND.depth_taps(a["depth"])),
        residual_scale=a["scale"],
        branch_layers=a["branch_layers"],
    )


def _size(a: Mapping[str, Any], shape: tuple[int, ...]) -> ModelSize:
    w, L, out, bias = a["width"], a["depth"], a["out_features"] or 0, int(a["bias"])
    n = a["in_features"]
    stem = 0 if n is None or n == w else n * w + w * bias
    per_block = a["branch_layers"] * (w * w + w * bias) + (a["gate"] is not None)
    params = stem + L * per_block + out * (w + bias)
    acts = (n or w) + (0 if stem == 0 else w) + L * (2 + a["branch_layers"]) * w + out
    modules = (2 + a["branch_layers"]) * L + 2  # block, fc1, φ (and fc2); the model, its list
    return ModelSize(parameters=params, activations=acts, modules=modules)


RESIDUAL_MLP_KIND = register_model_kind(
    ModelKind(
        name="residual-mlp",
        factory=ResidualMLP,
        args=(
            # None (TOML: "none", or leave it out): the blocks act on the input directly.
            size("in_features", default=None, none="none", flag="in-features"),
            size("width", flag="width", probe_default=64),
            size("depth", flag="depth", probe_default=8),
            size("out_features"),
            ACTIVATION_ARG,
            Arg(name="branch_layers", type=int, choices=(1, 2)),
            Arg(name="scale", type=float),
            Arg(name="gate", type=str, choices=(None, "scalar"), none="none"),
            Arg(name="bias", type=bool),
        ),
        inputs=FlatInput("in_features", fallback="width"),
        label_format="residual-mlp-{activation}-w{width}-d{depth}",
        tap_prefix="blocks.",
        chain_of=_chain,
        size_of=_size,
        example={"width": 5, "depth": 3},
        description="a residual MLP, x + a·branch(x) per block",
    )
)
