"""Helpers shared by :func:`~isokit.probe.profile.profile`,
:func:`~isokit.probe.local.block_profile` and :func:`~isokit.probe.forward_signal.signal`: input
checks, the dry run with a clear shape error, the ``Profile.meta`` record, and the conversion of an
exact tap into a :class:`TapSpectrum`.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from isokit.probe.result import TapSpectrum
from isokit.probe.stats import saturated_mask, stats
from isokit.probe.taps import TapError, run_with_taps

__all__: list[str] = []


# ----------------------------------------------------------------------------------- inputs


def _check_inputs(inputs: Any) -> None:
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor batch (B, ...), got {type(inputs).__name__}"
        )
    if not inputs.dtype.is_floating_point:
        raise TypeError(
            "inputs must be floating point (Jacobians need a continuous input), got "
            f"{inputs.dtype}; "
            "embed discrete tokens first and probe from the embeddings"
        )
    if inputs.ndim < 2:
        raise ValueError(
            "inputs must be a batch of shape (B, ...) with B ≥ 1, got shape "
            f"{tuple(inputs.shape)}; "
            "add the batch axis with inputs[None]"
        )
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch (B = 0)")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contain NaN or inf")


def _input_hint(model: nn.Module) -> str:
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return f"(B, {', '.join(map(str, shape))})"
    if hasattr(model, "seq_len") and hasattr(model, "d_model"):
        return f"(B, {model.seq_len}, {model.d_model})"
    for module in model.modules():
        if isinstance(module, nn.Linear):
            n = module.in_features
            return f"(B, {n}) (the first Linear takes {n} features)"
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            spatial = ", ".join("HWD"[: module.weight.ndim - 2])
            return (
                f"(B, {module.in_channels}, {spatial}) (the first convolution takes "
                f"{module.in_channels} channels)"
            )
    return "the shape the model's forward accepts"


def _dry_run(model: nn.Module, mods: list[nn.Module], x: Tensor, original: nn.Module):
    """One primal forward on one example; errors about shapes become a clear ValueError."""
    try:
        return run_with_taps(model, mods, x[:1])
    except TapError:
        raise
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"inputs of shape {tuple(x.shape)} do not fit {type(original).__name__}: expected "
            f"{_input_hint(original)}, got (B={x.shape[0]}, {', '.join(map(str, x.shape[1:]))}). "
            f"The dry forward pass failed with: {err}"
        ) from err


def _meta(model, inputs, names, *, method, reason, dtype, device, seed, meta, extra=None):
    import isokit

    out: dict[str, Any] = {
        "model": type(model).__name__,
        "scheme": None,
        "method": method,
        "method_reason": reason,
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(device),
        "seed": seed,
        "torch": torch.__version__,
        "isokit": getattr(isokit, "__version__", "unknown"),
        "n_examples": int(inputs.shape[0]),
        "input_shape": list(inputs.shape[1:]),
        "n_in": int(math.prod(inputs.shape[1:])),
        "taps": list(names),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if extra:
        out.update(extra)
    if meta:
        out.update(meta)
    return out


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


def _exact_tap(t, depth: int, *, dtype, band: float, method_prefix: str = "exact") -> TapSpectrum:
    s = t.singular_values.numpy().astype(np.float64, copy=False)
    st = stats(s, n_rows=t.D, n_cols=t.n_in, band=band, eps=_eps(dtype), degenerate_var=math.inf)
    lam = s * s
    degenerate = s[:, 0] <= np.finfo(np.float64).tiny
    return TapSpectrum(
        name=t.name,
        depth=depth,
        D=t.D,
        n_in=t.n_in,
        r=t.r,
        shape=tuple(t.shape),
        method=f"{method_prefix}-{t.mode}",
        side=t.side,
        singular_values=s,
        stats=st,
        traces={"t1": lam.sum(1), "t2": (lam**2).sum(1), "t3": (lam**3).sum(1)},
        degenerate=degenerate,
        saturated=np.asarray(saturated_mask(s, eps=_eps(dtype)), dtype=bool).reshape(-1),
        gram_unreliable=t.gram_unreliable.numpy().astype(bool),
    )
