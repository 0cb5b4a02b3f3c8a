"""What the theory needs to know about a network and its weights, as two small value types.

A :class:`WeightLaw` is the law a scheme draws weights from (owned by the scheme, see
``isokit.init.Scheme.weight_law``); a :class:`Chain` is the layer structure of a model (owned by
the model kind, see ``isokit.models``). :func:`isokit.theory.overlay` takes one of each and knows
neither scheme names nor model classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["ENSEMBLES", "LAYERS", "Chain", "WeightLaw"]

ENSEMBLES = ("gaussian", "orthogonal", "delta-orthogonal")
LAYERS = ("dense", "conv")


@dataclass(frozen=True, kw_only=True)
class WeightLaw:
    """An i.i.d. weight law: ``W_ij`` with variance ``sigma_w2 / fan_in``, biases ``sigma_b2``.

    ``ensemble`` is ``"gaussian"`` (any i.i.d. entries: their products follow the Gaussian
    free-probability law at large width), ``"orthogonal"`` (a scaled Haar-orthogonal matrix) or
    ``"delta-orthogonal"`` (a convolution whose centre tap is scaled orthogonal and every other
    tap zero; on a dense layer, a scaled orthogonal matrix).

    Example:
        >>> WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian").sigma_w2
        2.0
    """

    sigma_w2: float
    sigma_b2: float
    ensemble: Literal["gaussian", "orthogonal", "delta-orthogonal"]

    def __post_init__(self) -> None:
        for name in ("sigma_w2", "sigma_b2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"WeightLaw.{name} must be a real number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"WeightLaw.{name} must be finite and >= 0, got {value!r}")
        if self.ensemble not in ENSEMBLES:
            raise ValueError(
                f"WeightLaw.ensemble must be one of {', '.join(ENSEMBLES)}, got {self.ensemble!r}"
            )


@dataclass(frozen=True, kw_only=True)
class Chain:
    """A model as the theory sees it: ``depth`` equal layers or residual blocks.

    A plain chain (``residual_scale=None``) is ``x^l = φ(W^l x^{l−1} + b^l)``; a residual one is
    ``x^l = x^{l−1} + a·branch(x^{l−1})`` with ``a = residual_scale`` and a branch of
    ``branch_layers`` layers, ``φ(W x + b)`` for one (the setting of ``docs/theory.md`` §4).

    Attributes:
        layer: ``"dense"`` (a Linear per layer) or ``"conv"`` (a same-padded convolution).
        activation: an activation name known to :mod:`isokit.theory.activations`.
        width: units (dense) or channels (conv) of every hidden layer.
        in_width: features or channels of the input.
        depth: number of layers (plain) or blocks (residual) ``L``.
        fan_in: inputs of one unit (``width`` for dense, ``width·k²`` for a ``k×k`` conv).
        bias: whether the layers have biases.
        taps: the probe tap names of depths ``1..L`` (post-activations, or block outputs); a
            prediction is drawn only when a probe's taps start with these.
        residual_scale: the branch multiplier ``a`` of a residual chain, ``None`` for a plain
            one.
        branch_layers: Linear (or conv) layers per residual branch; 1 in a plain chain.

    Example:
        >>> chain = Chain(layer="dense", activation="tanh", width=64, in_width=64, depth=8,
        ...               fan_in=64, bias=True, taps=tuple(f"acts.{i}" for i in range(8)))
        >>> chain.depth, chain.residual_scale
        (8, None)
        >>> blocks = Chain(layer="dense", activation="relu", width=64, in_width=64, depth=4,
        ...                fan_in=64, bias=False, taps=[f"blocks.{i}" for i in range(4)],
        ...                residual_scale=0.5)
        >>> blocks.residual_scale, blocks.branch_layers
        (0.5, 1)
    """

    layer: Literal["dense", "conv"]
    activation: str
    width: int
    in_width: int
    depth: int
    fan_in: int
    bias: bool
    taps: tuple[str, ...]
    residual_scale: float | None = None
    branch_layers: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.taps, str):
            raise ValueError(f"Chain.taps must be a sequence of tap names, got {self.taps!r}")
        # A list of taps is accepted and stored as a tuple, so that a Chain stays hashable.
        object.__setattr__(self, "taps", tuple(self.taps))
        if not all(isinstance(tap, str) for tap in self.taps):
            raise ValueError(f"Chain.taps must be tap names (strings), got {self.taps!r}")
        if not isinstance(self.activation, str):
            raise ValueError(
                f"Chain.activation must be an activation name, got {self.activation!r}"
            )
        if self.layer not in LAYERS:
            raise ValueError(f"Chain.layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")
        for name in ("width", "in_width", "depth", "fan_in"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Chain.{name} must be a positive integer, got {value!r}")
        if len(self.taps) != self.depth:
            raise ValueError(
                f"Chain.taps must name one tap per layer ({self.depth}), got {len(self.taps)}"
            )
        self._check_residual()

    def _check_residual(self) -> None:
        scale, layers = self.residual_scale, self.branch_layers
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"Chain.branch_layers must be a positive integer, got {layers!r}")
        if scale is None:
            if layers != 1:
                raise ValueError(
                    f"Chain.branch_layers={layers} needs a residual chain: give residual_scale "
                    "(the branch multiplier a), or leave branch_layers at 1"
                )
            return
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ValueError(
                f"Chain.residual_scale must be a real number (the branch multiplier a) or None, "
                f"got {scale!r}"
            )
        if not math.isfinite(scale):
            raise ValueError(f"Chain.residual_scale must be finite, got {scale!r}")
        object.__setattr__(self, "residual_scale", float(scale))
