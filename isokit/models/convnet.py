"""A plain convolutional network without skips: the setting of delta-orthogonal theory."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from isokit.models.activations import ACTIVATION_ARG, make_activation
from isokit.models.args import Arg, Rule, size
from isokit.models.cost import ModelSize
from isokit.models.inputs import ImageInput
from isokit.models.spec import ModelKind, kind_checked, register_model_kind
from isokit.structure import ResidualBranch

if TYPE_CHECKING:
    from isokit.theory.law import Chain


class ConvNet(nn.Module):
    """``depth`` convolutions (stride 1, "same" zero padding), each followed by the activation.

    The first maps ``in_channels → channels``, the rest ``channels → channels``. An optional
    head (global average pooling and a Linear to ``num_classes``) follows the last layer.
    Taps are the activation outputs ``acts.0 … acts.{depth-1}`` and ``head``.

    Example:
        >>> model = ConvNet(3, 16, depth=4, activation="tanh")
        >>> model(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    @kind_checked
    def __init__(
        self,
        in_channels: int,
        channels: int,
        depth: int,
        activation: str = "relu",
        kernel_size: int = 3,
        *,
        num_classes: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.convs = nn.ModuleList(
            nn.Conv2d(
                in_channels if i == 0 else channels,
                channels,
                kernel_size,
                padding=kernel_size // 2,
                bias=bias,
            )
            for i in range(depth)
        )
        self.acts = nn.ModuleList(make_activation(activation) for _ in range(depth))
        self.head = None
        if num_classes is not None:
            self.head = nn.Linear(channels, num_classes)
        self.taps = CONVNET_KIND.depth_taps(depth) + ([] if self.head is None else ["head"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.acts, strict=True):
            x = act(conv(x))
        if self.head is None:
            return x
        return self.head(x.mean(dim=(-2, -1)))

    def residual_branches(self) -> list[ResidualBranch]:
        """A plain CNN has no residual branches."""
        return []


def _odd_kernel(a: Mapping[str, Any]) -> str | None:
    if a["kernel_size"] % 2:
        return None
    return f"must be odd so that 'same' padding keeps the size, got {a['kernel_size']}"


def _chain(a: Mapping[str, Any]) -> Chain:
    from isokit.theory.law import Chain

    return Chain(
        layer="conv",
        activation=a["activation"],
        width=a["channels"],
        in_width=a["in_channels"],
        depth=a["depth"],
        fan_in=a["channels"] * a["kernel_size"] ** 2,
        bias=a["bias"],
        taps=tuple(CONVNET_KIND.depth_taps(a["depth"])),
    )


def _size(a: Mapping[str, Any], shape: tuple[int, ...]) -> ModelSize:
    cin, c, L, k2 = a["in_channels"], a["channels"], a["depth"], a["kernel_size"] ** 2
    bias, classes = int(a["bias"]), a["num_classes"] or 0
    params = k2 * (cin * c + (L - 1) * c * c) + L * c * bias + classes * (c + 1)
    pixels = math.prod(shape[1:])
    return ModelSize(parameters=params, activations=2 * L * c * pixels + classes, modules=2 * L + 3)


CONVNET_KIND = register_model_kind(
    ModelKind(
        name="convnet",
        factory=ConvNet,
        args=(
            size("in_channels", probe_default=3),
            size("channels", flag="width", probe_default=16),
            size("depth", flag="depth", probe_default=8),
            ACTIVATION_ARG,
            size("kernel_size"),
            size("num_classes"),
            Arg(name="bias", type=bool),
        ),
        inputs=ImageInput("in_channels"),
        label_format="convnet-{activation}-c{channels}-d{depth}",
        tap_prefix="acts.",
        rules=(Rule(("kernel_size",), _odd_kernel),),
        chain_of=_chain,
        size_of=_size,
        example={"in_channels": 2, "channels": 3, "depth": 2},
        description="a plain convolutional network (same padding, no skips)",
    )
)
