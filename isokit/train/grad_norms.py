"""Gradient norms at the taps during training: :class:`TapGradients`.

A forward hook on each tap module attaches a tensor hook to the tap's output on the steps being
logged; during the ordinary backward pass that hook reads ``∂L/∂h_l`` (no second pass), and
nothing is attached on the other steps. With the batch-mean loss ``L = (1/B) Σ_i ℓ_i`` the
gradient at example ``i`` is ``∂ℓ_i/∂h_l[i] / B``, so the recorded value

    g_l = √B · ‖∂L/∂h_l‖_F = √( (1/B) Σ_i ‖∂ℓ_i/∂h_l[i]‖² )

is the root mean square over the batch of one example's gradient norm: a batch-size-free
measure of how the backward signal grows or shrinks with depth.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from isokit.probe.taps import first_tensor

__all__ = ["TapGradients"]


class TapGradients:
    """Hooks reading ``g_l`` (module docstring) at ``taps`` of ``model`` on armed steps.

    Use as a context manager: hooks are removed on exit, also after an error.

    Example:
        >>> model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
        >>> with TapGradients(model, ["0", "2"]) as grads:
        ...     grads.arm(batch=4)
        ...     model(torch.randn(4, 3)).mean().backward()
        ...     len(grads.collect())
        2
    """

    def __init__(self, model: nn.Module, taps: list[str]) -> None:
        modules = dict(model.named_modules())
        self.taps = list(taps)
        self._modules = [modules[name] for name in self.taps]
        self._handles: list = []
        self._armed = False
        self._scale = 1.0
        self._values: list[Tensor | None] = [None] * len(self.taps)

    def __enter__(self) -> TapGradients:
        for index, module in enumerate(self._modules):
            self._handles.append(module.register_forward_hook(self._forward_hook(index)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _forward_hook(self, index: int):
        def hook(module: nn.Module, args: object, output: object) -> None:
            if not self._armed:
                return
            tensor = first_tensor(output)
            if tensor.requires_grad:
                tensor.register_hook(self._tensor_hook(index))

        return hook

    def _tensor_hook(self, index: int):
        def hook(grad: Tensor) -> None:
            # The norm stays a tensor: one .item() per step in collect(), not one per tap.
            self._values[index] = torch.linalg.vector_norm(grad.detach(), dtype=torch.float64)

        return hook

    def arm(self, *, batch: int) -> None:
        """Record on the next forward and backward pass, of a batch of ``batch`` examples."""
        self._armed = True
        self._scale = math.sqrt(batch)
        self._values = [None] * len(self.taps)

    def collect(self) -> list[float]:
        """The armed pass's ``g_l`` per tap (NaN for a tap the gradient did not reach), disarm."""
        self._armed = False
        present = [v for v in self._values if v is not None]
        numbers = torch.stack(present).tolist() if present else []
        it = iter(numbers)
        return [math.nan if v is None else next(it) * self._scale for v in self._values]
