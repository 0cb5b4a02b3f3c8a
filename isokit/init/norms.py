"""Normalization layers: the one predicate that branch discovery, norm reset and norm removal use.

A module is a norm when

1. it is one of torch's normalization classes (BatchNorm*, InstanceNorm*, LayerNorm, GroupNorm,
   RMSNorm) or a subclass of one, or a class registered with :func:`register_norm`; or
2. it looks like one and behaves like one: its class name ends in ``Norm`` (``LayerNorm``,
   ``RMSNorm``, ``T5LayerNorm``, ``LlamaRMSNorm``, …, optionally followed by ``1d``/``2d``/``3d``),
   its own parameters are a 1-D ``weight`` and/or ``bias`` of one size d and it has no
   parametric children, and its output on a batch of shape ``(4, d)`` does not change when the
   input is scaled by 8 (checked once per class, on a copy, bypassing hooks; a class whose
   forward does not accept that batch is taken at its name).

``nn.LocalResponseNorm`` is not a norm here: it has no parameters to reset, its output depends
on the input's scale, and the norm-free schemes' references keep it as part of the architecture.

Example:
    >>> from torch import nn
    >>> class MyRMSNorm(nn.Module):
    ...     def __init__(self, d):
    ...         super().__init__()
    ...         self.weight = nn.Parameter(torch.ones(d))
    ...     def forward(self, x):
    ...         return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    >>> is_norm(MyRMSNorm(8)), is_norm(nn.Linear(8, 8)), is_norm(nn.LayerNorm(8))
    (True, False, True)
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

__all__ = ["is_norm", "norm_eps", "norm_types", "register_norm", "scale_offset"]

_TORCH_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_REGISTERED: list[type[nn.Module]] = []
_NAME = re.compile(r"Norm(?:[123]d)?$")
# Behaviour verdicts per class: a forward on a copy is cheap, but discovery asks for every module.
_BEHAVES: dict[type, bool] = {}


def register_norm(cls: type[nn.Module]) -> type[nn.Module]:
    """Declare ``cls`` (and its subclasses) a normalization layer; returns ``cls`` (a decorator).

    Use it for a norm that neither subclasses a torch norm nor is named ``...Norm``; norms are
    reset to γ = 1, β = 0 by the tensor schemes and IDInit, and removed by Fixup, SkipInit,
    ReZero and T-Fixup.

    Example:
        >>> @register_norm
        ... class ScaleNormalizer(nn.Module):
        ...     def forward(self, x):
        ...         return x / x.norm(dim=-1, keepdim=True)
        >>> is_norm(ScaleNormalizer())
        True
        >>> _REGISTERED.remove(ScaleNormalizer)
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_norm needs an nn.Module subclass, got {cls!r}")
    if cls not in _REGISTERED:
        _REGISTERED.append(cls)
    return cls


def norm_types() -> tuple[type[nn.Module], ...]:
    """torch's normalization classes and the registered ones (not those recognised by name)."""
    return (*_TORCH_NORMS, *_REGISTERED)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer (see the module docstring for the rule)."""
    if isinstance(module, norm_types()):
        return True
    if not _NAME.search(type(module).__name__) or not _affine_shape(module):
        return False
    cls = type(module)
    if cls not in _BEHAVES:
        _BEHAVES[cls] = _scale_invariant(module)
    return _BEHAVES[cls]


def norm_eps(module: nn.Module, default: float = 1e-5) -> float:
    """The norm's ε: ``eps``, or ``variance_epsilon`` (T5, Llama), else ``default``."""
    for attr in ("eps", "variance_epsilon"):
        value = getattr(module, attr, None)
        if isinstance(value, int | float):
            return float(value)
    return default


def _affine_shape(module: nn.Module) -> bool:
    """Own parameters: a 1-D ``weight`` and/or ``bias`` of one size; no parametric children."""
    params = {n: p for n, p in module._parameters.items() if p is not None}
    if not params or set(params) - {"weight", "bias"}:
        return False
    if (
        len({tuple(p.shape) for p in params.values()}) != 1
        or next(iter(params.values())).dim() != 1
    ):
        return False
    return not any(True for c in module.children() for _ in c.parameters())


def _probe_copy(module: nn.Module) -> nn.Module:
    """A shallow copy of a parameter-only module with float32 copies of its own tensors, in
    train mode (a batch norm then uses the probe's statistics and updates only its copies).

    Not ``deepcopy``: hooks and attributes may hold the whole model; the copy's forward is
    called directly, so its hooks do not run.
    """
    probe = copy.copy(module)
    probe._parameters = {
        k: None if v is None else nn.Parameter(v.detach().float().clone())
        for k, v in module._parameters.items()
    }
    probe._buffers = {
        k: None if v is None else v.detach().clone().float() if v.is_floating_point() else v.clone()
        for k, v in module._buffers.items()
    }
    probe.training = True
    return probe


def _scale_invariant(module: nn.Module) -> bool:
    """The output on x and on 8·x agree (False if it does not; True if the forward refuses x)."""
    p = next(module.parameters())
    if p.device.type == "meta":
        return True
    x = torch.randn(4, p.shape[0], generator=torch.Generator().manual_seed(0)).to(p.device)
    try:
        probe = _probe_copy(module)
        with torch.no_grad():
            y1, y8 = probe.forward(x), probe.forward(8 * x)
    except Exception:  # a forward that wants another layout (e.g. channels-first): trust the name
        return True
    if not isinstance(y1, torch.Tensor) or y1.shape != x.shape:
        return True
    return bool(torch.allclose(y1, y8, rtol=1e-3, atol=1e-5 * (1 + float(y1.abs().max()))))


# Scale offsets per class, probed once, like the behaviour verdicts.
_OFFSETS: dict[type, float] = {}


def scale_offset(module: nn.Module) -> float:
    """What a norm's ``weight`` stores below its scale γ: 0 for ``γ·x̂`` norms, 1 for norms that
    compute ``(1 + weight)·x̂`` (Gemma's RMSNorm and its copies), whose unit scale is weight 0.

    torch's and registered classes are ``γ·x̂``; another class is probed once on a copy: with
    weight (and bias) 0, an output of unit RMS per row means the offset form.

    Example:
        >>> class OffsetRMSNorm(nn.Module):
        ...     def __init__(self, d):
        ...         super().__init__()
        ...         self.weight = nn.Parameter(torch.zeros(d))
        ...     def forward(self, x):
        ...         return (1 + self.weight) * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True))
        >>> scale_offset(OffsetRMSNorm(8)), scale_offset(nn.LayerNorm(8))
        (1.0, 0.0)
    """
    weight = module._parameters.get("weight")
    if isinstance(module, norm_types()) or weight is None or weight.dim() != 1:
        return 0.0
    cls = type(module)
    if cls not in _OFFSETS:
        _OFFSETS[cls] = _probe_offset(module, weight)
    return _OFFSETS[cls]


def _probe_offset(module: nn.Module, weight: torch.Tensor) -> float:
    if weight.device.type == "meta":
        return 0.0
    x = torch.randn(4, weight.shape[0], generator=torch.Generator().manual_seed(0))
    try:
        probe = _probe_copy(module)
        with torch.no_grad():
            for p in probe.parameters(recurse=False):
                p.zero_()
            y = probe.forward(x.to(weight.device))
    except Exception:  # a forward that wants another layout: assume the usual γ·x̂
        return 0.0
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return 0.0
    rms = y.float().pow(2).mean(-1).sqrt()
    return 1.0 if torch.allclose(rms, torch.ones_like(rms), atol=1e-2) else 0.0
