"""Block-by-block ``torch.fx`` discovery (``docs/idinit.md`` §8): trace the model, and where
symbolic tracing cannot follow a module's forward (Hugging Face models branch on shapes, flags and
configs), trace its children instead, recursively, keeping the branches found inside every module
that traces, with their names prefixed.

A residual addition whose two operands meet only outside every traceable module (a block whose
skip is added in a submodule that receives it as a second argument) is not seen this way; the
``torch.export`` capture with example inputs (:mod:`isokit.init.branch_export`) sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn

from isokit.init.branch_trace import (
    _PRESET_LEAVES,
    _FxBranches,
    _join,
    _leaf_presets,
    _trace,
    weight_layers,
)
from isokit.structure import ResidualBranch


def reason(err: BaseException) -> str:
    """``ErrorType: first line of the message``."""
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


@dataclass
class BlockTrace:
    """What block-by-block tracing found.

    Attributes:
        branches: the branches of every traced module, names prefixed, in model order.
        traced: names of the modules that traced (``""`` for the model itself).
        failed: ``(module name, reason)`` for each module that did not trace.
    """

    branches: list[ResidualBranch] = field(default_factory=list)
    traced: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def whole(self) -> bool:
        """Whether the model traced as a whole."""
        return not self.failed


def _prefixed(b: ResidualBranch, prefix: str) -> ResidualBranch:
    if not prefix:
        return b
    return replace(
        b,
        layers=tuple(_join(prefix, x) for x in b.layers),
        gate=None if b.gate is None else _join(prefix, b.gate),
        norm=None if b.norm is None else _join(prefix, b.norm),
    )


def trace_blocks(model: nn.Module) -> BlockTrace:
    """Trace ``model``, else its children recursively (see the module docstring).

    Raises:
        BranchDiscoveryError: a traced module whose structure is ambiguous.
    """
    out = BlockTrace()

    def visit(module: nn.Module, prefix: str) -> None:
        if prefix and not weight_layers(module):
            return  # nothing to find (a weight layer itself has no weight layers inside)
        if isinstance(module, _PRESET_LEAVES):
            out.branches.extend(_leaf_presets(module, prefix))
            out.traced.append(prefix)
            return
        try:
            graph = _trace(module)
        except Exception as err:  # whatever stops the tracer, the children are tried
            out.failed.append((prefix, reason(err)))
            for name, child in module.named_children():
                visit(child, _join(prefix, name))
            return
        out.traced.append(prefix)
        out.branches.extend(_prefixed(b, prefix) for b in _FxBranches(module, graph).find())

    visit(model, "")
    return out


def untraced_layers(model: nn.Module, trace: BlockTrace) -> list[str]:
    """Weight layers outside every traced module."""
    roots = [p for p in trace.traced]
    if "" in roots:
        return []
    return [n for n in weight_layers(model) if not any(n.startswith(r + ".") for r in roots)]


def partly_traced(model: nn.Module, trace: BlockTrace) -> list[str]:
    """Modules that did not trace yet hold both a traced branch and untraced weight layers.

    Such a block was read only in part (T5's blocks: fx follows their feed-forward sub-layer
    but not their attention), so the branches found there cannot be the block's branches.
    """
    stem = untraced_layers(model, trace)
    on = [layer for b in trace.branches for layer in b.layers]
    return [
        f
        for f, _ in trace.failed
        if f and any(n.startswith(f + ".") for n in on) and any(n.startswith(f + ".") for n in stem)
    ]
