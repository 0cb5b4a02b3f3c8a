"""The errors of residual-branch discovery and the advice they end with (``docs/idinit.md`` §8)."""

from __future__ import annotations

HOWTO = (
    "Declare the branches instead: define `residual_branches()` on the model returning "
    "isokit.structure.ResidualBranch records, pass `branches=[ResidualBranch(layers=(...), "
    "gate=..., norm=...), ...]`, or pass `branch_last=[...]` with the names (fnmatch globs "
    "allowed) of each branch's last layer."
)

EXAMPLE_INPUTS = (
    "Pass `example_inputs=` with what the model's forward takes (a tensor, a tuple of positional "
    "arguments or a dict of keyword arguments, e.g. `apply(model, scheme, example_inputs="
    "{'input_ids': ids})`) so that the real graph can be captured with torch.export."
)


class BranchDiscoveryError(ValueError):
    """The residual branches of a model could not be determined unambiguously."""


class BranchDiscoveryWarning(UserWarning):
    """Discovery skipped a residual addition, a route failed, or it fell back to name presets."""
