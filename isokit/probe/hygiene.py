"""Numerical hygiene (``docs/probes.md §6``): a private model copy and clean global flags.

:func:`probe_context` yields a deep copy of the model, converted to the probe dtype (float64 by
default), in eval mode, with ``requires_grad`` off on every parameter, and sets for its duration:

- **TF32 off, in both precision APIs.** The legacy flags are set
  (``torch.set_float32_matmul_precision("highest")``, ``torch.backends.cuda.matmul.allow_tf32``
  and ``torch.backends.cudnn.allow_tf32`` ``False``) and, with PyTorch's newer API, every
  float32 precision leaf (``torch.backends.cuda.matmul``, ``cudnn.conv``, ``cudnn.rnn`` and the
  ``mkldnn`` ones) is ``"ieee"``. Setting one API only would leave the two disagreeing, and
  torch then refuses to read the legacy flags (a ``RuntimeError`` about "mix of the legacy and
  new APIs", e.g. in a user's hook or in ``torch.compile``); a leaf left at ``"none"`` would
  inherit a parent's ``"tf32"``. The user's values of both are restored.
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
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["global_flags", "probe_context", "model_device", "snapshot_flags"]


def _new_precision_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(
        torch.backends.cudnn, "conv"
    )


#: The newer API's float32 precision tree: node -> ((backend, op) in torch, parent node). A node
#: set to ``"none"`` inherits its parent's value. Parents come before their children.
_TREE: dict[str, tuple[tuple[str, str], str | None]] = {
    "generic": (("generic", "all"), None),
    "cuda": (("cuda", "all"), "generic"),
    "mkldnn": (("mkldnn", "all"), "generic"),
    "cuda.matmul": (("cuda", "matmul"), "cuda"),
    "cudnn.conv": (("cuda", "conv"), "cuda"),
    "cudnn.rnn": (("cuda", "rnn"), "cuda"),
    "mkldnn.matmul": (("mkldnn", "matmul"), "mkldnn"),
    "mkldnn.conv": (("mkldnn", "conv"), "mkldnn"),
    "mkldnn.rnn": (("mkldnn", "rnn"), "mkldnn"),
}
#: What a node that inherits holds: ``"none"``, or ``"default"`` in the first torch versions.
_INHERIT = ("none", "default")
_LEAVES = ("cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn")


def _get(name: str) -> str:
    # torch's own (backend, op) accessors, which its flags() context managers use: some public
    # attributes write another node (torch.backends.mkldnn.fp32_precision sets "generic").
    return torch._C._get_fp32_precision_getter(*_TREE[name][0])


def _set(name: str, value: str) -> None:
    if value in _INHERIT:  # torch's spelling of "inherit" changed; write the one it accepts
        for token in _INHERIT:
            try:
                return torch._C._set_fp32_precision_setter(*_TREE[name][0], token)
            except RuntimeError:
                continue
    torch._C._set_fp32_precision_setter(*_TREE[name][0], value)


def _nodes() -> list[str]:
    """The precision nodes this torch has (none before the newer API), parents first."""
    if not _new_precision_api() or not hasattr(torch._C, "_set_fp32_precision_setter"):
        return []
    out: list[str] = []
    for name, (_, parent) in _TREE.items():
        try:
            _get(name)
        except RuntimeError:  # a (backend, op) pair this torch does not know
            continue
        if parent is None or parent in out:
            out.append(name)
    return out


def _ancestors(name: str) -> list[str]:
    out = []
    parent = _TREE[name][1]
    while parent is not None:
        out.append(parent)
        parent = _TREE[parent][1]
    return out


def _own_values(nodes: list[str]) -> dict[str, str]:
    """Each node's own value, ``"none"`` where it inherits (torch reads only effective values).

    An explicit ancestor hides a node's own value from torch's getter (cuDNN's conv leaf holds
    ``"tf32"`` by default, yet reads ``"ieee"`` while ``cuda`` is ``"ieee"``), so each node is read
    with its explicit ancestors set to inherit for the moment, parents first, and those are put
    back at once.
    """
    own: dict[str, str] = {}
    for name in nodes:
        explicit = [a for a in _ancestors(name) if own.get(a, "none") not in _INHERIT]
        for a in explicit:
            _set(a, "none")
        value = _get(name)
        for a in reversed(explicit):
            _set(a, own[a])
        own[name] = "none" if value in _INHERIT else value
    return own


def _inherited(flags: dict[str, Any], name: str | None) -> str | None:
    """The value node ``name`` reads in ``flags`` (its own or its nearest ancestor's)."""
    while name is not None and flags.get(f"{name}.fp32_precision") in _INHERIT:
        name = _TREE[name][1]
    return None if name is None else flags.get(f"{name}.fp32_precision")


@contextlib.contextmanager
def _legacy_api() -> Iterator[None]:
    # Newer torch warns on every use of the legacy TF32 flags; the probe uses them on purpose.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*new API settings to control TF32")
        yield


def _read_legacy(read: Callable[[], Any]) -> Any:
    """A legacy flag, or ``None`` where torch refuses to read it because the two APIs disagree
    (the user set the newer one only, say)."""
    with _legacy_api():
        try:
            return read()
        except RuntimeError:
            return None


def snapshot_flags() -> dict[str, Any]:
    """The global flags a probe touches, as a dict (for tests and for restoring).

    Legacy flags that torch refuses to read are ``None``; each ``*.fp32_precision`` is the
    node's own value (``"none"`` where it inherits its parent's).

    Example:
        >>> snapshot_flags()["grad_enabled"]
        True
    """
    flags: dict[str, Any] = {
        "grad_enabled": torch.is_grad_enabled(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "mha.fastpath": torch.backends.mha.get_fastpath_enabled(),
        "cuda.matmul.allow_tf32": _read_legacy(lambda: torch.backends.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": _read_legacy(lambda: torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": _read_legacy(torch.get_float32_matmul_precision),
    }
    for name, value in _own_values(_nodes()).items():
        flags[f"{name}.fp32_precision"] = value
    return flags


def _precision_off() -> None:
    """TF32 (and oneDNN's reduced float32 precision) off, consistently in both APIs."""
    with _legacy_api():
        # "highest" sets the legacy state and the cuda/mkldnn matmul leaves to IEEE together.
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    # Explicit leaves: a leaf left at "none" would inherit a parent's "tf32".
    for name in _nodes():
        if name in _LEAVES:
            _set(name, "ieee")


def _legacy_matmul(flags: dict[str, Any]) -> str:
    """The legacy matmul precision of ``flags``, inferred where torch refused to read it."""
    if flags["float32_matmul_precision"] is not None:
        return flags["float32_matmul_precision"]
    tf32 = flags["cuda.matmul.allow_tf32"]
    if tf32 is None:  # unreadable: the legacy state is "not highest" exactly when cuda is not tf32
        tf32 = _inherited(flags, "cuda.matmul") != "tf32"
    if not tf32:
        return "highest"
    # Unreadable although TF32 agrees: oneDNN's leaf disagrees with "high" or "medium".
    return "high" if _inherited(flags, "mkldnn.matmul") == "bf16" else "medium"


def _legacy_cudnn(flags: dict[str, Any]) -> bool:
    """The legacy cuDNN TF32 flag of ``flags``, inferred where torch refused to read it."""
    if flags["cudnn.allow_tf32"] is not None:
        return flags["cudnn.allow_tf32"]
    conv = _inherited(flags, "cudnn.conv") == "tf32"
    rnn = _inherited(flags, "cudnn.rnn") == "tf32"
    return (not conv) if conv == rnn else True  # conv ≠ rnn: unknowable, torch's default


def _restore_precision(flags: dict[str, Any]) -> None:
    # Legacy first (its setters also write new-API leaves), then every node's own value.
    with _legacy_api():
        torch.set_float32_matmul_precision(_legacy_matmul(flags))
        torch.backends.cudnn.allow_tf32 = _legacy_cudnn(flags)
    for name in _nodes():
        _set(name, flags[f"{name}.fp32_precision"])


def _restore(flags: dict[str, Any]) -> None:
    torch.backends.cudnn.benchmark = flags["cudnn.benchmark"]
    torch.backends.cudnn.deterministic = flags["cudnn.deterministic"]
    torch.backends.mha.set_fastpath_enabled(flags["mha.fastpath"])
    _restore_precision(flags)


@contextlib.contextmanager
def global_flags() -> Iterator[None]:
    """Set the probe's global flags (module docstring) and restore them on exit.

    Example:
        >>> with global_flags():
        ...     inside = snapshot_flags()
        >>> inside["cudnn.allow_tf32"], inside["float32_matmul_precision"], inside["grad_enabled"]
        (False, 'highest', False)
    """
    saved = snapshot_flags()
    try:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.mha.set_fastpath_enabled(False)
        _precision_off()
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
