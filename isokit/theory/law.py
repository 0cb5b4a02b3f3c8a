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
    """A model as the theory sees it: ``depth`` equal layers, each followed by ``activation``.

    Attributes:
        layer: ``"dense"`` (a Linear per layer) or ``"conv"`` (a same-padded convolution).
        activation: an activation name known to :mod:`isokit.theory.activations`.
        width: units (dense) or channels (conv) of every hidden layer.
        in_width: features or channels of the input.
        depth: number of layers ``L``.
        fan_in: inputs of one unit (``width`` for dense, ``width·k²`` for a ``k×k`` conv).
        bias: whether the layers have biases.
        taps: the probe tap names of depths ``1..L`` (post-activations); a prediction is drawn
            only when a probe's taps start with these.

    Example:
        >>> chain = Chain(layer="dense", activation="tanh", width=64, in_width=64, depth=8,
        ...               fan_in=64, bias=True, taps=tuple(f"acts.{i}" for i in range(8)))
        >>> chain.depth
        8
    """

    layer: Literal["dense", "conv"]
    activation: str
    width: int
    in_width: int
    depth: int
    fan_in: int
    bias: bool
    taps: tuple[str, ...]

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
