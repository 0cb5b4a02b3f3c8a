"""Chains and weight laws shared by the overlay tests: what the model kinds and schemes give."""

from __future__ import annotations

from isokit.theory import Chain, WeightLaw

WIDTH, DEPTH = 64, 6


def mlp_chain(activation: str, *, width=WIDTH, in_width=WIDTH, depth=DEPTH, bias=True) -> Chain:
    """The chain an ``MLP(in_width, width, depth)`` presents: post-activation taps ``acts.i``."""
    return Chain(
        layer="dense",
        activation=activation,
        width=width,
        in_width=in_width,
        depth=depth,
        fan_in=width,
        bias=bias,
        taps=tuple(f"acts.{i}" for i in range(depth)),
    )


def residual_chain(activation: str, *, scale=0.5, width=WIDTH, depth=DEPTH, branch_layers=1):
    """The chain a ``ResidualMLP(None, width, depth, branch_layers=1, scale=a)`` presents."""
    return Chain(
        layer="dense",
        activation=activation,
        width=width,
        in_width=width,
        depth=depth,
        fan_in=width,
        bias=False,
        taps=tuple(f"blocks.{i}" for i in range(depth)),
        residual_scale=scale,
        branch_layers=branch_layers,
    )


def conv_chain(activation: str, *, channels=8, in_channels=8, depth=2, kernel_size=3) -> Chain:
    """The chain a ``ConvNet(in_channels, channels, depth)`` presents."""
    return Chain(
        layer="conv",
        activation=activation,
        width=channels,
        in_width=in_channels,
        depth=depth,
        fan_in=channels * kernel_size**2,
        bias=True,
        taps=tuple(f"acts.{i}" for i in range(depth)),
    )


def law(sw2: float, sb2: float = 0.0, ensemble: str = "gaussian") -> WeightLaw:
    return WeightLaw(sigma_w2=sw2, sigma_b2=sb2, ensemble=ensemble)
