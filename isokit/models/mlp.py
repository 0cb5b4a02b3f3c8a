"""A plain fully connected network: the setting of mean-field and free-probability theory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from isokit.models.activations import ACTIVATION_ARG, make_activation
from isokit.models.args import Arg, Derived, size
from isokit.models.cost import ModelSize
from isokit.models.inputs import FlatInput
from isokit.models.spec import ModelKind, kind_checked, register_model_kind
from isokit.structure import ResidualBranch

if TYPE_CHECKING:
    from isokit.theory.law import Chain


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

    @kind_checked
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
        self.activation = activation
        self.fcs = nn.ModuleList(
            nn.Linear(in_features if i == 0 else width, width, bias=bias) for i in range(depth)
        )
        self.acts = nn.ModuleList(make_activation(activation) for _ in range(depth))
        self.head = None if out_features is None else nn.Linear(width, out_features, bias=bias)
        self.taps = MLP_KIND.depth_taps(depth) + ([] if self.head is None else ["head"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for fc, act in zip(self.fcs, self.acts, strict=True):
            x = act(fc(x))
        return x if self.head is None else self.head(x)

    def residual_branches(self) -> list[ResidualBranch]:
        """A plain MLP has no residual branches."""
        return []


def _chain(a: Mapping[str, Any]) -> Chain:
    from isokit.theory.law import Chain

    return Chain(
        layer="dense",
        activation=a["activation"],
        width=a["width"],
        in_width=a["in_features"],
        depth=a["depth"],
        fan_in=a["width"],
        bias=a["bias"],
        taps=tuple(MLP_KIND.depth_taps(a["depth"])),
    )


def _size(a: Mapping[str, Any], shape: tuple[int, ...]) -> ModelSize:
    n, w, L, out = a["in_features"], a["width"], a["depth"], a["out_features"] or 0
    per_unit = int(a["bias"])
    params = n * w + (L - 1) * w * w + L * w * per_unit + out * (w + per_unit)
    return ModelSize(parameters=params, activations=2 * L * w + n + out, modules=2 * L + 3)


MLP_KIND = register_model_kind(
    ModelKind(
        name="mlp",
        factory=MLP,
        args=(
            size("in_features", flag="in-features", probe_default=Derived("width")),
            size("width", flag="width", probe_default=64),
            size("depth", flag="depth", probe_default=8),
            size("out_features"),
            ACTIVATION_ARG,
            Arg(name="bias", type=bool),
        ),
        inputs=FlatInput("in_features"),
        label_format="mlp-{activation}-w{width}-d{depth}",
        tap_prefix="acts.",
        chain_of=_chain,
        size_of=_size,
        example={"in_features": 6, "width": 5, "depth": 3},
        description="a plain fully connected network",
    )
)
