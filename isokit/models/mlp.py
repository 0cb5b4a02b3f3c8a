"""A plain fully connected network: the setting of mean-field and free-probability theory."""

from __future__ import annotations

import torch
from torch import nn

from isokit.models.activations import check_positive_int, make_activation
from isokit.structure import ResidualBranch


class MLP(nn.Module):
    """``x → φ(W_L ⋯ φ(W_1 x + b_1) ⋯ + b_L) [→ head]``, equal hidden widths.

    Args:
        in_features: input dimension.
        width: hidden width N of every layer.
        depth: number of hidden layers L (each a Linear followed by the activation).
        out_features: size of an optional linear head after the last hidden layer.
        activation: a name from :data:`isokit.models.activations.ACTIVATIONS`.
        bias: whether the layers have biases.

    Taps are the activation outputs ``acts.0 … acts.{L-1}`` (post-activations x^l) and ``head``.

    Example:
        >>> model = MLP(64, 128, depth=8, activation="tanh")
        >>> model.taps[:2]
        ['acts.0', 'acts.1']
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        out_features: int | None = None,
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int(in_features, "in_features")
        check_positive_int(width, "width")
        check_positive_int(depth, "depth")
        if out_features is not None:
            check_positive_int(out_features, "out_features")
        self.activation = activation
        self.fcs = nn.ModuleList(
            nn.Linear(in_features if i == 0 else width, width, bias=bias) for i in range(depth)
        )
        self.acts = nn.ModuleList(make_activation(activation) for _ in range(depth))
        self.head = None if out_features is None else nn.Linear(width, out_features, bias=bias)
        self.taps = [f"acts.{i}" for i in range(depth)] + ([] if self.head is None else ["head"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for fc, act in zip(self.fcs, self.acts, strict=True):
            x = act(fc(x))
        return x if self.head is None else self.head(x)

    def residual_branches(self) -> list[ResidualBranch]:
        """A plain MLP has no residual branches."""
        return []
