"""The one preparation step of every probe: :func:`prepare`.

:func:`~isokit.probe.profile`, :func:`~isokit.probe.block_profile` and
:func:`~isokit.probe.signal` all start here. :func:`prepare` checks the inputs, resolves the
taps, makes the float64 (or float32) eval copy under :func:`~isokit.probe.hygiene.probe_context`,
moves the inputs to the copy's device and dtype, refuses what cannot be measured (non-finite
weights, buffers or inputs) and runs one dry forward pass on the first example, whose shape
errors become a clear ``ValueError`` and whose non-finite outputs are refused naming the tap. It
yields a :class:`Prepared` that the probes share; :meth:`Prepared.meta` builds ``Profile.meta``.

With ``options.start`` (``docs/probes.md §3.6``) only the taps after that module are kept, and the
Jacobian probes differentiate a :class:`~isokit.probe.start.StartView` of the copy at the
outputs ``h_start`` of the batch (``Prepared.copy`` and ``Prepared.x``); the model and the batch
themselves stay in ``Prepared.base`` and ``Prepared.base_x`` for the signal and the local
Jacobians, whose quantities do not depend on where the differentiation starts. Inputs that are
not one floating tensor (token ids, a tuple or dict of inputs; only with ``start``) have no
input statistics of their own: there ``base`` is the whole batch's ``StartView`` and ``base_x``
the outputs ``h_start``, so that the signal's input is the start module's output (the tap
values and gradients are the same either way). A model whose output is not a tensor (a Hugging
Face ``ModelOutput``, a tuple) is read through its first tensor there, which the signal projects.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from isokit.probe.checks import NonFiniteError, ProbeOptionError, check_inputs, describe
from isokit.probe.hygiene import model_device, probe_context
from isokit.probe.options import ProbeOptions
from isokit.probe.start import StartView, check_start_module, split_taps
from isokit.probe.taps import (
    ModelInputs,
    TapCall,
    TapError,
    batch_size,
    first_tensor,
    resolve_taps,
    run_with_taps,
    take_examples,
)

__all__ = ["Prepared", "prepare"]


def _input_hint(model: nn.Module) -> str:
    """What the model takes: its own ``input_shape`` attribute, else a hint from its first layer."""
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return f"(B, {', '.join(map(str, shape))})"
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


def _check_finite_state(copy: nn.Module, original: nn.Module, dtype: torch.dtype) -> None:
    """Refuse a model whose parameters or floating buffers hold NaN or inf in the probe dtype."""
    named = [("parameter", n, t) for n, t in copy.named_parameters()]
    named += [("buffer", n, t) for n, t in copy.named_buffers() if t.is_floating_point()]
    # One sum per tensor, read back once: any NaN or inf makes its sum NaN or inf, and a sum
    # that overflows although every value is finite is sorted out by the exact check below.
    sums = [t.sum().cpu().double() for _, _, t in named]
    if not sums or bool(torch.isfinite(torch.stack(sums)).all()):
        return
    for kind, name, tensor in named:
        if not bool(torch.isfinite(tensor).all()):
            n_bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteError(
                f"{type(original).__name__} {kind} {name!r} holds {n_bad} NaN or inf value(s) "
                f"in the probe dtype {str(dtype).replace('torch.', '')}; a Jacobian spectrum "
                "cannot be measured on it (re-initialize the model, or probe in float64 if the "
                "values only overflow in float32)"
            )


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CUDA's own class, or the CPU allocator's)."""
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def _shape_of(x: ModelInputs) -> Any:
    """Per-example shapes: a list, or the list of each tensor of a tuple (by key for a dict)."""
    if isinstance(x, Tensor):
        return list(x.shape[1:])
    if isinstance(x, Mapping):
        return {k: list(v.shape[1:]) for k, v in x.items() if isinstance(v, Tensor)}
    return [list(v.shape[1:]) for v in x if isinstance(v, Tensor)]


def _to_probe(x: ModelInputs, device: torch.device, dtype: torch.dtype) -> ModelInputs:
    """The inputs on ``device``; floating tensors in the probe dtype, token ids as they are."""

    def move(v: Any) -> Any:
        if not isinstance(v, Tensor):
            return v
        v = v.detach().to(device=device, dtype=dtype if v.is_floating_point() else None)
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ValueError(f"inputs overflow to inf in the probe dtype {dtype}; probe in float64")
        return v

    if isinstance(x, Mapping):
        return {k: move(v) for k, v in x.items()}
    return tuple(move(v) for v in x) if isinstance(x, tuple) else move(x)


def _dry_run(
    model: nn.Module, mods: list[nn.Module], x: ModelInputs, original: nn.Module
) -> TapCall:
    """One primal forward on one example; errors about shapes become a clear ValueError."""
    try:
        return run_with_taps(model, mods, take_examples(x, 0, 1))
    except TapError:
        raise
    except (RuntimeError, ValueError, IndexError) as err:
        if _out_of_memory(err):  # not a shape problem: the caller must see it as it is
            raise
        if not isinstance(x, Tensor):
            raise ValueError(
                f"inputs of per-example shapes {_shape_of(x)} do not fit "
                f"{type(original).__name__}; the dry forward pass failed with: {err}"
            ) from err
        raise ValueError(
            f"inputs of shape {tuple(x.shape)} do not fit {type(original).__name__}: expected "
            f"{_input_hint(original)}, got (B={x.shape[0]}, {', '.join(map(str, x.shape[1:]))}). "
            f"The dry forward pass failed with: {err}"
        ) from err


def _check_finite_outputs(dry: TapCall, names: list[str], original: nn.Module) -> None:
    """Refuse NaN or inf at a tap (or in the model output) of the dry forward pass."""
    for name, h in zip(names, dry.outputs, strict=True):
        if not bool(torch.isfinite(h).all()):
            raise ValueError(
                f"the forward pass of {type(original).__name__} gives NaN or inf at tap "
                f"{name!r} on the first example; a Jacobian spectrum cannot be measured there "
                "(the activations overflow: check the initialization's scale or probe in float64)"
            )
    if isinstance(dry.output, Tensor) and not bool(torch.isfinite(dry.output).all()):
        raise ValueError(
            f"the output of {type(original).__name__} is NaN or inf on the first example "
            "(after every tap); check the layers after the last tap"
        )


def _start_outputs(copy: nn.Module, start: str, x: ModelInputs, original: nn.Module) -> Tensor:
    """``h_start`` of every example of the batch (``[B, *start_shape]``), checked finite."""
    h = run_with_taps(copy, [copy.get_submodule(start)], x, stop_after=0).outputs[0]
    if h.ndim == 0 or h.shape[0] != batch_size(x):
        raise TapError(
            f"the output of start {start!r} has shape {tuple(h.shape)} for a batch of "
            f"{batch_size(x)}; start must be a module whose output is (B, ...)"
        )
    if not h.is_floating_point():
        raise TapError(
            f"the output of start {start!r} is {h.dtype}, which cannot be differentiated; "
            "choose a module after the embeddings"
        )
    if not bool(torch.isfinite(h).all()):
        raise ValueError(
            f"the forward pass of {type(original).__name__} gives NaN or inf at start {start!r}; "
            "a Jacobian spectrum cannot be measured from there (check the initialization's scale)"
        )
    return h.detach()


class _FirstOutput(nn.Module):
    """``model`` whose output is its first tensor (of a ``ModelOutput``, a tuple); names alike.

    What the signal's projection reads for a model such as a Hugging Face one; the modules are
    the model's own, so hooks on them and tap names work as on the model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def get_submodule(self, target: str) -> nn.Module:
        return self.model.get_submodule(target)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model(*args, **kwargs)
        return out if isinstance(out, Tensor) or out is None else first_tensor(out)


def _has_tensor(value: Any) -> bool:
    try:
        first_tensor(value)
    except TapError:
        return False
    return True


@dataclass(eq=False)
class Prepared:
    """What :func:`prepare` sets up once for a probe.

    Attributes:
        model: the user's model (never modified; named in messages and metadata).
        inputs: the user's batch (a tensor, or with ``start`` a tuple or dict of inputs).
        options: the validated options.
        names: resolved tap names in depth order (with ``start``: the taps after it).
        copy: the module the Jacobian probes differentiate: ``base``, or with ``start`` its
            :class:`~isokit.probe.start.StartView`.
        device: the copy's device.
        x: the variable they differentiate, per example: ``base_x``, or with ``start`` the
            outputs ``h_start`` of the batch (``[B, *start_shape]``).
        mods: the tap modules of ``base``, in tap order.
        dry: the dry run on the first example (tap outputs with batch axis 1).
        seed: the probe seed (``generator.initial_seed()`` when a generator was given).
        base: the hygienic probe copy (eval mode, probe dtype, no ``requires_grad``); for
            inputs that are not one floating tensor, its ``StartView`` (module docstring).
        base_x: the inputs on ``device`` in the probe dtype (for inputs that are not one
            floating tensor, ``h_start``).
        start: the start module's name, or ``None`` (the input).
    """

    model: nn.Module
    inputs: ModelInputs
    options: ProbeOptions
    names: list[str]
    copy: nn.Module
    device: torch.device
    x: Tensor
    mods: list[nn.Module]
    dry: TapCall
    seed: int
    base: nn.Module
    base_x: Tensor
    start: str | None = None

    @property
    def dims(self) -> list[int]:
        """Per-example output size ``D_l`` of every tap."""
        return [h.numel() for h in self.dry.outputs]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Per-example output shape of every tap (batch axis of size 1 kept)."""
        return [tuple(h.shape) for h in self.dry.outputs]

    def meta(
        self,
        *,
        method: str,
        reason: str,
        seed: int | None,
        meta: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``Profile.meta``: model, method and why, dtype, device, seed, versions, shapes.

        ``n_in`` is the size of the differentiated variable per example: the input's, or with
        ``start`` the output's of that module (``start_shape``); ``input_shape`` is the input's
        (for a tuple of inputs the list of their shapes, for a dict their shapes by name).
        """
        import isokit

        out: dict[str, Any] = {
            "model": type(self.model).__name__,
            "scheme": None,
            "method": method,
            "method_reason": reason,
            "dtype": str(self.options.dtype).replace("torch.", ""),
            "device": str(self.device),
            "seed": seed,
            "torch": torch.__version__,
            "isokit": getattr(isokit, "__version__", "unknown"),
            "n_examples": batch_size(self.inputs),
            "input_shape": _shape_of(self.inputs),
            "n_in": int(math.prod(self.x.shape[1:])),
            "start": self.start,
            "taps": list(self.names),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        if self.start is not None:
            out["start_shape"] = list(self.x.shape[1:])
        if extra:
            out.update(extra)
        if meta:
            out.update(meta)
        return out


@contextlib.contextmanager
def prepare(
    model: nn.Module,
    inputs: ModelInputs,
    options: ProbeOptions,
    *,
    generator: torch.Generator | None = None,
) -> Iterator[Prepared]:
    """Check, copy, place and dry-run once for a probe (module docstring).

    The copy and the probe's global flags live for the ``with`` block only.

    Example:
        >>> from isokit.models import MLP
        >>> with prepare(MLP(4, 4, depth=2), torch.randn(3, 4), ProbeOptions()) as prep:
        ...     prep.names, prep.dims, prep.x.dtype
        (['acts.0', 'acts.1'], [4, 4], torch.float64)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ProbeOptionError(
            "generator", f"must be a torch.Generator or None, got {describe(generator)}"
        )
    check_inputs("inputs", inputs, start=options.start)
    names = resolve_taps(model, options.taps)
    if options.start is not None:
        check_start_module(model, options.start)
    seed = options.seed if generator is None else int(generator.initial_seed())
    with probe_context(model, dtype=options.dtype) as copy:
        _check_finite_state(copy, model, options.dtype)
        device = model_device(copy)
        if generator is not None and generator.device.type != device.type:
            raise ProbeOptionError(
                "generator",
                f"is on {generator.device} but the model is on {device}; pass a generator "
                f"created with torch.Generator(device={str(device)!r})",
            )
        x = _to_probe(inputs, device, options.dtype)
        mods = [copy.get_submodule(n) for n in names]
        dry = _dry_run(copy, mods, x, model)
        _check_finite_outputs(dry, names, model)
        probed, z, base, base_x = copy, x, copy, x
        if options.start is not None:
            # Explicit tap lists are the caller's words: a tap before start is refused there.
            explicit = not callable(options.taps) and options.taps != "auto"
            first = take_examples(x, 0, 1)
            kept = split_taps(copy, names, options.start, first, explicit=explicit)
            keep = [names.index(n) for n in kept]
            names, mods = kept, [mods[i] for i in keep]
            dry = TapCall(output=dry.output, outputs=[dry.outputs[i] for i in keep])
            z = _start_outputs(copy, options.start, x, model)
            probed = StartView(copy, options.start, x)
            if not (isinstance(x, Tensor) and x.is_floating_point()):
                base, base_x = probed, z  # no input statistics of token ids (module docstring)
        if base is copy and not isinstance(dry.output, Tensor) and _has_tensor(dry.output):
            base = _FirstOutput(copy)  # the signal projects the output's first tensor
        yield Prepared(
            model=model,
            inputs=inputs,
            options=options,
            names=names,
            copy=probed,
            device=device,
            x=z,
            mods=mods,
            dry=dry,
            seed=seed,
            base=base,
            base_x=base_x,
            start=options.start,
        )
