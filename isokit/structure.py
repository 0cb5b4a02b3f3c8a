"""Structural facts about a model that the initializers need.

A model declares its residual structure by returning :class:`ResidualBranch` records from a
``residual_branches()`` method. ``isokit.init`` reads nothing else from a model, so any
``nn.Module`` can take part by defining that method (or by passing ``branches=`` to
:func:`isokit.init.apply`).
"""

from __future__ import annotations

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
    """

    layers: tuple[str, ...]
    gate: str | None = None
    norm: str | None = None

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a residual branch needs at least one weight layer")
        object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def last(self) -> str:
        """The name of the branch's last weight layer."""
        return self.layers[-1]
