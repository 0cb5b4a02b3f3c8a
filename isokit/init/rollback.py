"""Undo a scheme: put a model back exactly as it was, values and structure.

Schemes change models in place, and some change their structure (Fixup, SkipInit, ReZero and
T-Fixup add scalar parameters and forward hooks, norm removal swaps submodules). A
:class:`Checkpoint` taken before the scheme records every module's attribute dictionary
(parameters, buffers, submodules, hook dictionaries and plain attributes such as the
``_isokit_post_hook`` marker) and a copy of every tensor's values; :meth:`Checkpoint.restore`
returns each module to that record. Containers are restored in place, because hook handles hold
weak references to the very dictionaries they were registered in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Checkpoint", "changed_non_finite"]


def _shallow(value: object) -> object:
    """A shallow copy of a container attribute (dict, OrderedDict, set), else the value itself."""
    if isinstance(value, dict | set):
        return value.copy()
    return value


@dataclass(frozen=True)
class _ModuleRecord:
    module: nn.Module
    attrs: dict[str, object]  # the name → value of module.__dict__, containers copied
    containers: dict[str, object]  # the container objects themselves, to restore in place


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`isokit.init.apply` needs to undo a scheme.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> checkpoint = Checkpoint.take(model)
        >>> model[0] = nn.Identity()
        >>> checkpoint.restore()
        >>> type(model[0]).__name__
        'Linear'
    """

    records: tuple[_ModuleRecord, ...]
    values: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (tensor, a copy of its values)

    @classmethod
    def take(cls, model: nn.Module) -> Checkpoint:
        records = []
        tensors: dict[int, torch.Tensor] = {}
        for module in model.modules():
            attrs = {k: _shallow(v) for k, v in vars(module).items()}
            containers = {k: v for k, v in vars(module).items() if isinstance(v, dict | set)}
            records.append(_ModuleRecord(module=module, attrs=attrs, containers=containers))
            for t in (*module._parameters.values(), *module._buffers.values()):
                if t is not None:
                    tensors.setdefault(id(t), t)
        values = tuple((t, t.detach().clone()) for t in tensors.values())
        return cls(records=tuple(records), values=values)

    def restore(self) -> None:
        """Put every recorded module and tensor back as it was when the checkpoint was taken."""
        for record in self.records:
            current = vars(record.module)
            for key in [k for k in current if k not in record.attrs]:
                del current[key]
            for key, value in record.attrs.items():
                container = record.containers.get(key)
                if container is not None:
                    container.clear()
                    container.update(value)
                    current[key] = container
                else:
                    current[key] = value
        with torch.no_grad():
            for tensor, saved in self.values:
                if tensor.shape == saved.shape and tensor.dtype == saved.dtype:
                    tensor.copy_(saved)
                else:
                    tensor.data = saved

    def tensors(self) -> dict[int, torch.Tensor]:
        """The saved copy of each recorded tensor, by the tensor's ``id``."""
        return {id(t): saved for t, saved in self.values}


def changed_non_finite(model: nn.Module, checkpoint: Checkpoint) -> list[str]:
    """Names of parameters and buffers holding NaN or ±inf that did not hold exactly that before.

    A value the model already had is not the scheme's doing (a scheme that keeps a layer keeps
    whatever it holds); a new tensor or a changed one must be finite.

    Example:
        >>> from torch import nn
        >>> model = nn.Linear(2, 2)
        >>> checkpoint = Checkpoint.take(model)
        >>> _ = model.weight.data.fill_(float("nan"))
        >>> changed_non_finite(model, checkpoint)
        ['weight']
    """
    saved = checkpoint.tensors()
    bad = []
    named = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in named:
        if not tensor.is_floating_point() and not tensor.is_complex():
            continue
        if bool(torch.isfinite(tensor).all()):
            continue
        if not _same(saved.get(id(tensor)), tensor):
            bad.append(name)
    return bad


def _same(before: torch.Tensor | None, after: torch.Tensor) -> bool:
    """Whether ``after`` holds exactly ``before``'s values, NaN counting as equal to NaN."""
    if before is None or before.shape != after.shape or before.dtype != after.dtype:
        return False
    nan = before.isnan()
    return torch.equal(nan, after.isnan()) and torch.equal(before[~nan], after[~nan])
