"""Jacobians from a start module: ``J_{l←start} = ∂h_l/∂h_start`` (``docs/probes.md §3.6``).

With ``start`` set, the differentiated variable is ``z = h_start``, the output of module ``start``
on one example, instead of the input ``x``. For example ``b`` the probes differentiate

    f_b(z) = (h_1, …, h_L) of model(x_b) with the output of ``start`` replaced by z,

at ``z = h_start(x_b)``: a *partial* derivative, in which every path from ``x_b`` that bypasses
``start`` (a skip connection around it, a second input branch) keeps its primal value.
:class:`StartView` is that function as an ``nn.Module`` of ``z``; the exact and matrix-free tiers
probe it like any model, one example at a time (``x_b`` is a constant of each example's function).
:func:`split_taps` keeps the taps after ``start``: those whose forward hook finishes after the one
of ``start`` (a tap inside ``start`` finishes before it; a tap that contains it, after).

``x`` may be any input structure of :func:`~isokit.probe.taps.call_model`: token ids, a tuple of
positional or a dict of keyword inputs, since only ``z`` is differentiated (``start="embeddings"``
for BERT or ViT, ``start="drop"`` for GPT-2, whose embedding sum is taken inside its forward).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import Tensor, nn

from isokit.probe.checks import ProbeOptionError
from isokit.probe.taps import (
    ModelInputs,
    TapError,
    batch_size,
    call_model,
    first_tensor,
    replace_first,
    take_examples,
)

__all__ = ["StartView", "check_start_module", "split_taps"]


def check_start_module(model: nn.Module, start: str) -> None:
    """Refuse a ``start`` that names no module of ``model`` (close matches listed).

    Example:
        >>> from torch import nn
        >>> check_start_module(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), "3")
        Traceback (most recent call last):
        ...
        isokit.probe.checks.ProbeOptionError: start: the model Sequential has no module named \
'3'; close matches: 0, 1 (start names a module of model.named_modules())
    """
    names = [n for n, _ in model.named_modules() if n]
    if start in names:
        return
    close = difflib.get_close_matches(start, names, n=5, cutoff=0.5)
    if not close and len(names) <= 8:
        close = names
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ProbeOptionError(
        "start",
        f"the model {type(model).__name__} has no module named {start!r}{hint} (start names a "
        "module of model.named_modules())",
    )


def split_taps(
    model: nn.Module, names: Sequence[str], start: str, x: ModelInputs, *, explicit: bool
) -> list[str]:
    """The taps of ``names`` that run after module ``start`` in one forward pass of ``x``.

    A tap runs after ``start`` when its forward hook finishes after the one of ``start``. With
    ``explicit`` (a tap list the caller wrote) a tap at or before ``start`` is refused; otherwise
    (``taps="auto"`` or a predicate) it is dropped.

    Raises:
        ProbeOptionError: (``"start"``) a tap listed at or before ``start``, no tap after it, or
            a ``start`` module that does not run exactly once per forward pass.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2))
        >>> split_taps(model, ["0", "1", "2"], "0", torch.zeros(1, 2), explicit=False)
        ['1', '2']
    """
    order: list[str] = []
    handles = []
    try:
        for name in dict.fromkeys([*names, start]):
            module = model.get_submodule(name)
            handles.append(module.register_forward_hook(lambda m, a, o, n=name: order.append(n)))
        call_model(model, x)
    finally:
        for handle in handles:
            handle.remove()
    runs = order.count(start)
    if runs != 1:
        raise ProbeOptionError(
            "start",
            f"module {start!r} runs {runs} times in one forward pass; start must be a module the "
            "model calls exactly once",
        )
    after = set(order[order.index(start) + 1 :])
    before = [n for n in names if n not in after]
    if explicit and before:
        raise ProbeOptionError(
            "start",
            f"tap {before[0]!r} runs at or before start {start!r}, where ∂h/∂h_start is not "
            f"defined; list only taps after {start!r} or use taps='auto'",
        )
    kept = [n for n in names if n in after]
    if not kept:
        raise ProbeOptionError(
            "start",
            f"no tap runs after {start!r} (the taps are {', '.join(names)}); choose an earlier "
            "start module",
        )
    return kept


class StartView(nn.Module):
    """``z ↦ model(x)`` with the output of module ``start`` replaced by ``z``; ``x`` is fixed.

    The model is a child (its parameters are the view's); :meth:`get_submodule` names modules
    as the model does, so taps are named alike with and without ``start``. A view of the whole
    batch runs a batch of ``z``; :meth:`at` binds one example, which is what the per-example
    Jacobian probes differentiate (inside ``vmap`` the example axis is hidden, so only a bound
    view knows its ``x_b``). ``x`` is a tensor or a tuple or dict of inputs (examples are sliced
    across all its tensors). A model output that is not a tensor (a ``ModelOutput``, a tuple)
    is returned as its first tensor (``last_hidden_state``), which the gradient signal projects.

    Example:
        >>> import torch
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
        >>> view = StartView(model, "0", torch.zeros(3, 2))
        >>> z = torch.ones(1, 2)
        >>> bool((view.at(0)(z) == torch.tanh(z)).all()), view.n_examples
        (True, 3)
    """

    def __init__(self, model: nn.Module, start: str, x: ModelInputs) -> None:
        super().__init__()
        self.model = model
        self.start = start
        self.x = x  # a constant of the function, not a buffer

    @property
    def n_examples(self) -> int:
        """The number of examples whose ``x`` the view holds."""
        return batch_size(self.x)

    def at(self, b: int) -> StartView:
        """The view of example ``b`` alone."""
        return StartView(self.model, self.start, take_examples(self.x, b, b + 1))

    def get_submodule(self, target: str) -> nn.Module:
        """The model's module ``target`` (the view adds no name prefix)."""
        return self.model.get_submodule(target)

    def forward(self, z: Tensor) -> object:
        calls = [0]

        def hook(module, args, out):
            calls[0] += 1
            if calls[0] > 1:
                raise TapError(f"start module {self.start!r} ran more than once in one forward")
            h = first_tensor(out)
            if z.numel() != h.numel():
                raise TapError(
                    f"z has {z.numel()} values but start {self.start!r} gives {h.numel()} for "
                    f"{self.n_examples} example(s); bind one example with .at(b)"
                )
            # A clone: an in-place op after start must not write into the probe's variable.
            return replace_first(out, z.reshape(h.shape).clone())

        handle = self.model.get_submodule(self.start).register_forward_hook(hook)
        try:
            out = call_model(self.model, self.x)
        finally:
            handle.remove()
        if isinstance(out, Tensor | None):
            return out
        try:
            return first_tensor(out)
        except TapError:  # no tensor in it: nothing to project, returned as it is
            return out
