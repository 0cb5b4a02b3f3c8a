"""Find a model's residual branches: the weight layers on the branch operand of each residual
addition, and which of them is the branch's last layer (``docs/idinit.md`` §8).

Sources, first match wins: (1) ``branches=``; (2) ``branch_last=``, names or fnmatch globs of
the last layers, whose branch is completed by the weight layers that are direct children of the
same parent, registered before it and after any earlier last layer of that parent (``norm`` and
``gate`` stay ``None``); (3) ``model.residual_branches()``; (4) a ``torch.fx`` trace, which keeps
``nn.Transformer*`` modules as leaves described by presets, because their fast-path checks branch
on tensor values; (5) if tracing fails, presets for torchvision ResNet blocks,
``nn.TransformerEncoderLayer``/``DecoderLayer`` and timm ViT blocks, else
:class:`BranchDiscoveryError`. Every result is validated (names exist, no layer on two branches).

**Weight layers** are ``nn.Linear``, ``nn.Conv1d/2d/3d`` and ``nn.MultiheadAttention``, not
``nn.Embedding``. An ``nn.MultiheadAttention`` named ``attn`` is two layers: ``"attn"`` stands for
its input projections (``in_proj_weight`` or ``q/k/v_proj_weight``, bare parameters on the module)
and ``"attn.out_proj"`` for its output projection, so an attention branch is
``("attn", "attn.out_proj")``. ``layers`` is in execution order except that the last layer always
comes last: a side path gating the branch output (squeeze-excitation) runs after it but is not last.

This module holds :func:`find_branches`, sources (1)-(3) and (5) and the validation; source (4),
the ``nn.Transformer*`` leaf presets, the layer types, :func:`weight_layers` and the errors live in
:mod:`isokit.init.branch_trace` and are re-exported here.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import warnings
from collections.abc import Iterable, Sequence

from torch import nn

from isokit.init.branch_trace import (
    _HOWTO,
    _NORM_TYPES,
    _PRESET_LEAVES,
    BranchDiscoveryError,
    BranchDiscoveryWarning,
    _expand,
    _FxBranches,
    _join,
    _leaf_presets,
    _trace,
    weight_layers,
)
from isokit.structure import ResidualBranch

__all__ = ["BranchDiscoveryError", "BranchDiscoveryWarning", "find_branches", "weight_layers"]


def find_branches(
    model: nn.Module,
    branches: Iterable[ResidualBranch | Sequence] | None = None,
    *,
    branch_last: str | Iterable[str] | None = None,
    example_inputs: object = None,
) -> list[ResidualBranch]:
    """Return the residual branches of ``model`` (see the module docstring for the sources).

    Raises:
        BranchDiscoveryError: names that do not exist, ambiguous structure, or a model that can
            be neither traced nor matched by a preset.
    """
    if branches is not None and branch_last is not None:
        raise BranchDiscoveryError("pass either branches= or branch_last=, not both")
    if branches is not None:
        return _validate(model, [_as_branch(b, "branches=") for b in branches], "branches=")
    if branch_last is not None:
        patterns = _last_patterns(branch_last)
        return _validate(model, _from_last(model, patterns, "branch_last="), "branch_last=")
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
    try:
        graph = _trace(model)
    except Exception as err:  # whatever stops the tracer, presets are the fallback
        reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        found = _presets(model)
        if not found:
            raise BranchDiscoveryError(
                f"cannot find the residual branches of {type(model).__name__}: torch.fx tracing "
                f"failed ({reason}) and no preset (torchvision ResNet, nn.Transformer layers, "
                f"timm ViT) matches its module names. {_HOWTO}"
            ) from err
        warnings.warn(
            f"torch.fx could not trace {type(model).__name__} ({reason}); using name presets, "
            f"which found {len(found)} branches. Weight layers outside them count as main stem.",
            BranchDiscoveryWarning,
            stacklevel=2,
        )
        return _validate(model, found, "presets")
    return _validate(model, _FxBranches(model, graph).find(), "torch.fx discovery")


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
                        "layer (Linear, Conv1d/2d/3d, MultiheadAttention); list only weight layers"
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
                    f"{source}: layer {name!r} {kind}: {other.layers} and {b.layers}. {_HOWTO}"
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


# --------------------------------------------------------------------------- presets


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _from_last(model: nn.Module, patterns: list[str], source: str) -> list[ResidualBranch]:
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
    lasts.sort(key=order.__getitem__)
    out = []
    for last in lasts:
        parent = _parent(last)
        siblings = [n for n in layers if n != parent and _parent(n) == parent]
        k = siblings.index(last)
        start = max((i + 1 for i, n in enumerate(siblings[:k]) if n in lasts), default=0)
        # A sibling that contains another branch's last layer (an attention module) is that
        # branch's, not this one's.
        before = [
            n for n in siblings[start:k] if not any(other.startswith(n + ".") for other in lasts)
        ]
        expanded = [x for n in before for x in _expand(modules, n)]
        head = [parent] if isinstance(modules.get(parent), nn.MultiheadAttention) else []
        out.append(ResidualBranch(layers=(*head, *expanded, last)))
    return out


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
                bn = modules.get(_join(name, f"bn{len(convs)}"))
                norm = _join(name, f"bn{len(convs)}") if isinstance(bn, _NORM_TYPES) else None
                found.append(ResidualBranch(layers=tuple(convs), norm=norm))
        elif _VIT_BLOCK.search(name):
            vit_lasts += [
                n
                for n in (_join(name, "attn.proj"), _join(name, "mlp.fc2"))
                if isinstance(modules.get(n), nn.Linear)
            ]
    return found + (_from_last(model, vit_lasts, "preset") if vit_lasts else [])
