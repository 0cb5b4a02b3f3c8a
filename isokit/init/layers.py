"""Walking a model's parameters: weight slots, biases, norms, embeddings and the rest.

Model-level schemes act on *weight slots*: one matrix or kernel each. A Linear or ConvNd
weight is one slot; a packed ``nn.MultiheadAttention.in_proj_weight`` is three (q, k, v row
blocks), because isokit initializes attention per projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_RECURRENT = (nn.RNNBase,)
NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


@dataclass(frozen=True, kw_only=True)
class WeightSlot:
    """One weight matrix or kernel that a scheme initializes.

    Attributes:
        name: the parameter name, with ``[q]``, ``[k]``, ``[v]`` appended for packed
            attention row blocks.
        module: the owning module's name (``""`` for the root).
        param: the parameter.
        rows: the row block of ``param`` this slot covers, or ``None`` for all of it.
        kind: ``"linear"``, ``"conv"`` or ``"attention"`` (an in-projection block).
        groups: the convolution's groups (1 otherwise).
    """

    name: str
    module: str
    param: nn.Parameter
    rows: slice | None = None
    kind: str = "linear"
    groups: int = 1

    @property
    def tensor(self) -> torch.Tensor:
        """The writable view of the slot (a row block for packed attention)."""
        return self.param if self.rows is None else self.param[self.rows]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def weight_slots(model: nn.Module) -> list[WeightSlot]:
    """All weight slots of ``model`` in registration order."""
    slots: list[WeightSlot] = []
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            slots.append(
                WeightSlot(name=_join(mod_name, "weight"), module=mod_name, param=module.weight)
            )
        elif isinstance(module, _CONV):
            slots.append(
                WeightSlot(
                    name=_join(mod_name, "weight"),
                    module=mod_name,
                    param=module.weight,
                    kind="conv",
                    groups=module.groups,
                )
            )
        elif isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                d = module.embed_dim
                for i, part in enumerate("qkv"):
                    slots.append(
                        WeightSlot(
                            name=_join(mod_name, f"in_proj_weight[{part}]"),
                            module=mod_name,
                            param=module.in_proj_weight,
                            rows=slice(i * d, (i + 1) * d),
                            kind="attention",
                        )
                    )
            else:
                for part in "qkv":
                    p = getattr(module, f"{part}_proj_weight")
                    slots.append(
                        WeightSlot(
                            name=_join(mod_name, f"{part}_proj_weight"),
                            module=mod_name,
                            param=p,
                            kind="attention",
                        )
                    )
    return slots


def is_weight_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a weight layer: Linear, Conv1d/2d/3d or MultiheadAttention."""
    return isinstance(module, (nn.Linear, nn.MultiheadAttention, *_CONV))


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, NORMS)


def unsupported_modules(model: nn.Module) -> list[str]:
    """Names of parametric modules isokit's identity rules do not cover (kept and reported)."""
    return [n for n, m in model.named_modules() if isinstance(m, _TRANSPOSED + _RECURRENT)]


def embedding_modules(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]


def bias_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Biases of weight layers (Linear, ConvNd, attention), not of norms."""
    out = []
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.MultiheadAttention, *_CONV)):
            for pname in ("bias", "in_proj_bias", "bias_k", "bias_v"):
                p = getattr(module, pname, None)
                if isinstance(p, nn.Parameter):
                    out.append((_join(mod_name, pname), p))
    return out


def reset_norms(model: nn.Module, *, gamma: dict[str, float] | None = None) -> list[str]:
    """Set every norm's γ = 1 (or ``gamma[name]``) and β = 0, BatchNorm statistics to (0, 1)."""
    gamma = gamma or {}
    names = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if not is_norm(module):
                continue
            names.append(name)
            if getattr(module, "weight", None) is not None:
                module.weight.fill_(gamma.get(name, 1.0))
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                module.reset_running_stats()
    return names


class RemovedNorm(nn.Identity):
    """The identity map standing in for a removed normalization layer.

    It keeps the removed layer's ``eps``, because some modules read it in their forward
    (``nn.TransformerEncoderLayer`` compares ``norm1.eps`` with ``norm2.eps``).
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps


def _keep_python_path(module: nn.Module, args: tuple) -> None:
    return None


_FUSED = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def replace_norms(model: nn.Module) -> list[str]:
    """Replace every normalization module by :class:`RemovedNorm` (Fixup, SkipInit, ReZero, ...)."""
    removed = [n for n, m in model.named_modules() if is_norm(m) and n]
    for name in removed:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, RemovedNorm(getattr(parent.get_submodule(child), "eps", 1e-5)))
        if isinstance(parent, _FUSED) and not getattr(parent, "_isokit_no_fastpath", False):
            # The fused fast path applies LayerNorm itself; any hook makes PyTorch take the
            # Python path, which honours the removed norms.
            parent.register_forward_pre_hook(_keep_python_path)
            parent._isokit_no_fastpath = True
    return removed


def head_layer(model: nn.Module, slots: list[WeightSlot], branch_layers: set[str]) -> str | None:
    """The classifier head: the last Linear in registration order named like a head.

    A Linear counts as the head when it is outside every residual branch and its name ends in
    ``fc``, ``head``, ``classifier``, ``logits`` or ``lm_head``; pass ``head_name=`` to a scheme
    to name it explicitly.
    """
    for slot in reversed(slots):
        if slot.kind != "linear" or slot.module in branch_layers:
            continue
        leaf = slot.module.rpartition(".")[2]
        if leaf in {"fc", "head", "classifier", "logits", "lm_head"}:
            return slot.module
        return None
    return None
