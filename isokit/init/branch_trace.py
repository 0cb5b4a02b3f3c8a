"""The torch.fx source of residual-branch discovery (``docs/idinit.md`` §8), and the layer
vocabulary it shares with :mod:`isokit.init.branches`, which re-exports its public names.

Holds :func:`weight_layers`, the ``nn.Transformer*`` leaf presets the tracer keeps opaque, and the
tracer itself: ``_trace`` traces a module with ``nn.Transformer*`` modules as leaves, and
``_FxBranches`` answers :class:`isokit.init.branch_graph.GraphBranches`'s vocabulary questions for
a symbolic trace (``call_module`` leaves, Python operators, tensor methods).
"""

from __future__ import annotations

import inspect
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from isokit.init.branch_errors import BranchDiscoveryError, BranchDiscoveryWarning
from isokit.init.branch_graph import GraphBranches
from isokit.init.layers import is_norm, is_weight_layer
from isokit.structure import ResidualBranch

__all__ = ["BranchDiscoveryError", "BranchDiscoveryWarning", "weight_layers"]

_LAYER_PRESETS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
# Kept opaque while tracing: their forward branches on tensor values, so fx cannot enter them.
_PRESET_LEAVES = (*_LAYER_PRESETS, nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer)

_ADDS = {operator.add, operator.iadd, torch.add, torch.Tensor.add, torch.Tensor.add_}
_SUBS = {operator.sub, operator.isub, torch.sub, torch.Tensor.sub, torch.Tensor.sub_}
_MULS = {operator.mul, operator.imul, torch.mul, torch.Tensor.mul, torch.Tensor.mul_}
_META_METHODS = {"size", "dim", "numel", "nelement", "ndimension", "get_device", "is_contiguous"}
_META_ATTRS = {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout"}
_SHAPE_METHODS = {
    "view",
    "reshape",
    "flatten",
    "unsqueeze",
    "squeeze",
    "expand",
    "expand_as",
    "permute",
    "transpose",
    "contiguous",
    "repeat",
}
_SHAPE_FUNCS = {
    operator.getitem,
    torch.flatten,
    torch.reshape,
    torch.unsqueeze,
    torch.squeeze,
    torch.permute,
    torch.transpose,
}
_ACT_FUNCS = {
    torch.sigmoid,
    torch.tanh,
    torch.relu,
    torch.softmax,
    F.sigmoid,
    F.tanh,
    F.relu,
    F.gelu,
    F.silu,
    F.softmax,
    F.hardsigmoid,
    F.hardswish,
    F.mish,
    F.elu,
    F.leaky_relu,
    F.relu6,
    F.softplus,
}
_ACT_METHODS = {"sigmoid", "sigmoid_", "tanh", "tanh_", "relu", "relu_", "softmax"}


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the model's weight layers (:func:`isokit.init.layers.is_weight_layer`: Linear, HF
    Conv1D, Conv1d/2d/3d, MultiheadAttention and its ``out_proj``) in registration order."""
    return [name for name, m in model.named_modules() if name and is_weight_layer(m)]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _expand(modules: dict[str, nn.Module], name: str) -> tuple[str, ...]:
    if isinstance(modules[name], nn.MultiheadAttention):
        return (name, f"{name}.out_proj")
    return (name,)


def _leaf_presets(module: nn.Module, prefix: str) -> list[ResidualBranch]:
    """Branches of the nn.Transformer* layers inside ``module`` (pre- and post-norm alike: the
    norms sit before the branch or after the addition, so no norm ends a branch)."""
    out = []
    for name, m in module.named_modules():
        if not isinstance(m, _LAYER_PRESETS):
            continue
        p = _join(prefix, name)
        attns = ["self_attn"] + (
            ["multihead_attn"] if isinstance(m, nn.TransformerDecoderLayer) else []
        )
        out += [ResidualBranch(layers=(_join(p, a), _join(p, f"{a}.out_proj"))) for a in attns]
        out.append(ResidualBranch(layers=(_join(p, "linear1"), _join(p, "linear2"))))
    return out


# --------------------------------------------------------------------------- torch.fx discovery


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            is_weight_layer(m) or isinstance(m, _PRESET_LEAVES) or next(m.children(), None) is None
        )


def _trace(model: nn.Module) -> fx.Graph:
    # Optional arguments (masks, flags) are fixed at their defaults so that `if mask is None`
    # checks do not have to branch on a proxy.
    params = inspect.signature(model.forward).parameters.values()
    concrete = {
        p.name: p.default
        for p in params
        if p.kind is p.POSITIONAL_OR_KEYWORD
        and (p.default is None or isinstance(p.default, bool | int | float | str))
    }
    return _Tracer().trace(model, concrete_args=concrete or None)


def _scalar_param(m: nn.Module) -> str | None:
    """Name of the single scalar parameter of a gate-like module (ReZero/SkipInit scale)."""
    if type(m).__module__ == "torch.nn.modules.activation" or next(m.children(), None):
        return None
    params = list(m.named_parameters())
    return params[0][0] if len(params) == 1 and params[0][1].numel() == 1 else None


class _FxBranches(GraphBranches):
    """The vocabulary of a symbolic trace: leaves are ``call_module`` nodes, parameters
    ``get_attr`` nodes, operations Python functions and tensor methods."""

    def __init__(self, model: nn.Module, graph: fx.Graph) -> None:
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())
        super().__init__(list(graph.nodes))

    def _module(self, n: fx.Node) -> nn.Module | None:
        return self.modules[n.target] if n.op == "call_module" else None

    def _source(self, n: fx.Node) -> bool:
        return n.op == "placeholder"

    def _opaque(self, n: fx.Node) -> bool:
        if n.op in ("get_attr", "output"):
            return True
        return (n.op == "call_method" and n.target in _META_METHODS) or (
            n.op == "call_function"
            and n.target is getattr
            and len(n.args) > 1
            and n.args[1] in _META_ATTRS
        )

    def _layers(self, n: fx.Node) -> tuple[str, ...]:
        m = self._module(n)
        if m is None:
            return ()
        if isinstance(m, _PRESET_LEAVES):
            return tuple(_join(n.target, x) for x in weight_layers(m))
        return (n.target,) if is_weight_layer(m) else ()

    def _expand(self, name: str) -> tuple[str, ...]:
        return _expand(self.modules, name)

    def _preset(self, n: fx.Node) -> str | None:
        return n.target if isinstance(self._module(n), _PRESET_LEAVES) else None

    def _presets(self, name: str) -> list[ResidualBranch]:
        return _leaf_presets(self.modules[name], name)

    def _kind(self, n: fx.Node) -> str | None:
        if n.op == "call_function":
            t = n.target
            for kind, funcs in (("add", _ADDS), ("sub", _SUBS), ("mul", _MULS)):
                if t in funcs:
                    return kind
            return "shape" if t in _SHAPE_FUNCS else "act" if t in _ACT_FUNCS else None
        if n.op == "call_method":
            t = n.target
            for kind in ("add", "sub", "mul"):
                if t in (kind, f"{kind}_"):
                    return kind
            return "shape" if t in _SHAPE_METHODS else "act" if t in _ACT_METHODS else None
        m = self._module(n)
        return (
            "act" if m is not None and type(m).__module__ == "torch.nn.modules.activation" else None
        )

    def _norm(self, n: fx.Node) -> str | None:
        m = self._module(n)
        return n.target if m is not None and is_norm(m) else None

    def _gate_module(self, n: fx.Node) -> str | None:
        m = self._module(n)
        p = _scalar_param(m) if m is not None else None
        return f"{n.target}.{p}" if p else None

    def _sources(self, n: fx.Node) -> list[str]:
        if self._computed(n):
            return []
        if n.op == "get_attr":
            return [n.target]
        return [t for i in n.all_input_nodes for t in self._sources(i)]

    def _inplace_target(self, n: fx.Node) -> fx.Node | None:
        if (
            n.op == "call_method"
            and n.target.endswith("_")
            and not n.target.endswith("__")
            and n.args
            and isinstance(n.args[0], fx.Node)
        ):
            return n.args[0]
        return None
