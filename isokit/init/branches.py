"""Find a model's residual branches: the weight layers on the branch operand of each residual
addition, and which of them is the branch's last layer (``docs/idinit.md`` §8).

Sources, first match wins: (1) ``branches=``; (2) ``branch_last=``, names or fnmatch globs of
the last layers (:func:`_from_last`); (3) ``model.residual_branches()``; then three routes through
the model's graph: (4) with ``example_inputs``, the graph ``torch.export`` captures
(:mod:`isokit.init.branch_export`); (5) a ``torch.fx`` trace of the model, or where that fails of
its submodules, block by block (:mod:`isokit.init.branch_blocks`), with ``nn.Transformer*`` modules
as leaves described by presets; (6) if neither finds a branch, presets for torchvision ResNet
blocks, ``nn.TransformerEncoderLayer``/``DecoderLayer`` and timm ViT blocks, else
:class:`BranchDiscoveryError` naming each route and why it failed. Every result is validated
(names exist, no layer on two branches).

**Weight layers** are the modules :func:`isokit.init.layers.is_weight_layer` accepts (Linear,
HF ``Conv1D``, Conv1d/2d/3d, MultiheadAttention), not ``nn.Embedding``. An
``nn.MultiheadAttention`` named ``attn`` is two layers: ``"attn"`` stands for its input
projections (``in_proj_weight`` or ``q/k/v_proj_weight``, bare parameters on the module) and
``"attn.out_proj"`` for its output projection, so an attention branch is
``("attn", "attn.out_proj")``. ``layers`` is in execution order except that the last layer always
comes last: a side path gating the branch output (squeeze-excitation) runs after it but is not
last.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import re
import warnings
from collections.abc import Iterable, Sequence

from torch import nn

from isokit.init.branch_blocks import partly_traced, reason, trace_blocks, untraced_layers
from isokit.init.branch_errors import (
    EXAMPLE_INPUTS,
    HOWTO,
    BranchDiscoveryError,
    BranchDiscoveryWarning,
)
from isokit.init.branch_export import export_branches
from isokit.init.branch_trace import _PRESET_LEAVES, _join, _leaf_presets, weight_layers
from isokit.init.layers import is_norm
from isokit.structure import ResidualBranch

__all__ = ["BranchDiscoveryError", "BranchDiscoveryWarning", "find_branches", "weight_layers"]

_PRESET_NAMES = "torchvision ResNet, nn.Transformer layers, timm ViT"


def find_branches(
    model: nn.Module,
    branches: Iterable[ResidualBranch | Sequence] | None = None,
    *,
    branch_last: str | Iterable[str] | None = None,
    example_inputs: object = None,
) -> list[ResidualBranch]:
    """Return the residual branches of ``model`` (see the module docstring for the sources).

    Args:
        model: any ``nn.Module``; it is left as it was (values, buffers, modes).
        branches: explicit branches (:class:`ResidualBranch` records, sequences of layer names,
            or ``(layers, gate)`` pairs).
        branch_last: names or fnmatch globs of each branch's last layer.
        example_inputs: what ``model``'s forward takes, to capture its real graph: a tensor, a
            tuple of positional arguments or a dict of keyword arguments.

    Raises:
        BranchDiscoveryError: names that do not exist, ambiguous structure, or a model that none
            of the routes (export, fx, presets) understands.

    Example:
        >>> from torch import nn
        >>> from isokit.models import ResNet
        >>> [b.layers for b in find_branches(ResNet(depth=8, width=4))][0]
        ('layer1.0.conv1', 'layer1.0.conv2')
    """
    if branches is not None and branch_last is not None:
        raise BranchDiscoveryError("pass either branches= or branch_last=, not both")
    if branches is not None:
        return _validate(model, [_as_branch(b, "branches=") for b in branches], "branches=")
    if branch_last is not None:
        patterns = _last_patterns(branch_last)
        found = _from_last(model, patterns, "branch_last=", example_inputs)
        return _validate(model, found, "branch_last=")
    declared = getattr(model, "residual_branches", None)
    if callable(declared):
        source = f"{type(model).__name__}.residual_branches()"
        result = declared()
        if not isinstance(result, Iterable):
            raise BranchDiscoveryError(
                f"{source} returned {result!r}; return a list of "
                "ResidualBranch records ([] when the model has none)"
            )
        return _validate(model, [_as_branch(b, source) for b in result], source)
    if isinstance(model, _PRESET_LEAVES):
        return _validate(model, _leaf_presets(model, ""), "preset")
    if not weight_layers(model):
        return []
    return _discover(model, example_inputs)


# --------------------------------------------------------------------------- the three routes


def _discover(model: nn.Module, example_inputs: object) -> list[ResidualBranch]:
    name = type(model).__name__
    failed: list[str] = []  # one line per route that failed, for the warning or the error
    if example_inputs is not None:
        try:
            found = export_branches(model, example_inputs)
        except BranchDiscoveryError:
            raise
        except Exception as err:  # whatever stops the capture, fx and presets are tried
            failed.append(
                f"torch.export could not capture {name} with example_inputs ({reason(err)})"
            )
        else:
            return _validate(model, found, "torch.export discovery")
    trace = trace_blocks(model)
    if trace.whole:
        _warn_fallback(failed, "torch.fx traced it")
        return _validate(model, trace.branches, "torch.fx discovery")
    root = trace.failed[0][1]
    partial = partly_traced(model, trace) if trace.branches else []
    if partial:
        inside = [n for n in untraced_layers(model, trace) if n.startswith(partial[-1] + ".")]
        failed.append(
            f"torch.fx could not trace {name} ({root}), and block by block it read {partial[-1]} "
            f"only in part: its weight layers {inside[:3]}{'...' if len(inside) > 3 else ''} "
            "sit in no traced module, so its branches would be incomplete"
        )
    elif trace.branches:
        stem = untraced_layers(model, trace)
        _warn_fallback(
            [*failed, f"torch.fx could not trace {name} ({root})"],
            f"traced block by block instead, {len(trace.traced)} submodules found "
            f"{len(trace.branches)} branches; the {len(stem)} weight layers outside them "
            f"({stem[:4]}{'...' if len(stem) > 4 else ''}) count as main stem",
        )
        return _validate(model, trace.branches, "block-by-block torch.fx discovery")
    else:
        failed.append(
            f"torch.fx could not trace {name} ({root}) and block by block, the "
            f"{len(trace.traced)} submodules it could trace hold no residual addition"
        )
    found = _presets(model)
    if found:
        _warn_fallback(
            failed,
            f"using name presets, which found {len(found)} branches; weight layers outside "
            "them count as main stem",
        )
        return _validate(model, found, "presets")
    if example_inputs is None:
        failed.insert(0, "no example_inputs were given, so torch.export was not tried")
    failed.append(f"no preset ({_PRESET_NAMES}) matches its module names")
    routes = "; ".join(f"({i}) {line}" for i, line in enumerate(failed, 1))
    raise BranchDiscoveryError(
        f"cannot find the residual branches of {name}: {routes}. {EXAMPLE_INPUTS} {HOWTO}"
    )


def _warn_fallback(failed: list[str], outcome: str) -> None:
    if failed:
        warnings.warn(f"{'; '.join(failed)}; {outcome}.", BranchDiscoveryWarning, stacklevel=4)


def _graph_branches(model: nn.Module, example_inputs: object) -> list[ResidualBranch]:
    """What the routes find, quietly; [] where none does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BranchDiscoveryWarning)
        try:
            if example_inputs is not None:
                with contextlib.suppress(Exception):
                    return export_branches(model, example_inputs)  # else fx is tried
            return trace_blocks(model).branches
        except BranchDiscoveryError:
            return []


# --------------------------------------------------------------------------- declared branches


def _last_patterns(branch_last: object) -> list[str]:
    if isinstance(branch_last, str):
        return [branch_last]
    patterns = list(branch_last) if isinstance(branch_last, Iterable) else None
    if patterns is None or not all(isinstance(p, str) for p in patterns):
        raise BranchDiscoveryError(
            f"branch_last= must be a layer name or glob, or a list of them, got {branch_last!r}"
        )
    return patterns


def _as_branch(item: object, source: str) -> ResidualBranch:
    if isinstance(item, ResidualBranch):
        return item
    parts = [item] if isinstance(item, str) else list(item) if isinstance(item, Sequence) else []
    if parts and all(isinstance(p, str) for p in parts):
        return ResidualBranch(layers=tuple(parts))
    if (
        len(parts) == 2
        and isinstance(parts[0], Sequence)
        and not isinstance(parts[0], str)
        and parts[0]
        and all(isinstance(p, str) for p in parts[0])
        and (parts[1] is None or isinstance(parts[1], str))
    ):
        return ResidualBranch(layers=tuple(parts[0]), gate=parts[1])
    raise BranchDiscoveryError(
        f"{source}: cannot read {item!r} as a residual branch; give a ResidualBranch, a sequence "
        "of weight-layer names, or a (layers, gate) pair with at least one layer"
    )


def _unknown(source: str, what: str, name: str, known: Sequence[str]) -> BranchDiscoveryError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f"close matches: {close}" if close else f"known {what}s: {list(known)[:12]}"
    return BranchDiscoveryError(f"{source}: no {what} named {name!r} in the model; {hint}")


def _validate(model: nn.Module, found: list[ResidualBranch], source: str) -> list[ResidualBranch]:
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    layers = weight_layers(model)
    known = set(layers)
    unique = list(dict.fromkeys(found))  # a block called twice yields the same record twice
    role: dict[str, tuple[ResidualBranch, bool]] = {}
    for b in unique:
        for i, name in enumerate(b.layers):
            if name not in known:
                if name in modules:
                    raise BranchDiscoveryError(
                        f"{source}: {name!r} is a {type(modules[name]).__name__}, not a weight "
                        "layer (Linear, HF Conv1D, Conv1d/2d/3d, MultiheadAttention); list only "
                        "weight layers"
                    )
                raise _unknown(source, "weight layer", name, layers)
            last = i == len(b.layers) - 1
            if name in role:
                other, other_last = role[name]
                kind = (
                    "is last for one branch and non-last for another"
                    if last != other_last
                    else "is shared by two branches"
                )
                raise BranchDiscoveryError(
                    f"{source}: layer {name!r} {kind}: {other.layers} and {b.layers}. {HOWTO}"
                )
            role[name] = (b, last)
        if b.gate is not None:
            if b.gate not in params:
                raise _unknown(source, "parameter", b.gate, list(params))
            if params[b.gate].numel() != 1:
                raise BranchDiscoveryError(
                    f"{source}: gate {b.gate!r} has {params[b.gate].numel()} elements; a gate must "
                    "be a scalar parameter (use gate=None for per-channel scales)"
                )
        if b.norm is not None and b.norm not in modules:
            raise _unknown(source, "module", b.norm, [n for n in modules if n])
    return unique


# --------------------------------------------------------------------------- branch_last


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _inside(name: str, block: str) -> bool:
    return not block or name == block or name.startswith(block + ".")


def _resolve_lasts(model: nn.Module, patterns: list[str], source: str) -> list[str]:
    layers = weight_layers(model)
    modules = dict(model.named_modules())
    lasts: list[str] = []
    for pattern in patterns:
        hits = [n for n in layers if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise _unknown(source, "weight layer", pattern, layers)
        for hit in hits:
            if isinstance(modules[hit], nn.MultiheadAttention):
                hit = f"{hit}.out_proj"  # naming an attention module means its output projection
            if hit not in lasts:
                lasts.append(hit)
    order = {n: i for i, n in enumerate(layers)}
    return sorted(lasts, key=order.__getitem__)


def _from_last(
    model: nn.Module, patterns: list[str], source: str, example_inputs: object = None
) -> list[ResidualBranch]:
    """The complete branch of each named last layer: the branch the graph routes find for it
    (with its norm and gate) where they find one ending there, else :func:`_tree_branch`."""
    lasts = _resolve_lasts(model, patterns, source)
    wanted = set(lasts)
    by_last = {
        b.last: b
        for b in _graph_branches(model, example_inputs)
        if not wanted.intersection(b.layers[:-1])  # the caller splits this branch differently
    }
    return [by_last.get(last) or _tree_branch(model, last, lasts) for last in lasts]


def _tree_branch(model: nn.Module, last: str, lasts: list[str]) -> ResidualBranch:
    """The branch ending at ``last`` read from the module tree: the weight layers registered
    before it in the smallest enclosing block that has any, after the block's previous last
    layer. The block is ``last``'s parent, or the nearest ancestor below the model when the
    parent holds no other layer (BERT's ``attention.output.dense`` completes with
    ``attention.self.query/key/value``)."""
    layers = weight_layers(model)
    k = layers.index(last)
    block = _parent(last)
    while True:
        before = [n for n in layers[:k] if _inside(n, block)]
        start = max((i + 1 for i, n in enumerate(before) if n in lasts), default=0)
        # A layer that contains another branch's last layer (an attention module whose
        # out_proj is named) is that branch's, not this one's.
        head = [
            n for n in before[start:] if not any(o != last and o.startswith(n + ".") for o in lasts)
        ]
        if head or not block or not _parent(block):
            return ResidualBranch(layers=(*head, last))
        block = _parent(block)


# --------------------------------------------------------------------------- presets


_RESNET_BLOCK = re.compile(r"(?:^|\.)layer\d+\.\d+$")
_VIT_BLOCK = re.compile(r"(?:^|\.)blocks\.\d+$")


def _presets(model: nn.Module) -> list[ResidualBranch]:
    modules = dict(model.named_modules())
    found = _leaf_presets(model, "")
    vit_lasts = []
    for name in modules:
        if _RESNET_BLOCK.search(name):
            # torchvision BasicBlock (conv1, conv2) or Bottleneck (conv1..conv3); the
            # `downsample` shortcut is main stem.
            convs = [_join(name, f"conv{i}") for i in (1, 2, 3)]
            convs = [c for c in convs if isinstance(modules.get(c), nn.Conv2d)]
            if len(convs) >= 2:
                bn = _join(name, f"bn{len(convs)}")
                norm = bn if bn in modules and is_norm(modules[bn]) else None
                found.append(ResidualBranch(layers=tuple(convs), norm=norm))
        elif _VIT_BLOCK.search(name):
            vit_lasts += [
                n
                for n in (_join(name, "attn.proj"), _join(name, "mlp.fc2"))
                if isinstance(modules.get(n), nn.Linear)
            ]
    return found + [_tree_branch(model, last, vit_lasts) for last in vit_lasts]
