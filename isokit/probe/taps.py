"""Resolving tap specifications and capturing tap outputs inside function transforms.

A *tap* is a module whose output marks one depth (``docs/probes.md §1``). :func:`resolve_taps`
turns a specification into an ordered list of module names:

- ``"auto"``: the model's ``taps`` attribute if it has one; else the children of a top-level
  :class:`torch.nn.Sequential`; else the children of the largest ``nn.ModuleList``/``nn.Sequential``
  found anywhere in the model (the repeated blocks).
- a module name or a glob pattern (``"encoder.layer.*"``), or a list of them: a pattern's
  ``*``, ``?`` and ``[...]`` match within one dotted part of a name, so ``encoder.layer.*`` selects
  the blocks themselves and not the modules inside them; its matches come in module order, and
  a list's entries in list order (an unknown name, or a pattern that matches nothing, raises
  :class:`TapError` listing close matches);
- a predicate ``(name, module) -> bool`` evaluated over ``model.named_modules()`` (root excluded).

The model is called with one of the input structures :func:`call_model` knows: a tensor, a tuple
of positional arguments or a dict of keyword arguments (token ids, attention masks); the
examples of such a batch are sliced across all its tensors (:func:`take_examples`). A tap module
that returns a tuple, a list or a mapping (a Hugging Face layer's tuple, a ``ModelOutput``) is
read as its first tensor (:func:`first_tensor`), and replacements go there too.

:func:`run_with_taps` follows the rules of ``docs/probes.md §2``: hooks are registered for the call
only and removed in ``finally``; the capture container is created inside the (possibly transformed)
call and the captured tensors are returned from it; each capture is cloned, so later in-place
operations (``ReLU(inplace=True)``, ``x += skip``) cannot rewrite it; a tap module that runs more
than once per forward is rejected.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = [
    "ModelInputs",
    "TapCall",
    "TapError",
    "TapSpec",
    "batch_size",
    "call_model",
    "first_tensor",
    "is_pattern",
    "replace_first",
    "resolve_taps",
    "run_with_taps",
    "take_examples",
]

TapSpec = str | Sequence[str] | Callable[[str, nn.Module], bool]
#: What a model's forward takes: a tensor, a tuple of positional arguments, a dict of keywords.
ModelInputs = Tensor | tuple | Mapping[str, Any]

_GLOB = frozenset("*?[")


class TapError(ValueError):
    """A tap specification that cannot be resolved, or a tap that misbehaves during a forward.

    Example:
        >>> from torch import nn
        >>> resolve_taps(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), ["fc"])
        Traceback (most recent call last):
        ...
        isokit.probe.taps.TapError: the model Sequential has no module named 'fc' (tap names \
come from model.named_modules())
    """


class _StopForward(Exception):  # noqa: N818 - control flow, not an error
    """Raised by the hook of the last tap needed, to skip the rest of the forward pass."""


def is_pattern(name: str) -> bool:
    """Whether a tap name is a glob pattern (it holds ``*``, ``?`` or ``[``).

    Example:
        >>> is_pattern("encoder.layer.*"), is_pattern("encoder.layer.0")
        (True, False)
    """
    return bool(_GLOB & set(name))


def _matches(pattern: str, names: list[str]) -> list[str]:
    """The names that match ``pattern`` part by part (a ``*`` never crosses a dot)."""
    parts = pattern.split(".")
    return [
        n
        for n in names
        if len(split := n.split(".")) == len(parts)
        and all(fnmatch.fnmatchcase(a, b) for a, b in zip(split, parts, strict=True))
    ]


def _unknown(model: nn.Module, name: str, names: list[str], what: str) -> TapError:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return TapError(
        f"the model {type(model).__name__} has {what} {name!r}{hint} "
        "(tap names come from model.named_modules())"
    )


def _expand(model: nn.Module, entries: list, modules: dict[str, nn.Module]) -> list[str]:
    """Each entry as a name, or a pattern as its matches in module order; unknown ones refused."""
    known = [n for n in modules if n]
    names: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise TapError(f"tap names must be strings, got {entry!r}")
        if entry in modules and entry != "":
            names.append(entry)
        elif is_pattern(entry):
            found = _matches(entry, known)
            if not found:
                raise _unknown(model, entry, known, "no module matching the pattern")
            names.extend(found)
        else:
            raise _unknown(model, entry, known, "no module named")
    return names


def resolve_taps(model: nn.Module, taps: TapSpec = "auto") -> list[str]:
    """Resolve ``taps`` to an ordered list of distinct module names of ``model`` (module doc).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2))
        >>> resolve_taps(model), resolve_taps(model, lambda name, m: isinstance(m, nn.Linear))
        (['0', '1', '2'], ['0', '2'])
        >>> resolve_taps(nn.Sequential(model, nn.Tanh()), "0.[02]")
        ['0.0', '0.2']
    """
    modules = dict(model.named_modules())
    if isinstance(taps, str):
        # A single name or pattern is accepted as a one-element list.
        names = _auto_taps(model, modules) if taps == "auto" else _expand(model, [taps], modules)
    elif callable(taps):
        names = []
        for name, module in model.named_modules():
            if name and taps(name, module):
                names.append(name)
        if not names:
            raise TapError("the tap predicate selected no module of the model")
    else:
        if not list(taps):
            raise TapError("the tap list is empty; pass module names or 'auto'")
        names = _expand(model, list(taps), modules)
    for name in names:  # a model's own `taps` attribute is checked as literally as a list
        if not isinstance(name, str):
            raise TapError(f"tap names must be strings, got {name!r}")
        if name not in modules or name == "":
            raise _unknown(model, name, [n for n in modules if n], "no module named")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise TapError(f"duplicate tap names: {', '.join(dup)}")
    return names


def _auto_taps(model: nn.Module, modules: dict[str, nn.Module]) -> list[str]:
    declared = getattr(model, "taps", None)
    if declared is not None:
        if isinstance(declared, str) or not isinstance(declared, Sequence):
            raise TapError(
                f"{type(model).__name__}.taps must be a sequence of module names, got {declared!r}"
            )
        return list(declared)
    if isinstance(model, nn.Sequential):
        names = [name for name, _ in model.named_children()]
        if names:
            return names
    best: tuple[int, str] | None = None
    for name, module in modules.items():
        if name and isinstance(module, nn.ModuleList | nn.Sequential):
            n = len(module)
            if n >= 2 and (best is None or n > best[0]):
                best = (n, name)
    if best is None:
        raise TapError(
            f"cannot infer taps for {type(model).__name__}: it has no `taps` attribute, is not an "
            "nn.Sequential and holds no ModuleList/Sequential of at least two blocks; pass "
            "taps=[module names] or a predicate (name, module) -> bool"
        )
    prefix = best[1]
    return [f"{prefix}.{child}" for child, _ in modules[prefix].named_children()]


def first_tensor(value: Any) -> Tensor:
    """The tensor a module returns, or the first tensor of a tuple, list or mapping output.

    Example:
        >>> import torch
        >>> first_tensor({"loss": None, "last_hidden_state": torch.ones(1)})
        tensor([1.])
    """
    if isinstance(value, Tensor):
        return value
    items = value.values() if isinstance(value, Mapping) else value
    if isinstance(value, tuple | list | Mapping):
        for item in items:
            if isinstance(item, Tensor):
                return item
    raise TapError(f"a tap module returned {type(value).__name__}, not a tensor")


def replace_first(value: Any, new: Tensor) -> Any:
    """``value`` with its tensor (the first of a tuple, list or mapping) replaced by ``new``.

    A mapping is copied (a ``ModelOutput`` stays one) and the copy's first tensor replaced.
    """
    if isinstance(value, Tensor):
        return new
    if isinstance(value, Mapping):
        key = next(k for k, v in value.items() if isinstance(v, Tensor))
        out = copy.copy(value)
        out[key] = new
        return out
    items = list(value)
    for i, item in enumerate(items):
        if isinstance(item, Tensor):
            items[i] = new
            break
    return type(value)(items) if isinstance(value, tuple) else items


def call_model(model: nn.Module, inputs: ModelInputs) -> Any:
    """``model(x)``, ``model(*args)`` for a tuple or ``model(**kwargs)`` for a mapping.

    Example:
        >>> import torch
        >>> call_model(nn.Bilinear(2, 2, 1, bias=False), (torch.ones(1, 2), torch.ones(1, 2))).shape
        torch.Size([1, 1])
    """
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def _tensors(inputs: ModelInputs) -> list[Tensor]:
    if isinstance(inputs, Tensor):
        return [inputs]
    values = inputs.values() if isinstance(inputs, Mapping) else inputs
    return [v for v in values if isinstance(v, Tensor)]


def batch_size(inputs: ModelInputs) -> int:
    """The number of examples: the leading size of the (first) tensor of ``inputs``.

    Example:
        >>> import torch
        >>> batch_size({"input_ids": torch.zeros(3, 5, dtype=torch.long), "use_cache": False})
        3
    """
    tensors = _tensors(inputs)
    if not tensors or tensors[0].ndim == 0:
        raise TapError("the inputs hold no tensor with a batch axis")
    return int(tensors[0].shape[0])


def take_examples(inputs: ModelInputs, start: int, stop: int) -> ModelInputs:
    """Examples ``start:stop`` of ``inputs``: every tensor sliced on its batch axis.

    Values that are not tensors (``use_cache=False``) are passed as they are.

    Example:
        >>> import torch
        >>> take_examples((torch.arange(4), 2), 1, 3)
        (tensor([1, 2]), 2)
    """
    if isinstance(inputs, Tensor):
        return inputs[start:stop]
    if isinstance(inputs, Mapping):
        return {k: v[start:stop] if isinstance(v, Tensor) else v for k, v in inputs.items()}
    return tuple(v[start:stop] if isinstance(v, Tensor) else v for v in inputs)


@dataclass
class TapCall:
    """What one forward pass with taps produced.

    Attributes:
        output: the model output (``None`` if the forward stopped early).
        outputs: tap outputs in tap order (cloned; ``None`` for taps after an early stop).
        inputs: the first positional input of each tap module (if requested).
        args: the remaining positional and keyword arguments of each tap module call (if inputs
            were requested), for re-running the module alone.
    """

    output: Any
    outputs: list[Tensor | None]
    inputs: list[Tensor | None] = field(default_factory=list)
    args: list[tuple[tuple, dict] | None] = field(default_factory=list)


def run_with_taps(
    model: nn.Module,
    tap_modules: Sequence[nn.Module],
    x: ModelInputs,
    *,
    stop_after: int | None = None,
    replace: dict[int, Tensor | Callable[[Tensor], Tensor]] | None = None,
    add: dict[int, Tensor] | None = None,
    capture_inputs: bool = False,
    clone: bool = True,
) -> TapCall:
    """Call ``model(x)`` with hooks on ``tap_modules``; return the captures (``docs/probes.md §2``).

    Safe inside ``torch.func`` transforms when called from the transformed function: the capture
    lists are created here, per call, and returned.

    Args:
        model: the module to call.
        tap_modules: the tap modules, in tap order.
        x: the model input: a tensor, a tuple of positional or a dict of keyword inputs.
        stop_after: index of the last tap needed; the forward stops right after it.
        replace: ``{tap index: tensor}`` — that tap's output is replaced (the rest of the forward
            sees the given tensor, reshaped to the output's shape); a callable instead of a
            tensor maps the output to its replacement.
        add: ``{tap index: tensor}`` — the tensor is added to that tap's output (zero
            perturbations for gradient signals).
        capture_inputs: also capture each tap module's first positional input and its other
            arguments.
        clone: clone captured tensors (needed whenever the forward may modify them in place).
    """
    n = len(tap_modules)
    outputs: list[Tensor | None] = [None] * n
    inputs: list[Tensor | None] = [None] * n
    args_out: list[tuple[tuple, dict] | None] = [None] * n
    seen = [0] * n
    handles = []
    replace = replace or {}
    add = add or {}

    def make_hook(i: int):
        def hook(module, args, kwargs, out):
            seen[i] += 1
            if seen[i] > 1:
                raise TapError(
                    f"tap #{i} ({type(module).__name__}) ran more than once in one forward pass; "
                    "shared modules cannot be taps (tap each call site instead)"
                )
            h = first_tensor(out)
            if i in add:
                h = h + add[i]
                out = replace_first(out, h)
            if i in replace:
                new = replace[i]
                h = new(h) if callable(new) else new.reshape(h.shape)
                h = h.clone() if clone else h
                out = replace_first(out, h)
            outputs[i] = h.clone() if clone else h
            if capture_inputs:
                if not args or not isinstance(args[0], Tensor):
                    raise TapError(
                        f"tap #{i} ({type(module).__name__}) has no positional tensor input"
                    )
                inputs[i] = args[0].clone() if clone else args[0]
                args_out[i] = (tuple(args[1:]), dict(kwargs))
            if stop_after is not None and i == stop_after:
                raise _StopForward
            return out if (i in add or i in replace) else None

        return hook

    result = None
    try:
        for i, module in enumerate(tap_modules):
            handles.append(module.register_forward_hook(make_hook(i), with_kwargs=True))
        try:
            result = call_model(model, x)
        except _StopForward:
            result = None
    finally:
        for handle in handles:
            handle.remove()
    if stop_after is None:
        missing = [i for i in range(n) if seen[i] == 0]
        if missing:
            raise TapError(
                f"tap(s) #{', #'.join(map(str, missing))} never ran in the forward pass; every "
                "tap must be a module the model calls exactly once"
            )
    return TapCall(output=result, outputs=outputs, inputs=inputs, args=args_out)
