"""Forward signal and gradient norms across depth: :func:`signal` (``docs/probes.md §5``).

``q_l`` (mean squared activation), ``c_l`` (mean pairwise cosine, :func:`_mean_cosine`) and the
gradient norms ``g_l`` at every tap, plus the parameter-gradient norm of the segment that ends at
each tap (:func:`_segment_recorder`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from isokit.probe.checks import NonFiniteError
from isokit.probe.options import ProbeOptions, resolve_options
from isokit.probe.prepare import Prepared, prepare
from isokit.probe.result import Signal
from isokit.probe.taps import TapCall, run_with_taps

__all__ = ["measure_signal", "signal"]

Loss = Callable[[Tensor], Tensor]


def signal(
    model: nn.Module,
    inputs: Tensor,
    options: ProbeOptions | None = None,
    *,
    loss: Loss | None = None,
    generator: torch.Generator | None = None,
    **overrides: Any,
) -> Signal:
    """Forward signal ``q_l``, ``c_l`` and gradient norms ``g_l`` at every tap.

    One forward and one backward pass of the batch on the eval-mode probe copy
    (``docs/probes.md §5``). Zero tensors ``e_l`` are added to the tap outputs in the hooks and
    the loss is differentiated with respect to them, so ``∂ℓ_b/∂h_l^(b)`` comes out for all taps
    at once. Of the :class:`~isokit.probe.ProbeOptions` (or keyword ``overrides``), ``taps``,
    ``dtype`` and ``seed`` apply, and ``start``, which keeps the taps after that module (none of
    these quantities depends on where a Jacobian starts, ``docs/probes.md §3.6``).

    Args:
        loss: ``output -> per-example losses [B]`` (summed) or their scalar sum. Default:
            ``ℓ_b = ⟨u_b, f(x_b)⟩`` with ``u_b ~ N(0, I)`` drawn from ``generator`` (or
            ``options.seed``), so that ``E g_l = ‖∂f/∂h_l‖_F²``.
        generator: explicit generator of the projection vectors ``u_b``.

    Raises:
        ValueError: NaN or inf in the weights, activations, loss or gradients (named).

    Example:
        >>> import torch, isokit
        >>> from isokit.models import MLP
        >>> model = isokit.init.apply(MLP(8, 8, depth=3, activation="tanh"), "orthogonal", seed=0)
        >>> sig = isokit.probe.signal(model, torch.randn(4, 8), seed=0)
        >>> sig.q.shape, sig.loss
        ((3,), 'projection')
    """
    opts = resolve_options(options, overrides)
    with prepare(model, inputs, opts, generator=generator) as prep:
        return measure_signal(prep, loss=loss, generator=generator)


@dataclass
class _Backward:
    """One forward with zero perturbations at the taps and the gradients of the loss."""

    call: TapCall
    grad_h: list[Tensor | None]
    tap_params: list[list[Tensor]]
    grad_by_id: dict[int, Tensor | None]
    loss_kind: str


def measure_signal(
    prep: Prepared, *, loss: Loss | None = None, generator: torch.Generator | None = None
) -> Signal:
    """:func:`signal` on a prepared probe (the copy's parameters get ``requires_grad`` back off)."""
    try:
        back = _backward(prep, loss, generator)
    finally:
        prep.base.requires_grad_(False)
    x, B = prep.base_x, prep.base_x.shape[0]
    rows = [
        _tap_signal(prep.names[i], h.detach(), back.grad_h[i], back.tap_params[i], back, B)
        for i, h in enumerate(back.call.outputs)
    ]
    X = x.reshape(B, -1).to(torch.float64)
    input_q = float(((X * X).sum(1) / X.shape[1]).mean())
    input_cos, _ = _mean_cosine(X)
    column = {key: [row[key] for row in rows] for key in rows[0]}
    return Signal(
        taps=list(prep.names),
        D=column["D"],
        q=np.array(column["q"]),
        q_std=np.array(column["q_std"]),
        cos=np.array(column["cos"]),
        cos_dropped=np.array(column["cos_dropped"], dtype=np.int64),
        grad=np.array(column["grad"]),
        grad_std=np.array(column["grad_std"]),
        grad_per_unit=np.array(column["grad_per_unit"]),
        param_grad=np.array(column["param_grad"]),
        input_q=input_q,
        input_cos=input_cos,
        loss=back.loss_kind,
        seed=prep.seed if loss is None else None,
        n_examples=B,
    )


def _backward(prep: Prepared, loss: Loss | None, generator: torch.Generator | None) -> _Backward:
    m, mods, x = prep.base, prep.mods, prep.base_x
    with torch.enable_grad():
        zeros = [
            _zero_perturbation(name, h, x.shape[0])
            for name, h in zip(prep.names, prep.dry.outputs, strict=True)
        ]
        for p in m.parameters():
            p.requires_grad_(True)
        with _segment_recorder(m, mods) as segments:
            call = run_with_taps(m, mods, x, add=dict(enumerate(zeros)))
        for name, h in zip(prep.names, call.outputs, strict=True):
            _check_finite(name, "activations", h.detach())
        output = call.output
        if not isinstance(output, Tensor):
            raise TypeError(f"signal needs a tensor model output, got {type(output).__name__}")
        if loss is None:
            gen = generator or torch.Generator(device=prep.device).manual_seed(prep.seed)
            u = torch.randn(output.shape, generator=gen, dtype=output.dtype, device=prep.device)
            total = (u * output).sum()
            loss_kind = "projection"
        else:
            total = loss(output).sum()
            loss_kind = "custom"
        if not bool(torch.isfinite(total.detach()).all()):
            raise NonFiniteError(
                f"the {loss_kind} loss of {type(prep.model).__name__} is NaN or inf on this "
                "batch; gradient norms cannot be measured (check the loss or the output scale)"
            )
        tap_params = [
            [p for mod in segments.get(i, []) for p in mod.parameters(recurse=False)]
            for i in range(len(mods))
        ]
        unique = list({id(p): p for group in tap_params for p in group}.values())
        grads = torch.autograd.grad(total, zeros + unique, allow_unused=True)
    grad_by_id = {id(p): gp for p, gp in zip(unique, grads[len(zeros) :], strict=True)}
    return _Backward(call, list(grads[: len(zeros)]), tap_params, grad_by_id, loss_kind)


def _zero_perturbation(name: str, dry: Tensor, B: int) -> Tensor:
    """The zero tensor ``e_l`` added at a tap, shaped from the dry run on one example."""
    if dry.ndim == 0 or dry.shape[0] != 1:
        raise ValueError(
            f"signal needs tap outputs with the batch on axis 0, but tap {name!r} gives shape "
            f"{tuple(dry.shape)} for one example; tap a module whose output is (B, ...)"
        )
    return torch.zeros((B, *dry.shape[1:]), dtype=dry.dtype, device=dry.device, requires_grad=True)


def _check_finite(name: str, what: str, T: Tensor) -> None:
    if not bool(torch.isfinite(T).all()):
        raise NonFiniteError(
            f"the {what} at tap {name!r} hold NaN or inf for some example of the batch; the "
            "signal cannot be measured there (overflow: check the initialization's scale)"
        )


def _tap_signal(
    name: str, h: Tensor, gh: Tensor | None, group: list[Tensor], back: _Backward, B: int
) -> dict[str, Any]:
    """The signal quantities of one tap, refusing NaN or inf (never returned silently)."""
    H = h.reshape(B, -1).to(torch.float64)
    G = torch.zeros_like(H) if gh is None else gh.reshape(B, -1).to(torch.float64)
    _check_finite(name, "gradients", G)
    D = H.shape[1]
    per = (H * H).sum(1) / D
    c, n_drop = _mean_cosine(H)
    per_g = (G * G).sum(1)
    sq = 0.0
    for p in group:
        gp = back.grad_by_id[id(p)]
        if gp is not None:
            sq += float((gp.to(torch.float64) / B).pow(2).sum())
    if not math.isfinite(sq):
        raise NonFiniteError(
            f"the parameter gradients of the block ending at tap {name!r} overflow to NaN or inf"
        )
    return {
        "D": D,
        "q": float(per.mean()),
        "q_std": float(per.std(unbiased=False)),
        "cos": c,
        "cos_dropped": n_drop,
        "grad": float(per_g.mean()),
        "grad_std": float(per_g.std(unbiased=False)),
        "grad_per_unit": float(per_g.mean()) / D,
        "param_grad": math.sqrt(sq),
    }


@contextlib.contextmanager
def _segment_recorder(model: nn.Module, mods: list[nn.Module]):
    """Map tap index ``l`` to the parametric modules that run between taps ``l−1`` and ``l``.

    A module belongs to the segment of the first tap that has not finished when the module
    finishes (so a block's own layers belong to the block's tap). Modules after the last tap
    are left out; a module that runs twice keeps its first segment.
    """
    fired = [0]
    segments: dict[int, list[nn.Module]] = {}
    seen: set[int] = set()
    handles = []

    def on_tap(module, args, out):
        fired[0] += 1

    def on_param(module, args, out):
        if id(module) not in seen:
            seen.add(id(module))
            segments.setdefault(fired[0], []).append(module)

    tap_ids = {id(mod) for mod in mods}
    try:
        for module in model.modules():
            if id(module) not in tap_ids and any(True for _ in module.parameters(recurse=False)):
                handles.append(module.register_forward_hook(on_param))
        for mod in mods:
            if any(True for _ in mod.parameters(recurse=False)):
                handles.append(mod.register_forward_hook(on_param))
            handles.append(mod.register_forward_hook(on_tap))
        yield segments
    finally:
        for handle in handles:
            handle.remove()


def _mean_cosine(H: Tensor) -> tuple[float, int]:
    """Mean pairwise uncentered cosine via the row-normalized Gram, zero rows dropped."""
    norms = H.norm(dim=1)
    keep = norms > 0
    n_drop = int((~keep).sum())
    Hk = H[keep] / norms[keep][:, None]
    n = Hk.shape[0]
    if n < 2:
        return math.nan, n_drop
    G = Hk @ Hk.T
    return float((G.sum() - G.trace()) / (n * (n - 1))), n_drop
