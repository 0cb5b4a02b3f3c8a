"""The torch.fx source of residual-branch discovery (``docs/idinit.md`` §8), and the layer
vocabulary it shares with :mod:`isokit.init.branches`, which imports this module and re-exports
its public names.

Holds the errors (:class:`BranchDiscoveryError`, :class:`BranchDiscoveryWarning`), the weight,
norm and preset-leaf module types with :func:`weight_layers`, the ``nn.Transformer*`` leaf presets
the tracer keeps opaque, and the tracer itself: ``_trace`` traces a model with ``nn.Transformer*``
modules as leaves, and ``_FxBranches`` reads each residual addition of the graph as a branch
operand (more weight layers) and a skip operand (at most one), walking back from the branch
operand through norms, scalar gates and gating products to the branch's last weight layer.
"""

from __future__ import annotations

import inspect
import operator
import warnings

import torch
import torch.nn.functional as F
from torch import fx, nn

from isokit.structure import ResidualBranch

_HOWTO = (
    "Declare the branches instead: define `residual_branches()` on the model returning "
    "isokit.structure.ResidualBranch records, pass `branches=[ResidualBranch(layers=(...), "
    "gate=..., norm=...), ...]`, or pass `branch_last=[...]` with the names (fnmatch globs "
    "allowed) of each branch's last layer."
)


class BranchDiscoveryError(ValueError):
    """The residual branches of a model could not be determined unambiguously."""


class BranchDiscoveryWarning(UserWarning):
    """Discovery skipped a residual addition or fell back to name presets."""


_WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_NORM_TYPES += (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
_LAYER_PRESETS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
# Kept opaque while tracing: their forward branches on tensor values, so fx cannot enter them.
_PRESET_LEAVES = (*_LAYER_PRESETS, nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer)

_ADDS = {operator.add, operator.iadd, torch.add, torch.Tensor.add, torch.Tensor.add_}
_COMBINE = {operator.sub, operator.isub, torch.sub, torch.Tensor.sub, torch.Tensor.sub_, *_ADDS}
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
    """Names of the model's weight layers (Linear, Conv1d/2d/3d, MultiheadAttention and its
    ``out_proj``) in registration order."""
    return [name for name, m in model.named_modules() if name and isinstance(m, _WEIGHT_TYPES)]


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
        return isinstance(m, (*_WEIGHT_TYPES, *_PRESET_LEAVES)) or next(m.children(), None) is None


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


def _is_norm(m: nn.Module) -> bool:
    # Custom norms (LLaMA-style RMSNorm, timm LayerNorm2d) rarely subclass torch's classes.
    return isinstance(m, _NORM_TYPES) or (
        "norm" in type(m).__name__.lower() and not isinstance(m, _WEIGHT_TYPES)
    )


def _scalar_param(m: nn.Module) -> str | None:
    """Name of the single scalar parameter of a gate-like module (ReZero/SkipInit scale)."""
    if type(m).__module__ == "torch.nn.modules.activation" or next(m.children(), None):
        return None
    params = list(m.named_parameters())
    return params[0][0] if len(params) == 1 and params[0][1].numel() == 1 else None


class _FxBranches:
    """Residual additions of one traced graph. Ancestor sets are int bitsets over node indices;
    only data edges count (not shape queries, parameters or constants)."""

    def __init__(self, model: nn.Module, graph: fx.Graph) -> None:
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())
        self.nodes = list(graph.nodes)
        self.idx = {n: i for i, n in enumerate(self.nodes)}
        self.data: dict[fx.Node, list[fx.Node]] = {}
        self.anc: dict[fx.Node, int] = {}
        latest: dict[fx.Node, fx.Node] = {}  # tensor -> its in-place updated version

        def resolve(n: fx.Node) -> fx.Node:
            while n in latest:
                n = latest[n]
            return n

        for n in self.nodes:
            ins = list(dict.fromkeys(resolve(i) for i in n.all_input_nodes))
            data = [i for i in ins if i in self.data and self._computed(i)]
            self.data[n] = data
            self.anc[n] = 1 << self.idx[n]
            for d in data:
                self.anc[n] |= self.anc[d]
            if (
                n.op == "call_method"
                and n.target.endswith("_")
                and not n.target.endswith("__")
                and n.args
                and isinstance(n.args[0], fx.Node)
            ):
                latest[resolve(n.args[0])] = n

    def _computed(self, n: fx.Node) -> bool:
        """Whether ``n`` carries data derived from a model input."""
        if n.op == "placeholder":
            return True
        if n.op in ("get_attr", "output") or self._is_meta(n):
            return False
        return bool(self.data.get(n))

    @staticmethod
    def _is_meta(n: fx.Node) -> bool:
        return (n.op == "call_method" and n.target in _META_METHODS) or (
            n.op == "call_function"
            and n.target is getattr
            and len(n.args) > 1
            and n.args[1] in _META_ATTRS
        )

    @staticmethod
    def _is(n: fx.Node, funcs: set, method: str) -> bool:
        if n.op == "call_function":
            return n.target in funcs
        return n.op == "call_method" and n.target in (method, f"{method}_")

    def _module(self, n: fx.Node) -> nn.Module | None:
        return self.modules[n.target] if n.op == "call_module" else None

    def _weight_count(self, n: fx.Node) -> int:
        m = self._module(n)
        if isinstance(m, _WEIGHT_TYPES):
            return 1
        return len(weight_layers(m)) if isinstance(m, _PRESET_LEAVES) else 0

    def _between(self, fork: int, operand: fx.Node, other: fx.Node) -> int:
        """Bitset of the nodes on ``operand``'s path from the fork, off ``other``'s path."""
        mask, out = self.anc[operand] & ~self.anc[other], 0
        while mask:
            i = mask.bit_length() - 1
            mask ^= 1 << i
            if self.anc[self.nodes[i]] >> fork & 1:
                out |= 1 << i
        return out

    def _members(self, mask: int) -> list[fx.Node]:
        return [n for i, n in enumerate(self.nodes) if mask >> i & 1]

    def _names(self, mask: int) -> list[str]:
        return [n.target for n in self._members(mask) if self._weight_count(n)]

    def find(self) -> list[ResidualBranch]:
        residual: dict[fx.Node, tuple[fx.Node, int]] = {}  # add -> (branch operand, its path)
        for n in self.nodes:
            if not self._is(n, _ADDS, "add") or len(self.data[n]) != 2:
                continue
            a, b = self.data[n]
            common = self.anc[a] & self.anc[b]
            if not common:
                continue  # e.g. a positional embedding or a bias: no common computed ancestor
            fork = common.bit_length() - 1
            pa, pb = self._between(fork, a, b), self._between(fork, b, a)
            ca = sum(self._weight_count(x) for x in self._members(pa))
            cb = sum(self._weight_count(x) for x in self._members(pb))
            if ca == cb == 0:
                continue
            if ca == cb or min(ca, cb) > 1:
                raise BranchDiscoveryError(
                    f"addition {n.name!r} after {self.nodes[fork].name!r} is ambiguous: its "
                    f"operands carry {ca} and {cb} weight layers ({self._names(pa)} and "
                    f"{self._names(pb)}), so neither is clearly the skip path (it must have "
                    f"fewer weight layers, and at most one). {_HOWTO}"
                )
            residual[n] = (a, pa) if ca > cb else (b, pb)

        out: list[ResidualBranch] = []
        for n in self.nodes:
            m = self._module(n)
            if isinstance(m, _PRESET_LEAVES):
                out += _leaf_presets(m, n.target)
            if n not in residual:
                continue
            operand, path = residual[n]
            last, norm, gate, why = self._walk(operand, path, n)
            if last is None:
                warnings.warn(
                    f"residual addition {n.name!r} has no last layer of its own: its branch {why}; "
                    "it is skipped and its layers count as main stem",
                    BranchDiscoveryWarning,
                    stacklevel=3,
                )
                continue
            nested = 0  # layers of residual blocks nested in this branch belong to those blocks
            for inner, (_, inner_path) in residual.items():
                if inner is not n and path >> self.idx[inner] & 1:
                    nested |= inner_path
            layers = [
                x
                for w in self._members(path & ~nested)
                if w is not last and isinstance(self._module(w), _WEIGHT_TYPES)
                for x in _expand(self.modules, w.target)
            ]
            out.append(
                ResidualBranch(
                    layers=(*layers, *_expand(self.modules, last.target)), gate=gate, norm=norm
                )
            )
        return out

    def _walk(self, n: fx.Node, path: int, add: fx.Node):
        """Walk back from the branch operand to the branch's last weight layer."""
        norm = gate = None
        while True:
            if not path >> self.idx[n] & 1:
                return None, norm, gate, "reaches the block input without passing a weight layer"
            m = self._module(n)
            if isinstance(m, _WEIGHT_TYPES):
                return n, norm, gate, ""
            if isinstance(m, _PRESET_LEAVES):
                return None, norm, gate, f"ends inside the preset module {n.target!r}"
            if self._is(n, _COMBINE, "add") or self._is(n, _COMBINE, "sub"):
                return None, norm, gate, f"ends in another addition ({n.name!r})"
            if m is not None and _is_norm(m):
                norm = norm or n.target
            elif m is not None and (p := _scalar_param(m)):
                gate = gate or f"{n.target}.{p}"
            data = self.data[n]
            if self._is(n, _MULS, "mul"):
                nxt, g = self._product_data(n, add)
                gate = gate or g
            elif len(data) == 1:
                nxt = data[0]
            else:
                inside = [d for d in data if path >> self.idx[d] & 1]
                if len(inside) != 1:
                    raise BranchDiscoveryError(
                        f"cannot tell which input of {n.name!r} ({n.target}) carries the branch "
                        f"output of addition {add.name!r}. {_HOWTO}"
                    )
                nxt = inside[0]
            n = nxt

    def _product_data(self, n: fx.Node, add: fx.Node) -> tuple[fx.Node, str | None]:
        """The data input of an elementwise product, and the scalar gate parameter if any."""
        gate = None
        for arg in n.all_input_nodes:
            attrs = self._attr_sources(arg)
            if len(attrs) == 1 and attrs[0] in self.params and self.params[attrs[0]].numel() == 1:
                gate = attrs[0]
        data = self.data[n]
        if len(data) == 1:
            return data[0], gate
        a, b = data
        if self.anc[b] >> self.idx[a] & 1:
            return a, gate  # b is a side path computed from a (squeeze-excitation)
        if self.anc[a] >> self.idx[b] & 1:
            return b, gate
        gated_a, gated_b = self._gating(a), self._gating(b)
        if gated_a != gated_b:
            return (b if gated_a else a), gate  # GLU: the activated operand is the gate
        raise BranchDiscoveryError(
            f"cannot tell the data input from the gate in product {n.name!r} on the branch of "
            f"addition {add.name!r} (inputs {a.name!r} and {b.name!r}). {_HOWTO}"
        )

    def _attr_sources(self, n: fx.Node) -> list[str]:
        """get_attr targets feeding a parameter-only value such as ``self.alpha.tanh()``."""
        if self._computed(n):
            return []
        if n.op == "get_attr":
            return [n.target]
        return [t for i in n.all_input_nodes for t in self._attr_sources(i)]

    def _gating(self, n: fx.Node) -> bool:
        while (
            n.op in ("call_method", "call_function")
            and (n.target in _SHAPE_METHODS or n.target in _SHAPE_FUNCS)
            and self.data[n]
        ):
            n = self.data[n][0]
        m = self._module(n)
        if m is not None:
            return type(m).__module__ == "torch.nn.modules.activation"
        return (n.op == "call_function" and n.target in _ACT_FUNCS) or (
            n.op == "call_method" and n.target in _ACT_METHODS
        )
