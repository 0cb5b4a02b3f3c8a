"""What a scheme works on: :class:`Context` (the model, its weight slots and residual branches, the
generator, the init report) and :class:`SchemeNotApplicable`, the refusal of a model it cannot
act on. :func:`isokit.init.apply` builds the context; schemes read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from isokit.init.layers import WeightSlot, weight_slots
from isokit.init.report import InitReport
from isokit.structure import ResidualBranch

__all__ = ["Context", "SchemeNotApplicable"]


class SchemeNotApplicable(ValueError):
    """The scheme cannot act on this model (e.g. Fixup on a model without residual branches).

    Distinct from a bad option value, so that a report can record "not applicable" for the one
    and reject the config for the other.
    """


@dataclass(kw_only=True)
class Context:
    """What a scheme needs besides its options: the model, its branches, randomness, a report."""

    model: nn.Module
    report: InitReport
    generator: torch.Generator | None
    scheme: str = ""
    data: torch.Tensor | None = None
    example_inputs: object = None
    branch_spec: object = None
    branch_last: object = None
    _branches: list[ResidualBranch] | None = field(default=None, repr=False)

    @property
    def slots(self) -> list[WeightSlot]:
        return weight_slots(self.model)

    @property
    def branches(self) -> list[ResidualBranch]:
        """Residual branches: explicit ``branches=``, else declared, else found by tracing
        (``example_inputs``, or ``data`` when only that was given)."""
        if self._branches is None:
            from isokit.init.branches import find_branches

            inputs = self.example_inputs if self.example_inputs is not None else self.data
            self._branches = list(
                find_branches(
                    self.model,
                    self.branch_spec,
                    branch_last=self.branch_last,
                    example_inputs=inputs,
                )
            )
        return self._branches

    def roles(self) -> dict[str, str]:
        """Module name → ``"branch"`` (a non-last branch layer) or ``"last"``."""
        roles: dict[str, str] = {}
        for branch in self.branches:
            for name in branch.layers[:-1]:
                if roles.get(name) == "last":
                    raise ValueError(
                        f"layer {name!r} is the last layer of one residual branch and a "
                        "non-last layer of another; pass branches= to say which it is"
                    )
                roles[name] = "branch"
            if roles.get(branch.last) == "branch":
                raise ValueError(
                    f"layer {branch.last!r} is the last layer of one residual branch and a "
                    "non-last layer of another; pass branches= to say which it is"
                )
            roles[branch.last] = "last"
        return roles

    def seed(self) -> int:
        """A seed for code that takes no generator (module ``reset_parameters``)."""
        return int(torch.randint(0, 2**62, (1,), generator=self.generator).item())
