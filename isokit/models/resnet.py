"""CIFAR-style residual networks (He et al. 2016, §4.2): depth 6n+2 with BasicBlocks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isokit.models.args import Arg, Rule, size
from isokit.models.cost import ModelSize
from isokit.models.inputs import ImageInput
from isokit.models.spec import ModelKind, kind_checked, register_model_kind
from isokit.structure import ResidualBranch


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by the stride and append zero channels (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    """``relu(shortcut(x) + gate · bn2(conv2(relu(bn1(conv1(x))))))``.

    Without normalization the ``bn`` modules are identities, so module names (and therefore
    parameter names) are the same for every variant.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        norm: str = "none",
        gate: str | None = None,
        shortcut: str = "pad",
    ) -> None:
        super().__init__()
        use_bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=use_bias)
        self.bn1 = _norm(norm, out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=use_bias)
        self.bn2 = _norm(norm, out_channels)
        self.gate = nn.Parameter(torch.ones(())) if gate == "scalar" else None
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "pad":
                self.downsample = PadShortcut(in_channels, out_channels, stride)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=use_bias),
                    _norm(norm, out_channels),
                )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.gate is not None:
            out = self.gate * out
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(identity + out)


class ResNet(nn.Module):
    """CIFAR ResNet with three stages of ``n = (depth − 2)/6`` BasicBlocks.

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...).
        width: channels of the first stage; the stages have width, 2·width, 4·width.
        norm: ``"none"`` or ``"batch"`` (BatchNorm after every convolution).
        gate: ``None`` or ``"scalar"``: a learnable scalar (initially 1) multiplying each
            branch output, used by ReZero, SkipInit and Fixup.
        shortcut: ``"pad"`` (option A: stride subsampling plus zero channels) or ``"conv"``
            (a 1×1 strided projection, main stem).
        num_classes: size of the linear classifier on globally pooled features.
        in_channels: input channels (3 for CIFAR-style images).

    Taps: ``stem``, every block ``layer{s}.{i}``, and ``fc``.

    Example:
        >>> model = ResNet(depth=20, width=16)
        >>> len(model.residual_branches())
        9
    """

    @kind_checked
    def __init__(
        self,
        depth: int = 20,
        width: int = 16,
        norm: str = "none",
        gate: str | None = None,
        shortcut: str = "pad",
        num_classes: int = 10,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.norm = norm
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=norm == "none"),
            _norm(norm, width),
            nn.ReLU(),
        )
        channels = width
        for stage in range(3):
            out = width * 2**stage
            blocks = [
                BasicBlock(
                    channels if i == 0 else out,
                    out,
                    stride=2 if (stage > 0 and i == 0) else 1,
                    norm=norm,
                    gate=gate,
                    shortcut=shortcut,
                )
                for i in range(n)
            ]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            channels = out
        self.fc = nn.Linear(channels, num_classes)
        self.taps = ["stem"] + [f"layer{s + 1}.{i}" for s in range(3) for i in range(n)] + ["fc"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(-2, -1)))

    def residual_branches(self) -> list[ResidualBranch]:
        """One branch per BasicBlock: ``conv1 → conv2``, gated and ending in ``bn2`` if present."""
        branches = []
        for s in range(3):
            for i, block in enumerate(getattr(self, f"layer{s + 1}")):
                prefix = f"layer{s + 1}.{i}"
                branches.append(
                    ResidualBranch(
                        layers=(f"{prefix}.conv1", f"{prefix}.conv2"),
                        gate=f"{prefix}.gate" if block.gate is not None else None,
                        norm=f"{prefix}.bn2" if self.norm == "batch" else None,
                    )
                )
        return branches


def _depth_6n_plus_2(a: Mapping[str, Any]) -> str | None:
    depth = a["depth"]
    if depth >= 8 and (depth - 2) % 6 == 0:
        return None
    return f"must be 6n+2 (8, 14, 20, ...), got {depth}"


def _size(a: Mapping[str, Any], shape: tuple[int, ...]) -> ModelSize:
    n, w, classes = (a["depth"] - 2) // 6, a["width"], a["num_classes"]
    pixels = math.prod(shape[1:])
    params = 9 * a["in_channels"] * w + 4 * w * classes + classes
    acts = 3 * w * pixels + classes
    for stage in range(3):
        c = w * 2**stage
        # Two 3×3 convolutions per block; a stage's first takes half the channels after stage 1.
        params += n * 18 * c * c - (9 * c * c // 2 if stage else 0)
        acts += n * 6 * c * (pixels // 4**stage)  # conv, norm and ReLU outputs, twice
    # Seven modules per block (itself, two convolutions, norms and ReLUs), nine around them.
    return ModelSize(parameters=params, activations=acts, modules=3 * n * 7 + 9)


RESNET_KIND = register_model_kind(
    ModelKind(
        name="resnet",
        factory=ResNet,
        args=(
            size("depth", flag="depth", probe_default=20),
            size("width", flag="width", probe_default=16),
            Arg(name="norm", type=str, choices=("none", "batch"), flag="norm"),
            Arg(name="gate", type=str, choices=(None, "scalar"), none="none"),
            Arg(name="shortcut", type=str, choices=("pad", "conv")),
            size("num_classes"),
            size("in_channels"),
        ),
        inputs=ImageInput("in_channels"),
        label_format="resnet{depth}-w{width}-{norm}",
        rules=(Rule(("depth",), _depth_6n_plus_2),),
        size_of=_size,
        example={"depth": 8, "width": 2},
        description="a CIFAR ResNet of 6n+2 layers with BasicBlocks",
    )
)
