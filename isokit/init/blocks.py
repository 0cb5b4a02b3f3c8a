"""Residual blocks as the identity-control schemes see them: which branches form one block, which
branches are attention, and how many weight matrices a branch holds.

A *block* is one layer module of the model's stack: the residual sub-layers of one
``nn.TransformerEncoderLayer`` (attention and feed-forward) form one block, a ResNet BasicBlock
(one branch) another. isokit finds it from the module tree: starting at the module that holds all
of a branch's layers (their longest common name prefix; the parent, when that is a weight layer
such as an ``nn.MultiheadAttention``), it walks up to the first module that is an item of a
*stack*: an ``nn.ModuleList`` or ``nn.Sequential`` whose items are all of one class (repeated
layers; T5's list of one attention, one cross-attention and one feed-forward sub-layer, or a
``Sequential(Linear, GELU, Linear)``, is not a stack). Branches that reach the same module share
the block; a branch that reaches none is a block of its own.
"""

from __future__ import annotations

from torch import nn

from isokit.init.layers import is_weight_layer
from isokit.structure import ResidualBranch

__all__ = ["attention_branch", "block_of", "branch_matrices", "group_blocks"]

#: Leaf names of separate query and key projections (isokit, HF BERT/GPT/Llama, timm, fairseq).
QK_NAMES = ("q", "k", "q_proj", "k_proj", "query", "key")
#: Leaf names of separate value projections.
V_NAMES = ("v", "v_proj", "value")
_STACKS = (nn.ModuleList, nn.Sequential)


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _common_prefix(names: tuple[str, ...]) -> str:
    parts = [n.split(".") for n in names]
    common: list[str] = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return ".".join(common)


def block_of(model: nn.Module, branch: ResidualBranch) -> str:
    """The name of the block ``branch`` belongs to (see the module docstring).

    Example:
        >>> from isokit.models import Transformer
        >>> model = Transformer(depth=2, d_model=8, heads=2, d_ff=16, seq_len=4)
        >>> [block_of(model, b) for b in model.residual_branches()]
        ['blocks.0', 'blocks.0', 'blocks.1', 'blocks.1']
    """
    modules = dict(model.named_modules())
    start = _common_prefix(branch.layers)
    if start in modules and is_weight_layer(modules[start]) and start:
        start = _parent(start)
    name = start
    while name:
        if _is_stack(modules[_parent(name)]):
            return name
        name = _parent(name)
    return start


def _is_stack(module: nn.Module) -> bool:
    return isinstance(module, _STACKS) and len({type(m) for m in module}) == 1


def group_blocks(model: nn.Module, branches: list[ResidualBranch]) -> dict[str, list[int]]:
    """Block name → indices of its branches in ``branches``, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(branches):
        groups.setdefault(block_of(model, b), []).append(i)
    return groups


def attention_branch(model: nn.Module, branch: ResidualBranch) -> bool:
    """Whether ``branch`` is an attention sub-layer: an ``nn.MultiheadAttention`` or q/k names."""
    if isinstance(model.get_submodule(branch.layers[0]), nn.MultiheadAttention):
        return True
    return any(name.rpartition(".")[2] in QK_NAMES for name in branch.layers)


def branch_matrices(model: nn.Module, branch: ResidualBranch) -> int:
    """The number of weight matrices on ``branch``: Fixup's ``m``.

    A layer counts once, except that an ``nn.MultiheadAttention``'s input projections count as
    three (q, k, v), so that an attention branch has m = 4 however it is written: q, k, v and
    the output projection, as in the Fixup authors' Transformer variant (their ``in_proj`` is
    scaled by L^(-1/6) = L^(-1/(2m-2))).
    """
    return sum(
        3 if isinstance(model.get_submodule(n), nn.MultiheadAttention) else 1 for n in branch.layers
    )
