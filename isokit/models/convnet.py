"""A plain convolutional network without skips: the setting of delta-orthogonal theory."""

from __future__ import annotations

import torch
from torch import nn

from isokit.models.activations import check_positive_int, make_activation
from isokit.structure import ResidualBranch


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
        check_positive_int(in_channels, "in_channels")
        check_positive_int(channels, "channels")
        check_positive_int(depth, "depth")
        check_positive_int(kernel_size, "kernel_size")
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd so that 'same' padding keeps the size, got {kernel_size}"
            )
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
            check_positive_int(num_classes, "num_classes")
            self.head = nn.Linear(channels, num_classes)
        self.taps = [f"acts.{i}" for i in range(depth)] + ([] if self.head is None else ["head"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.acts, strict=True):
            x = act(conv(x))
        if self.head is None:
            return x
        return self.head(x.mean(dim=(-2, -1)))

    def residual_branches(self) -> list[ResidualBranch]:
        """A plain CNN has no residual branches."""
        return []
