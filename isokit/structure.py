"""Structural facts about a model that the initializers need.

A model declares its residual structure by returning :class:`ResidualBranch` records from a
``residual_branches()`` method. ``isokit.init`` reads nothing else from a model, so any
``nn.Module`` can take part by defining that method (or by passing ``branches=`` to
:func:`isokit.init.apply`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ResidualBranch:
    """One residual branch: ``out = skip(x) + gate * branch(x)``.

    Attributes:
        layers: module names of the parametric (weight) layers on the branch, in execution
            order. The last one is the branch's last layer (IDIZ, Fixup's zero layer).
        gate: name of the scalar parameter that multiplies the branch output (ReZero,
            SkipInit), or ``None`` when the branch has no gate.
        norm: name of the normalization module that ends the branch (Zero-γ), or ``None``.

    Example:
        >>> branch = ResidualBranch(layers=("block.conv1", "block.conv2"), norm="block.bn2")
        >>> branch.last
        'block.conv2'
    """

    layers: tuple[str, ...]
    gate: str | None = None
    norm: str | None = None

    def __post_init__(self) -> None:
        # A bare string would be read as a sequence of one-letter layer names.
        if isinstance(self.layers, str) or not isinstance(self.layers, Iterable):
            raise TypeError(
                f"ResidualBranch.layers must be a sequence of module names, got {self.layers!r}; "
                "write layers=(name,) for a branch of one layer"
            )
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("a residual branch needs at least one weight layer")
        for name in layers:
            if not isinstance(name, str) or not name:
                raise TypeError(
                    f"ResidualBranch.layers must hold non-empty module names (str), got {name!r}"
                )
        for field in ("gate", "norm"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(
                    f"ResidualBranch.{field} must be a module or parameter name (str) or None, "
                    f"got {value!r}"
                )
        object.__setattr__(self, "layers", layers)

    @property
    def last(self) -> str:
        """The name of the branch's last weight layer."""
        return self.layers[-1]
