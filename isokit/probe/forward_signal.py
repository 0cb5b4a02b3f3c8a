"""Forward signal and gradient norms across depth: :func:`signal` (``probes.md`` §5).

``q_l`` (mean squared activation), ``c_l`` (mean pairwise cosine, :func:`_mean_cosine`) and the
gradient norms ``g_l`` at every tap, plus the parameter-gradient norm of the segment that ends at
each tap (:func:`_segment_recorder`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from isokit.probe.common import _check_inputs, _dry_run
from isokit.probe.hygiene import model_device, probe_context
from isokit.probe.result import Signal
from isokit.probe.taps import TapSpec, resolve_taps, run_with_taps

__all__ = ["signal"]


# ----------------------------------------------------------------------------------- signal


def signal(
    model: nn.Module,
    inputs: Tensor,
    *,
    taps: TapSpec = "auto",
    loss: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Signal:
    """Forward signal ``q_l``, ``c_l`` and gradient norms ``g_l`` at every tap (``probes.md`` §5).

    One forward and one backward pass of the batch on the eval-mode probe copy. Zero tensors
    ``e_l`` are added to the tap outputs in the hooks and the loss is differentiated with respect
    to them, so ``∂ℓ_b/∂h_l^(b)`` comes out for all taps at once.

    Args:
        loss: ``output -> per-example losses [B]`` (summed) or their scalar sum. Default:
            ``ℓ_b = ⟨u_b, f(x_b)⟩`` with ``u_b ~ N(0, I)`` drawn from ``generator`` (or ``seed``),
            so that ``E g_l = ‖∂f/∂h_l‖_F²``.
    """
    _check_inputs(inputs)
    names = resolve_taps(model, taps)
    if generator is not None:
        seed = int(generator.initial_seed())
    with probe_context(model, dtype=dtype) as m:
        device = model_device(m)
        x = inputs.detach().to(device=device, dtype=dtype)
        mods = [m.get_submodule(n) for n in names]
        dry = _dry_run(m, mods, x, model)
        del dry
        shapes_call = run_with_taps(m, mods, x)
        B = x.shape[0]
        with torch.enable_grad():
            zeros = [torch.zeros_like(h, requires_grad=True) for h in shapes_call.outputs]
            del shapes_call
            for p in m.parameters():
                p.requires_grad_(True)
            with _segment_recorder(m, mods) as segments:
                call = run_with_taps(m, mods, x, add=dict(enumerate(zeros)))
            output = call.output
            if not isinstance(output, Tensor):
                raise TypeError(f"signal needs a tensor model output, got {type(output).__name__}")
            if loss is None:
                gen = generator or torch.Generator(device=device).manual_seed(seed)
                u = torch.randn(output.shape, generator=gen, dtype=output.dtype, device=device)
                total = (u * output).sum()
                loss_kind = "projection"
            else:
                value = loss(output)
                total = value.sum()
                loss_kind = "custom"
            tap_params = [
                [p for mod in segments.get(i, []) for p in mod.parameters(recurse=False)]
                for i in range(len(mods))
            ]
            unique = list({id(p): p for group in tap_params for p in group}.values())
            grads = torch.autograd.grad(total, zeros + unique, allow_unused=True)
        g_h = grads[: len(zeros)]
        g_by_id = {id(p): gp for p, gp in zip(unique, grads[len(zeros) :], strict=True)}
        hs = [h.detach() for h in call.outputs]
        q, q_std, cos, dropped, g, g_std, gpu, pg, dims = [], [], [], [], [], [], [], [], []
        for h, gh, group in zip(hs, g_h, tap_params, strict=True):
            H = h.reshape(B, -1).to(torch.float64)
            D = H.shape[1]
            dims.append(D)
            per = (H * H).sum(1) / D
            q.append(float(per.mean()))
            q_std.append(float(per.std(unbiased=False)))
            c, n_drop = _mean_cosine(H)
            cos.append(c)
            dropped.append(n_drop)
            G = torch.zeros_like(H) if gh is None else gh.reshape(B, -1).to(torch.float64)
            per_g = (G * G).sum(1)
            g.append(float(per_g.mean()))
            g_std.append(float(per_g.std(unbiased=False)))
            gpu.append(float(per_g.mean()) / D)
            sq = 0.0
            for p in group:
                gp = g_by_id[id(p)]
                if gp is not None:
                    sq += float((gp.to(torch.float64) / B).pow(2).sum())
            pg.append(math.sqrt(sq))
        X = x.reshape(B, -1).to(torch.float64)
        input_q = float(((X * X).sum(1) / X.shape[1]).mean())
        input_cos, _ = _mean_cosine(X)
    return Signal(
        taps=list(names),
        D=dims,
        q=np.array(q),
        q_std=np.array(q_std),
        cos=np.array(cos),
        cos_dropped=np.array(dropped, dtype=np.int64),
        grad=np.array(g),
        grad_std=np.array(g_std),
        grad_per_unit=np.array(gpu),
        param_grad=np.array(pg),
        input_q=input_q,
        input_cos=input_cos,
        loss=loss_kind,
        seed=seed if loss is None else None,
        n_examples=B,
    )


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
