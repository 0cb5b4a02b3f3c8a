"""The ``torch.export`` source of residual-branch discovery (``docs/idinit.md`` §8): the real
graph of a forward, captured with example inputs.

:func:`capture` runs ``torch.export.export(..., strict=False)`` on the model in eval mode
(restored afterwards) around a wrapper that keeps only the tensors of the output, so that
``ModelOutput`` records, caches and other non-tensor outputs do not stop it; a forward that takes
``use_cache`` gets ``use_cache=False``. Export computes on fake tensors: parameters, buffers
(BatchNorm statistics included) and the random state are left as they were.

:class:`_ExportBranches` answers :class:`isokit.init.branch_graph.GraphBranches`'s vocabulary
questions for the captured ATen graph: a weight layer is an op fed directly (through views) by the
weight of a module that :func:`isokit.init.layers.is_weight_layer` accepts (``aten.linear``,
``aten.convolution``, ``aten.addmm`` with HF ``Conv1D``'s ``[in, out]`` weight, ``mm``/``matmul``);
norms and preset modules are read from each node's ``nn_module_stack``.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
from collections.abc import Iterator, Mapping

import torch
from torch import fx, nn

from isokit.init.branch_graph import GraphBranches
from isokit.init.branch_trace import _PRESET_LEAVES, _leaf_presets
from isokit.init.layers import is_norm, is_weight_layer
from isokit.structure import ResidualBranch

_ROOT = "model"  # the wrapper's name for the captured model; stripped from every path

_ADD = {"add", "add_"}
_SUB = {"sub", "sub_", "rsub"}
_MUL = {"mul", "mul_"}
_SHAPE = {
    "view",
    "reshape",
    "_unsafe_view",
    "flatten",
    "unflatten",
    "unsqueeze",
    "squeeze",
    "expand",
    "expand_as",
    "permute",
    "transpose",
    "t",
    "contiguous",
    "clone",
    "slice",
    "select",
    "alias",
    "detach",
    "to",
    "_to_copy",
    "type_as",
    "getitem",
    "split",
    "chunk",
    "unbind",
}
_ACT = {
    "sigmoid",
    "tanh",
    "relu",
    "gelu",
    "silu",
    "softmax",
    "_softmax",
    "hardsigmoid",
    "hardswish",
    "mish",
    "elu",
    "leaky_relu",
    "hardtanh",
    "relu6",
    "softplus",
}
_META = {"sym_size", "sym_numel", "sym_stride", "sym_storage_offset"}


class _Capture(nn.Module):
    """Calls the model and returns the tensors of its output as a flat tuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        setattr(self, _ROOT, model)

    def forward(self, *args, **kwargs) -> tuple[torch.Tensor, ...]:
        return tuple(_tensors(getattr(self, _ROOT)(*args, **kwargs)))


def _tensors(out: object) -> Iterator[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, Mapping):  # dicts and HF ModelOutput
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, list | tuple):
        for v in out:
            yield from _tensors(v)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            yield from _tensors(getattr(out, f.name))
    # anything else (a cache object, a string) holds nothing the branches depend on


def _arguments(model: nn.Module, example_inputs: object) -> tuple[tuple, dict]:
    if isinstance(example_inputs, Mapping):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, tuple):
        args, kwargs = example_inputs, {}
    else:
        args, kwargs = (example_inputs,), {}
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # a forward without a readable signature
        params = {}
    if "use_cache" in params and "use_cache" not in kwargs:
        kwargs["use_cache"] = False  # caches add outputs and state that discovery has no use for
    return args, kwargs


def capture(model: nn.Module, example_inputs: object) -> torch.export.ExportedProgram:
    """The graph of ``model(*args, **kwargs)`` as ``torch.export`` captures it (see module doc).

    Example:
        >>> from torch import nn
        >>> ep = capture(nn.Sequential(nn.Linear(3, 3)), torch.zeros(2, 3))
        >>> [n.target.__name__ for n in ep.graph.nodes if n.op == "call_function"]
        ['linear.default']
    """
    args, kwargs = _arguments(model, example_inputs)
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # the inference graph: no dropout, BatchNorm reads its statistics
        with torch.random.fork_rng(devices=[]):
            return torch.export.export(_Capture(model), args, kwargs, strict=False)
    finally:
        for m, training in modes:
            m.training = training


def _op_name(n: fx.Node) -> str:
    if n.op != "call_function":
        return ""
    if n.target is operator.getitem:
        return "getitem"
    return getattr(n.target, "__name__", "").partition(".")[0]


def _strip(path: str) -> str:
    head, _, rest = path.partition(".")
    return rest if head == _ROOT else "" if path == _ROOT else path


class _ExportBranches(GraphBranches):
    """The vocabulary of a ``torch.export`` graph: ATen ops, lifted parameters as placeholders,
    modules known only through ``nn_module_stack``."""

    def __init__(self, model: nn.Module, program: torch.export.ExportedProgram) -> None:
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())
        sig = program.graph_signature
        self.user = set(sig.user_inputs)
        self.param_of = {k: _strip(v) for k, v in sig.inputs_to_parameters.items()}
        self.owner: dict[int, str] = {}  # id(weight) -> its weight layer, first in registration
        for name, m in self.modules.items():
            if name and is_weight_layer(m):
                for pname, p in m.named_parameters(recurse=False):
                    if "bias" not in pname:
                        self.owner.setdefault(id(p), name)
        self.norms = {name for name, m in self.modules.items() if name and is_norm(m)}
        nodes = list(program.graph.nodes)
        self.stack: dict[fx.Node, list[str]] = {}
        for n in nodes:
            paths = [v[0] for v in (n.meta.get("nn_module_stack") or {}).values()]
            paths = [_strip(p) for p in paths if p == _ROOT or p.startswith(_ROOT + ".")]
            self.stack[n] = [p for p in paths if p in self.modules]
        super().__init__(nodes)

    def _source(self, n: fx.Node) -> bool:
        return n.op == "placeholder" and n.name in self.user

    def _opaque(self, n: fx.Node) -> bool:
        return n.op in ("placeholder", "get_attr", "output") or _op_name(n) in _META

    def _param(self, n: fx.Node) -> str | None:
        """The parameter ``n`` is, or a view of."""
        while n.op == "call_function" and _op_name(n) in _SHAPE and len(n.all_input_nodes) == 1:
            n = n.all_input_nodes[0]
        return self.param_of.get(n.name) if n.op == "placeholder" else None

    def _layers(self, n: fx.Node) -> tuple[str, ...]:
        if n.op != "call_function" or not self.data.get(n):
            return ()
        names = []
        for i in n.all_input_nodes:
            p = self._param(i)
            owner = self.owner.get(id(self.params.get(p))) if p is not None else None
            if owner is not None:
                names.append(owner)
        return tuple(dict.fromkeys(names))

    def _preset(self, n: fx.Node) -> str | None:
        return next((p for p in self.stack[n] if isinstance(self.modules[p], _PRESET_LEAVES)), None)

    def _presets(self, name: str) -> list[ResidualBranch]:
        return _leaf_presets(self.modules[name], name)

    def _kind(self, n: fx.Node) -> str | None:
        op = _op_name(n)
        if op in _ADD:
            return "add"
        if op in _SUB:
            return "sub"
        if op in _MUL:
            return "mul"
        if op in _SHAPE:
            return "shape"
        return "act" if op.rstrip("_") in _ACT else None

    def _norm(self, n: fx.Node) -> str | None:
        return next((p for p in reversed(self.stack[n]) if p in self.norms), None)

    def _sources(self, n: fx.Node) -> list[str]:
        if self._computed(n):
            return []
        if n.op == "placeholder":
            return [self.param_of[n.name]] if n.name in self.param_of else []
        return [t for i in n.all_input_nodes for t in self._sources(i)]

    def _inplace_target(self, n: fx.Node) -> fx.Node | None:
        op = _op_name(n)
        if (
            op.endswith("_")
            and not op.startswith("_")
            and n.args
            and isinstance(n.args[0], fx.Node)
        ):
            return n.args[0]
        return None

    def _residual_shapes(self, n: fx.Node, a: fx.Node, b: fx.Node) -> bool:
        va, vb = a.meta.get("val"), b.meta.get("val")
        if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor):
            return tuple(va.shape) == tuple(vb.shape)  # a mask or bias broadcast is no skip
        return True


def export_branches(model: nn.Module, example_inputs: object) -> list[ResidualBranch]:
    """The residual branches in the graph :func:`capture` records (unvalidated)."""
    return _ExportBranches(model, capture(model, example_inputs)).find()
