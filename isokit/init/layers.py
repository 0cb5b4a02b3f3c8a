"""Walking a model's parameters: weight slots, biases, norms, embeddings and the rest.

Model-level schemes act on *weight slots*: one matrix or kernel each. A Linear or ConvNd
weight is one slot; a packed ``nn.MultiheadAttention.in_proj_weight`` is three (q, k, v row
blocks), because isokit initializes attention per projection. Hugging Face's ``Conv1D`` (GPT-2's
layers: ``y = x @ W + b`` with ``W`` of shape ``[in, out]``) is a Linear whose slot is the
``[out, in]`` view ``W.t()``, so every scheme writes it through the code path of ``nn.Linear``.

A parameter reachable under several names (tied weights) is one slot, one bias or one report
row, under its first name; a weight layer whose weight is an embedding's (a tied language-model
head) is no slot at all: the tensor follows the embedding rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch
from torch import nn

from isokit.init.norms import is_norm, norm_eps, scale_offset

__all__ = [
    "RemovedNorm",
    "WeightSlot",
    "bias_params",
    "embedding_ids",
    "embedding_modules",
    "is_embedding",
    "head_layer",
    "is_norm",
    "is_transposed_linear",
    "is_weight_layer",
    "parameter_roles",
    "replace_norms",
    "reset_norms",
    "tied_aliases",
    "unsupported_modules",
    "weight_slots",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


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
        transposed: the parameter is stored ``[in, out]`` (HF ``Conv1D``); the slot is its
            ``[out, in]`` transpose.
    """

    name: str
    module: str
    param: nn.Parameter
    rows: slice | None = None
    kind: str = "linear"
    groups: int = 1
    transposed: bool = False

    @property
    def tensor(self) -> torch.Tensor:
        """The writable ``[out, in, *kernel]`` view of the slot (a row block for packed
        attention, the transpose for ``Conv1D``); fans read from its shape are the layer's."""
        view = self.param.t() if self.transposed else self.param
        return view if self.rows is None else view[self.rows]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def is_transposed_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face ``Conv1D``: a Linear storing its weight ``[in, out]``.

    Recognised without importing ``transformers``: a class named ``Conv1D`` (or a subclass of
    one) with ``nf`` output features and a 2-D ``weight`` of shape ``[nx, nf]``.

    Example:
        >>> class Conv1D(nn.Module):  # transformers.pytorch_utils.Conv1D, in short
        ...     def __init__(self, nf, nx):
        ...         super().__init__()
        ...         self.nf, self.weight = nf, nn.Parameter(torch.empty(nx, nf))
        >>> is_transposed_linear(Conv1D(3, 2)), is_transposed_linear(nn.Linear(2, 3))
        (True, False)
    """
    if not any(c.__name__ == "Conv1D" for c in type(module).__mro__):
        return False
    weight, nf = getattr(module, "weight", None), getattr(module, "nf", None)
    return isinstance(weight, nn.Parameter) and weight.dim() == 2 and weight.shape[1] == nf


def is_weight_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a weight layer: Linear, HF Conv1D, Conv1d/2d/3d or
    MultiheadAttention."""
    return isinstance(module, (nn.Linear, nn.MultiheadAttention, *_CONV)) or (
        is_transposed_linear(module)
    )


def is_embedding(module: nn.Module) -> bool:
    """Whether ``module`` is an embedding table (``nn.Embedding``, ``nn.EmbeddingBag``)."""
    return isinstance(module, _EMBEDDINGS)


def embedding_ids(model: nn.Module) -> set[int]:
    """The ``id`` of every embedding table of ``model``."""
    return {id(m.weight) for m in model.modules() if isinstance(m, _EMBEDDINGS)}


#: Leaf names of packed query/key/value projections (GPT-2's ``c_attn``, timm's ``qkv``, ...):
#: a Linear or ``Conv1D`` of these names whose output is three times its input is three slots,
#: ``[q]``, ``[k]`` and ``[v]``, as ``nn.MultiheadAttention``'s packed ``in_proj_weight`` is.
PACKED_QKV_NAMES = ("c_attn", "qkv", "in_proj", "Wqkv", "query_key_value")


def _linear_slots(mod_name: str, weight: nn.Parameter, transposed: bool) -> list[WeightSlot]:
    name = _join(mod_name, "weight")
    out, inp = weight.shape[::-1] if transposed else weight.shape
    if mod_name.rpartition(".")[2] in PACKED_QKV_NAMES and out == 3 * inp:
        return [
            WeightSlot(
                name=f"{name}[{part}]",
                module=mod_name,
                param=weight,
                rows=slice(i * inp, (i + 1) * inp),
                kind="attention",
                transposed=transposed,
            )
            for i, part in enumerate("qkv")
        ]
    return [WeightSlot(name=name, module=mod_name, param=weight, transposed=transposed)]


def _module_slots(mod_name: str, module: nn.Module) -> list[WeightSlot]:
    weight = module._parameters.get("weight")
    if not isinstance(module, nn.MultiheadAttention) and not isinstance(weight, nn.Parameter):
        # A weight computed from other tensors (torch.nn.utils.parametrize, the older weight_norm
        # and spectral_norm hooks) is recomputed by the forward: writing it would change nothing.
        return []
    if isinstance(module, nn.Linear) or is_transposed_linear(module):
        return _linear_slots(mod_name, weight, transposed=not isinstance(module, nn.Linear))
    if isinstance(module, _CONV):
        return [
            WeightSlot(
                name=_join(mod_name, "weight"),
                module=mod_name,
                param=module.weight,
                kind="conv",
                groups=module.groups,
            )
        ]
    if not isinstance(module, nn.MultiheadAttention):
        return []
    if module.in_proj_weight is not None:
        d = module.embed_dim
        return [
            WeightSlot(
                name=_join(mod_name, f"in_proj_weight[{part}]"),
                module=mod_name,
                param=module.in_proj_weight,
                rows=slice(i * d, (i + 1) * d),
                kind="attention",
            )
            for i, part in enumerate("qkv")
        ]
    return [
        WeightSlot(
            name=_join(mod_name, f"{part}_proj_weight"),
            module=mod_name,
            param=getattr(module, f"{part}_proj_weight"),
            kind="attention",
        )
        for part in "qkv"
    ]


def weight_slots(model: nn.Module) -> list[WeightSlot]:
    """All weight slots of ``model`` in registration order, each tensor once.

    A weight tied to an ``nn.Embedding`` is not a slot (it keeps the embedding rule), nor is a
    weight the forward computes from other tensors (``torch.nn.utils.parametrize``, e.g.
    ``weight_norm``: its tensors are reported as unsupported), and a weight shared by two layers
    is a slot of the first, named as ``named_parameters()`` names it.
    """
    slots: list[WeightSlot] = []
    seen = {(i, None) for i in embedding_ids(model)}
    first = _first_names(model)
    for mod_name, module in model.named_modules():
        for slot in _module_slots(mod_name, module):
            key = (id(slot.param), None if slot.rows is None else slot.rows.start)
            if key in seen:
                continue
            seen.add(key)
            name = first.get(id(slot.param), slot.name)
            slots.append(slot if slot.rows is not None else replace(slot, name=name))
    return slots


def embedding_modules(model: nn.Module) -> list[str]:
    """Names of the ``nn.Embedding`` modules, one per embedding table (tied tables once)."""
    names, seen = [], set()
    for n, m in model.named_modules():
        if isinstance(m, nn.Embedding) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            names.append(n)
    return names


def bias_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Biases of weight layers (Linear, HF Conv1D, ConvNd, attention), not of norms; each once,
    under its first name."""
    out, seen = [], set()
    first = _first_names(model)
    for mod_name, module in model.named_modules():
        if not is_weight_layer(module):
            continue
        for pname in ("bias", "in_proj_bias", "bias_k", "bias_v"):
            p = getattr(module, pname, None)
            if isinstance(p, nn.Parameter) and id(p) not in seen:
                seen.add(id(p))
                out.append((first.get(id(p), _join(mod_name, pname)), p))
    return out


# Direct parameters of modules no scheme knows, kept under a name that says what they are.
_EMBEDDING_NAME = re.compile(r"embed|token$|position_bias|attention_bias|bias_table", re.IGNORECASE)
_SCALE_NAME = re.compile(r"scale|gamma|lambda", re.IGNORECASE)
# What weight layers own; anything else on one (a subclass's extra tensor) is not theirs.
_LAYER_PARAMS = {
    "weight",
    "bias",
    "in_proj_weight",
    "in_proj_bias",
    "q_proj_weight",
    "k_proj_weight",
    "v_proj_weight",
    "bias_k",
    "bias_v",
}


def _role(module: nn.Module, pname: str, p: nn.Parameter) -> str:
    if pname.startswith("isokit_"):
        return "isokit scalar"
    if is_weight_layer(module) and pname in _LAYER_PARAMS:
        return "weight layer"
    if is_norm(module):
        return "norm"
    if isinstance(module, _EMBEDDINGS) or _EMBEDDING_NAME.search(pname):
        return "embedding"
    if p.numel() == 1:
        return "learnable scalar"
    if p.dim() == 1 and _SCALE_NAME.search(pname):
        return "layer scale"
    return "unsupported"


def parameter_roles(model: nn.Module) -> dict[str, tuple[str, str]]:
    """Each parameter's name (tied ones once, under their first name) → (role, class name of
    the module that gives it the role).

    Roles: ``"weight layer"``, ``"norm"``, ``"embedding"`` (``nn.Embedding``, or a parameter
    named like ``position_embeddings``, ``cls_token`` or ``relative_position_bias_table``),
    ``"isokit scalar"`` (added by a scheme), ``"learnable scalar"`` (one element: gates,
    temperatures), ``"layer scale"`` (1-D, named ``*scale*``, ``gamma`` or ``lambda``), and
    ``"unsupported"``: a parameter of a module no scheme knows (ConvTranspose, RNN, custom
    layers, weight parametrizations). A parameter registered on several
    modules takes the role of the first that knows it (BERT's ``cls.predictions.bias`` is its
    decoder Linear's bias).

    Example:
        >>> parameter_roles(nn.Sequential(nn.Linear(2, 2), nn.LSTM(2, 2)))["1.weight_ih_l0"]
        ('unsupported', 'LSTM')
    """
    found: dict[int, tuple[str, str]] = {}
    for module in model.modules():
        for pname, p in module._parameters.items():
            if p is not None and found.get(id(p), ("unsupported",))[0] == "unsupported":
                found[id(p)] = (_role(module, pname, p), type(module).__name__)
    return {name: found[id(p)] for name, p in model.named_parameters()}


def _first_names(model: nn.Module) -> dict[int, str]:
    """``id`` of each parameter → its first name (the one ``named_parameters()`` gives)."""
    return {id(p): name for name, p in model.named_parameters()}


def tied_aliases(model: nn.Module) -> list[tuple[str, str]]:
    """``(alias, name)`` for every further name of a parameter reachable under several."""
    first: dict[int, str] = {}
    aliases = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases.append((name, first[id(p)]))
        else:
            first[id(p)] = name
    return aliases


def unsupported_modules(model: nn.Module) -> list[str]:
    """Names of the modules owning parameters that no scheme knows (see
    :func:`parameter_roles`), in registration order."""
    names: list[str] = []
    for name, (role, _) in parameter_roles(model).items():
        owner = name.rpartition(".")[0]
        if role == "unsupported" and owner not in names:
            names.append(owner)
    return names


def reset_norms(model: nn.Module, *, gamma: dict[str, float] | None = None) -> list[str]:
    """Set every norm's γ = 1 (or ``gamma[name]``) and β = 0, running statistics to (0, 1).

    A norm without β (T5's, Llama's RMSNorm) gets γ only; one that computes (1 + weight)·x̂
    (Gemma's) gets weight γ − 1 (:func:`isokit.init.norms.scale_offset`).
    """
    gamma = gamma or {}
    names = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if not is_norm(module):
                continue
            names.append(name)
            if isinstance(getattr(module, "weight", None), torch.Tensor):
                module.weight.fill_(gamma.get(name, 1.0) - scale_offset(module))
            if isinstance(getattr(module, "bias", None), torch.Tensor):
                module.bias.zero_()
            if getattr(module, "track_running_stats", False) and hasattr(
                module, "reset_running_stats"
            ):
                module.reset_running_stats()
    return names


class RemovedNorm(nn.Identity):
    """The identity map standing in for a removed normalization layer.

    It keeps the removed layer's ε as ``eps`` (and as ``variance_epsilon`` when the layer named
    it so), because some modules read it in their forward (``nn.TransformerEncoderLayer``
    compares ``norm1.eps`` with ``norm2.eps``).
    """

    def __init__(self, eps: float = 1e-5, *, variance_epsilon: bool = False) -> None:
        super().__init__()
        self.eps = eps
        if variance_epsilon:
            self.variance_epsilon = eps


def _keep_python_path(module: nn.Module, args: tuple) -> None:
    return None


_FUSED = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def replace_norms(model: nn.Module) -> list[str]:
    """Replace every normalization module by :class:`RemovedNorm` (Fixup, SkipInit, ReZero, ...)."""
    removed = [n for n, m in model.named_modules() if is_norm(m) and n]
    for name in removed:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        norm = parent.get_submodule(child)
        setattr(
            parent,
            child,
            RemovedNorm(norm_eps(norm), variance_epsilon=hasattr(norm, "variance_epsilon")),
        )
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
