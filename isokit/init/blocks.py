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

from isokit.init.layers import PACKED_QKV_NAMES, is_weight_layer, weight_slots
from isokit.structure import ResidualBranch

__all__ = [
    "attention_branch",
    "block_of",
    "branch_matrices",
    "group_blocks",
    "off_branch_projections",
]

#: Leaf names of separate query and key projections (isokit, HF BERT/DistilBERT/T5/Llama, timm,
#: fairseq).
Q_NAMES = ("q", "q_proj", "query", "q_lin")
K_NAMES = ("k", "k_proj", "key", "k_lin")
QK_NAMES = Q_NAMES + K_NAMES
#: Leaf names of separate value projections.
V_NAMES = ("v", "v_proj", "value", "v_lin")
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
    """Whether ``branch`` is an attention sub-layer: an ``nn.MultiheadAttention``, q/k names, or
    a packed q/k/v projection (:data:`~isokit.init.layers.PACKED_QKV_NAMES`, GPT-2's ``c_attn``)."""
    if isinstance(model.get_submodule(branch.layers[0]), nn.MultiheadAttention):
        return True
    names = QK_NAMES + PACKED_QKV_NAMES
    if any(name.rpartition(".")[2] in names for name in branch.layers):
        return True
    # Otherwise by the holder's class: GPT2Attention, MultiHeadSelfAttention, LlamaAttention, ...
    holders = {_parent(name) for name in branch.layers} - {""}
    return any(type(model.get_submodule(h)).__name__.endswith("Attention") for h in holders)


def off_branch_projections(model: nn.Module, branch: ResidualBranch) -> tuple[str, ...]:
    """The key and value projections of an attention branch that are not on it.

    A cross-attention's k and v read the encoder's output, not the block input, so the branch
    found from the residual addition holds only q and the output projection; the schemes that
    scale an attention's v (T-Fixup) or all of q, k and v (Fixup) need the other two as well.
    They are the Linear siblings of the branch's layers with a key or value name.
    """
    if not attention_branch(model, branch):
        return ()
    out = []
    for parent in sorted({_parent(n) for n in branch.layers}):
        holder = model.get_submodule(parent) if parent else model
        for leaf, module in holder.named_children():
            name = f"{parent}.{leaf}" if parent else leaf
            wanted = leaf in K_NAMES or leaf in V_NAMES
            if wanted and is_weight_layer(module) and name not in branch.layers:
                out.append(name)
    return tuple(out)


def branch_matrices(model: nn.Module, branch: ResidualBranch) -> int:
    """The number of weight matrices of ``branch``: Fixup's ``m``.

    A layer counts once, except that an ``nn.MultiheadAttention``'s input projections count as
    three (q, k, v), and a cross-attention's k and v count though they are off the branch
    (:func:`off_branch_projections`), so that an attention branch has m = 4 however it is
    written: q, k, v and the output projection, as in the Fixup authors' Transformer variant
    (their ``in_proj`` is scaled by L^(-1/6) = L^(-1/(2m-2))).
    """
    packed = {slot.module for slot in weight_slots(model) if slot.kind == "attention"}
    on = sum(3 if n in packed else 1 for n in branch.layers)
    return on + len(off_branch_projections(model, branch))
