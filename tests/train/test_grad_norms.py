"""Per-tap gradient norms against an independent computation: the model's layers run by hand,
per-example losses differentiated with ``torch.autograd.grad`` at every tap output, in float64:
``g_l = √((1/B)·Σ_i ‖∂ℓ_i/∂h_l[i]‖²)``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from isokit.train import load_data, train
from isokit.train.grad_norms import TapGradients
from tests.train.reference import batch_order, blobs, mlp, reference_run


def _by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> np.ndarray:
    """RMS over the batch of the per-example gradient norm at acts.0.., head; the forward pass
    written out from the weights, not the module's forward."""
    h, outputs = x, []
    for fc in model.fcs:
        h = torch.tanh(h @ fc.weight.T + fc.bias)
        outputs.append(h)
    out = h @ model.head.weight.T + model.head.bias
    outputs.append(out)
    if task == "classification":
        per_example = -functional.log_softmax(out, dim=1).gather(1, y[:, None]).squeeze(1)
    else:
        per_example = 0.5 * ((out - y) ** 2).sum(dim=1)
    # Examples are independent, so row i of ∂(Σ_i ℓ_i)/∂h_l is ∂ℓ_i/∂h_l[i].
    grads = torch.autograd.grad(per_example.sum(), outputs)
    return np.array([float(g.square().sum(dim=1).mean().sqrt()) for g in grads])


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_grad_norms_equal_per_example_autograd_at_the_taps(task):
    if task == "classification":
        data = blobs()
    else:
        data = load_data("teacher-student", n_train=96, n_test=8, in_features=6, out_features=3)
    model = mlp(6, 7, depth=3, out_features=3, activation="tanh").double()
    start = copy.deepcopy(model)
    steps, batch, seed = 5, 20, 1
    result = train(
        model,
        data,
        optimizer="sgd-momentum",
        lr=0.1,
        batch_size=batch,
        steps=steps,
        seed=seed,
        log_every=2,
        grad_norms=True,
        dtype="float64",
    )
    assert result.grad_taps == ["acts.0", "acts.1", "acts.2", "head"]
    assert result.step.tolist() == [0, 2, 4] and result.grad_norms.shape == (3, 4)
    order = batch_order(len(data.train), batch, seed, steps)
    for row, step in enumerate(result.step):
        twin = copy.deepcopy(start)
        reference_run(twin, data, optimizer="sgd", momentum=0.9, lr=0.1, batch_size=batch,
                      steps=int(step), seed=seed)  # fmt: skip
        index = order[step]
        want = _by_hand(twin, data.train.inputs[index], data.train.targets[index], task)
        np.testing.assert_allclose(result.grad_norms[row], want, rtol=1e-10, atol=0)


def test_a_tap_the_gradient_does_not_reach_reads_nan():
    """A frozen model head in no_grad: its output has no gradient, the others do."""
    model = mlp(4, 5, depth=2, out_features=2)
    with TapGradients(model, ["acts.0", "head"]) as grads:
        grads.arm(batch=3)
        x = torch.randn(3, 4)
        hidden = model.acts[1](model.fcs[1](model.acts[0](model.fcs[0](x))))
        with torch.no_grad():
            model.head(hidden)
        hidden.square().sum().backward()
        values = grads.collect()
    assert np.isnan(values[1]) and np.isfinite(values[0]) and values[0] > 0


def test_hooks_are_removed_after_the_run():
    model = mlp(6, 7, depth=2, out_features=3)
    train(model, blobs(), steps=2, grad_norms=True)
    assert all(not m._forward_hooks for m in model.modules())
