"""Reference models with declared taps and residual branches.

Every model exposes ``taps`` (ordered module names marking depth, input excluded) and
``residual_branches()`` (a list of :class:`isokit.ResidualBranch`).
"""

from isokit.models.activations import ACTIVATIONS, Erf, make_activation
from isokit.models.convnet import ConvNet
from isokit.models.mlp import MLP
from isokit.models.residual_mlp import ResidualBlock, ResidualMLP
from isokit.models.resnet import BasicBlock, PadShortcut, ResNet
from isokit.models.transformer import EncoderBlock, FeedForward, SelfAttention, Transformer

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "BasicBlock",
    "ConvNet",
    "EncoderBlock",
    "Erf",
    "FeedForward",
    "PadShortcut",
    "ResidualBlock",
    "ResidualMLP",
    "ResNet",
    "SelfAttention",
    "Transformer",
    "make_activation",
]
