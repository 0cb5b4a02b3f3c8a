""":func:`train`: train an initialized model on a :class:`~isokit.train.TrainData`, measuring
loss, accuracy, gradient norms and (at checkpoints) the Jacobian spectra along the way. The
contract (steps, seeds, divergence, evaluations, checkpoints, failure) is
``docs/training.md §1``.

The loop is the plain PyTorch one (forward, loss, backward, step) on batches indexed out of
tensors held in memory, so it costs what a hand-written loop costs (``benchmarks/bench_train.py``
measures it). Around it:

- **Seeds.** The data order comes from a generator seeded by ``SeedSequence([seed, 0])`` and
  every draw from torch's global generator during training (dropout) from one seeded by
  ``SeedSequence([seed, 1])``, inside a forked RNG state, so the caller's RNG is left alone and
  the same seed gives the same numbers on the CPU.
- **Divergence** is an outcome: the first step whose training loss is NaN or inf is recorded as
  ``diverged_at`` and training stops there, with the curves up to that step.
- **Evaluations** at :meth:`TrainOptions.eval_steps` on the held-out split (in eval mode, without
  gradients); ``steps_to_target`` is the first evaluated step whose accuracy reaches
  ``target_accuracy``.
- **Checkpoints**: at each step of ``checkpoints`` :func:`isokit.probe.profile` measures the
  current weights on a fixed probe batch (the first ``probe_examples`` held-out inputs).
- **Speed.** Subnormal floats are flushed to zero during training on the CPU
  (:func:`torch.set_flush_denormal`), so a run whose activations collapse does not slow down
  tenfold; the setting is switched off again afterwards.
- **Failure.** On any error other than divergence (a bad input shape, an interrupt), the model's
  weights, buffers and mode are put back as they were, and the error propagates.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from isokit.probe.taps import first_tensor, resolve_taps
from isokit.train.checkpoints import probe_checkpoint
from isokit.train.data import Split, TrainData
from isokit.train.grad_norms import TapGradients
from isokit.train.log import RunLog
from isokit.train.options import TrainOptionError, TrainOptions
from isokit.train.result import TrainResult
from isokit.train.schedule import lr_factor

__all__ = ["stream_seed", "train"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Streams of SeedSequence([seed, stream]): the data order and torch's global generator.
DATA_STREAM, TORCH_STREAM = 0, 1


def stream_seed(seed: int, stream: int) -> int:
    """A torch seed for ``stream`` of the run's ``seed`` (< 2⁶³, distinct per stream).

    Example:
        >>> stream_seed(0, 0) != stream_seed(0, 1)
        True
    """
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def _loss_fn(task: str):
    if task == "classification":
        return functional.cross_entropy

    def half_squared_error(output: Tensor, target: Tensor) -> Tensor:
        diff = output.reshape(output.shape[0], -1) - target.reshape(target.shape[0], -1)
        return 0.5 * diff.square().sum(dim=1).mean()

    return half_squared_error


def _optimizer(model: nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    if options.optimizer == "adam":
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    momentum = options.momentum if options.optimizer == "sgd-momentum" else 0.0
    return torch.optim.SGD(
        params, lr=options.lr, momentum=momentum, weight_decay=options.weight_decay
    )


def _on(split: Split, device: torch.device, dtype: torch.dtype, task: str) -> Split:
    targets = split.targets.to(device)
    if task == "regression":
        targets = targets.to(dtype)
    return Split(inputs=split.inputs.to(device=device, dtype=dtype), targets=targets)


class _Batches:
    """Batch ``s`` of the run: epoch ``s // per_epoch`` of a seeded permutation."""

    def __init__(self, split: Split, batch_size: int, seed: int) -> None:
        self.split = split
        self.n = len(split)
        self.batch_size = min(batch_size, self.n)
        self.per_epoch = max(1, math.ceil(self.n / self.batch_size))
        self.generator = torch.Generator().manual_seed(stream_seed(seed, DATA_STREAM))
        self.order: Tensor | None = None

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        if self.batch_size == self.n:  # full batch: no copy
            return self.split.inputs, self.split.targets
        within = step % self.per_epoch
        if within == 0 or self.order is None:
            self.order = torch.randperm(self.n, generator=self.generator)
        index = self.order[within * self.batch_size : (within + 1) * self.batch_size]
        index = index.to(self.split.inputs.device)
        return self.split.inputs[index], self.split.targets[index]


def _accuracy(output: Tensor, target: Tensor) -> Tensor:
    return (output.argmax(dim=-1) == target).to(torch.float64).mean()


@torch.no_grad()
def _evaluate(model: nn.Module, split: Split, loss_fn, task: str, chunk: int) -> tuple:
    was_training = model.training
    model.eval()
    try:
        total, correct = 0.0, 0.0
        for start in range(0, len(split), chunk):
            x = split.inputs[start : start + chunk]
            y = split.targets[start : start + chunk]
            out = first_tensor(model(x))
            total += float(loss_fn(out, y)) * x.shape[0]
            if task == "classification":
                correct += float((out.argmax(dim=-1) == y).sum())
    finally:
        model.train(was_training)
    n = len(split)
    return total / n, (correct / n if task == "classification" else None)


def _resolve(options: TrainOptions | None, overrides: Mapping[str, Any]) -> TrainOptions:
    if options is not None and not isinstance(options, TrainOptions):
        raise TrainOptionError(
            "options", f"must be TrainOptions or None, got {type(options).__name__}"
        )
    return (options or TrainOptions()).replace(**dict(overrides))


def train(
    model: nn.Module,
    data: TrainData,
    options: TrainOptions | None = None,
    *,
    probe_options: Any = None,
    taps: Any = "auto",
    device: str | torch.device | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` on ``data`` in place and return what was measured (module docstring).

    Args:
        model: an initialized ``nn.Module`` mapping a batch of ``data``'s inputs to logits
            (classification) or predictions (regression); a mapping output's first tensor is
            used. It is moved to ``device`` and ``options.dtype`` and trained in place.
        data: the :class:`~isokit.train.TrainData` (:func:`~isokit.train.load_data`).
        options: :class:`TrainOptions`; keyword ``overrides`` (``lr=0.05``) apply on top.
        probe_options: :class:`isokit.probe.ProbeOptions` of the checkpoint probes (default:
            the probe's defaults).
        taps: the taps of the gradient norms (as in the probe; ``"auto"``: the model's own).
        device: where to train (default: where the model's parameters are).
        meta: labels copied into :attr:`TrainResult.meta` (model, scheme).
        progress: a tqdm bar on stderr with the step, loss and accuracy.

    Raises:
        TrainOptionError: a bad option (also an unknown keyword), or checkpoints after the end.
        ValueError: a model without trainable parameters, or one that does not fit the data
            (checked on two held-out examples before the first step).

    Any error (also an interrupt) puts the model back as it was: values, dtype and device of
    every parameter and buffer, and every module's train/eval mode.

    Example:
        >>> import torch
        >>> from isokit.models import MLP
        >>> from isokit.train import load_data, train
        >>> data = load_data("linear-negative-identity", n_train=200, n_test=50)
        >>> model = MLP(10, 10, depth=3, activation="linear", bias=False)
        >>> result = train(model, data, optimizer="sgd-momentum", lr=0.05, steps=50, seed=0)
        >>> result.steps, result.diverged
        (50, False)
    """
    options = _resolve(options, overrides)
    total = options.total_steps(len(data.train))
    params = list(model.parameters())
    device = torch.device(device) if device is not None else _device_of(params)
    saved = _snapshot(model)
    try:
        return _run(model, data, options, total, device, probe_options, taps, meta, progress)
    except BaseException:
        _restore(model, *saved)
        raise


def _device_of(params: list[nn.Parameter]) -> torch.device:
    return params[0].device if params else torch.device("cpu")


def _tensors(model: nn.Module) -> dict[str, Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _snapshot(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, bool]]:
    """Copies of every parameter and buffer (value, dtype, device) and every module's mode."""
    tensors = {name: t.detach().clone() for name, t in _tensors(model).items()}
    return tensors, {name: m.training for name, m in model.named_modules()}


@torch.no_grad()
def _restore(model: nn.Module, tensors: dict[str, Tensor], modes: dict[str, bool]) -> None:
    # Assigning .data (as Module.to does) brings back the dtype and device as well as the values.
    for name, t in _tensors(model).items():
        if name in tensors:
            t.data = tensors[name]
    for name, module in model.named_modules():
        module.training = modes.get(name, module.training)


@torch.no_grad()
def _check_fit(model: nn.Module, data: TrainData, x: Tensor, y: Tensor) -> None:
    """Refuse a model whose output on two held-out examples cannot be scored against ``y``:
    a wrong input shape, a wrong number of logits or outputs (which the loss would broadcast)."""
    was_training = model.training
    model.eval()  # no dropout draw, no BatchNorm update: the check leaves no trace
    try:
        output = first_tensor(model(x))
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        raise ValueError(
            f"the model does not accept {data.name}'s inputs of shape {list(data.input_shape)} "
            f"per example ({type(exc).__name__}: {exc}); build it for that shape"
        ) from exc
    finally:
        model.train(was_training)
    got = list(output.shape[1:])
    if data.task == "classification":
        if got != [data.num_classes]:
            raise ValueError(
                f"the model outputs {got} per example; {data.name} has {data.num_classes} "
                f"classes, so it needs [{data.num_classes}] logits"
            )
    elif output[0].numel() != y[0].numel():
        raise ValueError(
            f"the model outputs {got} per example; {data.name}'s targets are "
            f"{list(y.shape[1:])}, so it needs {y[0].numel()} outputs"
        )


def _run(model, data, options, total, device, probe_options, taps, meta, progress) -> TrainResult:
    dtype = _DTYPES[options.dtype]
    model.to(device=device, dtype=dtype)
    train_split = _on(data.train, device, dtype, data.task)
    test = _on(data.test, device, dtype, data.task)
    probe_batch = test.inputs[: options.probe_examples]  # whatever eval_examples keeps
    if options.eval_examples is not None:
        test = Split(
            inputs=test.inputs[: options.eval_examples],
            targets=test.targets[: options.eval_examples],
        )
    _check_fit(model, data, test.inputs[:2], test.targets[:2])
    loss_fn = _loss_fn(data.task)
    batches = _Batches(train_split, options.batch_size, options.seed)
    optimizer = _optimizer(model, options)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total=total, schedule=options.schedule, warmup=options.warmup_steps),
    )
    tap_names = resolve_taps(model, taps) if options.grad_norms else []
    eval_at = set(options.eval_steps(total))
    check_at = set(options.checkpoints)
    log = RunLog()
    chunk = max(options.batch_size, 256)
    start = time.perf_counter()
    diverged_at = None

    def measure(step: int) -> None:
        if step in eval_at:
            loss, acc = _evaluate(model, test, loss_fn, data.task, chunk)
            log.eval_step.append(step)
            log.eval_loss.append(loss)
            log.eval_accuracy.append(math.nan if acc is None else acc)
        if step in check_at:
            found, error = probe_checkpoint(model, probe_batch, probe_options, step=step, meta=meta)
            if error is None:
                log.checkpoints[step] = found
            else:
                log.checkpoint_errors[step] = error

    from tqdm.auto import tqdm

    model.train()
    with (
        torch.random.fork_rng(devices=[]),
        TapGradients(model, tap_names) as grads,
        tqdm(total=total, disable=not progress, unit="step", file=sys.stderr, leave=False) as bar,
        _flushing_denormals(),
    ):
        torch.manual_seed(stream_seed(options.seed, TORCH_STREAM))
        for step in range(total):
            measure(step)
            logged = step % options.log_every == 0 or step == total - 1
            x, y = batches(step)
            if logged and tap_names:
                grads.arm(batch=x.shape[0])
            output = first_tensor(model(x))
            loss = loss_fn(output, y)
            loss_value = loss.item()
            classify = data.task == "classification"
            lr = scheduler.get_last_lr()[0]
            if not math.isfinite(loss_value):
                diverged_at = step
                nan_grads = [math.nan] * len(tap_names) if tap_names else None
                log.add(step, loss_value, math.nan if classify else None, lr, nan_grads)
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if logged:
                acc = float(_accuracy(output.detach(), y)) if classify else None
                log.add(step, loss_value, acc, lr, grads.collect() if tap_names else None)
                if progress:
                    shown = {"loss": f"{loss_value:.4g}"}
                    if acc is not None:
                        shown["acc"] = f"{acc:.3f}"
                    bar.set_postfix(shown, refresh=False)
            optimizer.step()
            scheduler.step()
            bar.update()
        if diverged_at is None:
            measure(total)
    model.eval()
    wall = time.perf_counter() - start
    return log.result(
        options=options,
        data=data,
        steps=total if diverged_at is None else diverged_at,
        diverged_at=diverged_at,
        tap_names=tap_names,
        wall=wall,
        device=device,
        meta=meta,
    )


@contextlib.contextmanager
def _flushing_denormals():
    """Flush subnormal floats to zero while training on the CPU, then restore the setting.

    A network whose activations collapse towards zero (a stalled or dying run) otherwise
    computes on subnormal numbers, which x86 CPUs handle about ten times slower; flushing them
    changes values below 1e-38 (float32) only.
    """
    # torch has no getter; set_flush_denormal returns whether the CPU supports it.
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
