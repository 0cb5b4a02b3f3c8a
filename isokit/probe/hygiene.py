"""Numerical hygiene (``docs/probes.md §6``): a private model copy and clean global flags.

:func:`probe_context` yields a deep copy of the model, converted to the probe dtype (float64 by
default), in eval mode, with ``requires_grad`` off on every parameter, and sets for its duration:

- **TF32 off.** With PyTorch's newer precision API (``torch.backends.cuda.matmul.fp32_precision``
  and ``torch.backends.cudnn.conv.fp32_precision``) both are set to ``"ieee"``; on older
  versions the legacy flags ``torch.backends.cuda.matmul.allow_tf32`` and
  ``torch.backends.cudnn.allow_tf32`` are set to ``False`` and
  ``torch.set_float32_matmul_precision("highest")``. The two APIs are never mixed.
- **cuDNN** ``benchmark = False`` (no autotuning that depends on timing) and
  ``deterministic = True``.
- **Attention fast paths off.** ``torch.backends.mha.set_fastpath_enabled(False)`` (the fused
  ``nn.TransformerEncoderLayer``/``MultiheadAttention`` eval kernels have no batching or
  forward-AD rules) and the math SDPA backend (fused SDPA kernels have no forward AD).
- **Gradient mode** ``torch.no_grad()`` (never ``inference_mode``, where ``vmap`` of ``jvp``
  fails): ``torch.func`` transforms still differentiate inside it.

Every flag is restored on exit, also when the probe raises. The user's model is never touched:
its training flag, parameters, ``requires_grad``, buffers and hooks are those of before, because
only the copy is converted and put in eval mode.

The deep copy keeps the model's own forward (pre-)hooks, because some are part of the model's
function (legacy ``weight_norm``/``spectral_norm``). A user's hook therefore also runs on the
copy during a probe, inside ``torch.func`` transforms, where it sees wrapped tensors; hooks with
side effects (collecting activations) should be removed before probing.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["global_flags", "probe_context", "model_device", "snapshot_flags"]


def _new_precision_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(
        torch.backends.cudnn, "conv"
    )


def snapshot_flags() -> dict[str, Any]:
    """The global flags a probe touches, as a dict (for tests and for restoring)."""
    flags: dict[str, Any] = {
        "grad_enabled": torch.is_grad_enabled(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "mha.fastpath": torch.backends.mha.get_fastpath_enabled(),
    }
    if _new_precision_api():
        flags["cuda.matmul.fp32_precision"] = torch.backends.cuda.matmul.fp32_precision
        flags["cudnn.conv.fp32_precision"] = torch.backends.cudnn.conv.fp32_precision
    else:
        flags["cuda.matmul.allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        flags["cudnn.allow_tf32"] = torch.backends.cudnn.allow_tf32
        flags["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return flags


def _restore(flags: dict[str, Any]) -> None:
    torch.backends.cudnn.benchmark = flags["cudnn.benchmark"]
    torch.backends.cudnn.deterministic = flags["cudnn.deterministic"]
    torch.backends.mha.set_fastpath_enabled(flags["mha.fastpath"])
    if "cuda.matmul.fp32_precision" in flags:
        torch.backends.cuda.matmul.fp32_precision = flags["cuda.matmul.fp32_precision"]
        torch.backends.cudnn.conv.fp32_precision = flags["cudnn.conv.fp32_precision"]
    else:
        torch.backends.cuda.matmul.allow_tf32 = flags["cuda.matmul.allow_tf32"]
        torch.backends.cudnn.allow_tf32 = flags["cudnn.allow_tf32"]
        torch.set_float32_matmul_precision(flags["float32_matmul_precision"])


@contextlib.contextmanager
def global_flags() -> Iterator[None]:
    """Set the probe's global flags (module docstring) and restore them on exit."""
    saved = snapshot_flags()
    try:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.mha.set_fastpath_enabled(False)
        if _new_precision_api():
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        else:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.set_float32_matmul_precision("highest")
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            stack.enter_context(_math_sdpa())
            yield
    finally:
        _restore(saved)


def _math_sdpa() -> contextlib.AbstractContextManager:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - very old torch
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def probe_copy(model: nn.Module, *, dtype: torch.dtype | None = torch.float64) -> nn.Module:
    """A deep copy of ``model`` in ``dtype`` (``None`` keeps it), eval, no ``requires_grad``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"the probe dtype must be floating point, got {dtype}")
    clone = copy.deepcopy(model)
    if dtype is not None:
        clone.to(dtype=dtype)
    clone.eval()
    clone.requires_grad_(False)
    return clone


@contextlib.contextmanager
def probe_context(
    model: nn.Module, *, dtype: torch.dtype | None = torch.float64
) -> Iterator[nn.Module]:
    """Yield a hygienic probe copy of ``model`` under :func:`global_flags` (module docstring).

    Example:
        >>> with probe_context(model) as m:          # doctest: +SKIP
        ...     y = m(x.double())
    """
    clone = probe_copy(model, dtype=dtype)
    with global_flags():
        yield clone
