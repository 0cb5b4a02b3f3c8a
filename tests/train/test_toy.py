"""The linear toy (docs/training.md): a 3-layer 10×10 linear network started at the identity
(IDInit) learning y = −x. Full-batch gradient descent stalls at ½·tr Σ ≈ d/2 following the
scalar dynamics of each eigendirection; momentum 0.9 and minibatch noise converge; the
effective step η/(1−β) = 1 alone, without momentum, diverges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import isokit
from isokit.train import load_data, train
from tests.train.reference import mlp

D, LR, STEPS, N = 10, 0.1, 3000, 2000


@pytest.fixture(scope="module")
def data():
    return load_data("linear-negative-identity", seed=0, n_train=N, n_test=500, dim=D)


def _identity_net():
    return isokit.init.apply(mlp(D, D, depth=3, activation="linear", bias=False), "idinit", seed=0)


def _run(data, **options):
    model = _identity_net()
    result = train(model, data, lr=LR, steps=STEPS, dtype="float64", **options)
    w1, w2, w3 = (fc.weight.detach() for fc in model.fcs)
    return result, w3 @ w2 @ w1


def _scalar_losses(data, steps: int) -> np.ndarray:
    """Every eigendirection of Σ = XᵀX/N (eigenvalue λ) on its own: the layers stay w·I there,
    the product w³, the loss ½·Σ λ(w³+1)², and gradient descent on one layer's w moves it by
    −η·λ·w²(w³+1), the same for all three layers."""
    x = data.train.inputs.numpy()
    lam = np.linalg.eigvalsh(x.T @ x / len(x))
    w, losses = np.ones_like(lam), []
    for _ in range(steps):
        losses.append(0.5 * np.sum(lam * (w**3 + 1) ** 2))
        w = w - LR * lam * w**2 * (w**3 + 1)
    assert (w > 0).all()  # every direction approaches the saddle w = 0 and never crosses it
    return np.array(losses)


def test_full_batch_gradient_descent_stalls_at_half_the_dimension(data):
    result, product = _run(data, optimizer="sgd", batch_size=N)
    assert not result.diverged and result.effective_lr == LR
    half_trace = 0.5 * float(torch.trace(data.train.inputs.T @ data.train.inputs)) / N
    assert abs(result.loss[-1] - D / 2) < 0.1 * D / 2  # within 10 % of d/2 = 5 ...
    assert result.loss[-1] == pytest.approx(half_trace, rel=1e-4)  # ... ½·tr Σ: output ≈ 0
    assert abs(result.final_loss - D / 2) < 0.1 * D / 2  # held out as well
    assert float(product.norm()) < 1e-3  # W₃W₂W₁ → 0, far from −I
    # The curve is the scalar dynamics of the eigendirections (IDInit's tiny loosening noise
    # is the only departure from the identity start).
    np.testing.assert_allclose(result.loss[:1000], _scalar_losses(data, 1000), rtol=1e-5)


def test_momentum_converges_at_an_effective_step_of_one(data):
    result, product = _run(data, optimizer="sgd-momentum", momentum=0.9, batch_size=N)
    assert result.effective_lr == pytest.approx(LR / (1 - 0.9), rel=1e-12)  # 1.0
    assert result.loss[-1] < 1e-8 and result.final_loss < 1e-8
    torch.testing.assert_close(product, -torch.eye(D, dtype=product.dtype), atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minibatch_noise_converges(data, seed):
    result, product = _run(data, optimizer="sgd", batch_size=200, seed=seed)
    assert result.effective_lr == LR
    assert result.loss[-1] < 1e-8 and result.final_loss < 1e-8
    torch.testing.assert_close(product, -torch.eye(D, dtype=product.dtype), atol=1e-6, rtol=0)


def test_the_effective_step_alone_diverges(data):
    """The control: plain full-batch GD at lr = η/(1−β) = 1.0 is no substitute for momentum.
    Near −I the loss of one eigendirection, ½λ(w₁w₂w₃ + 1)², has curvature 3λ along
    w₁ = w₂ = w₃, so a step above 2/(3λ) ≈ 0.67 cannot settle there: the first step lands
    near −I, the loss then bounces between about 1 and 3 for some thirty steps, escapes and
    overflows."""
    model = _identity_net()
    result = train(model, data, lr=1.0, steps=STEPS, batch_size=N, dtype="float64")
    assert result.diverged and result.diverged_at < 100
    assert not np.isfinite(result.loss[-1]) and np.isfinite(result.loss[:-1]).all()
    assert result.loss[1] < 0.1 * result.loss[0]  # the jump towards −I ...
    assert result.loss[1:-1].min() > 1e-3  # ... never becomes convergence
    assert result.loss[-2] > result.loss[0]
