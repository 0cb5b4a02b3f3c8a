"""signal(): forward signal and gradient norms per tap against explicit autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from isokit.models import MLP
from isokit.probe import signal
from isokit.probe.forward_signal import _mean_cosine


def _manual(model: MLP, x: torch.Tensor, u_seed: int | None, loss=None):
    """Explicit float64 forward keeping every tap output, then autograd."""
    m = model.double()
    hs = []
    h = x.double()
    for fc, act in zip(m.fcs, m.acts, strict=True):
        h = act(fc(h))
        h.retain_grad()
        hs.append(h)
    out = h
    if u_seed is not None:
        gen = torch.Generator().manual_seed(u_seed)
        u = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        total = (u * out).sum()
    else:
        total = loss(out).sum()
    params = [p for fc in m.fcs for p in fc.parameters()]
    grads = torch.autograd.grad(total, hs + params)
    return hs, grads[: len(hs)], grads[len(hs) :]


def test_signal_matches_explicit_autograd():
    torch.manual_seed(0)
    model = MLP(5, 6, 3, activation="tanh")
    x = torch.randn(4, 5)
    sig = signal(model, x, seed=7)
    hs, gh, gp = _manual(model, x, 7)
    B = 4
    for i, (h, g) in enumerate(zip(hs, gh, strict=True)):
        h, g = h.detach(), g.detach()
        per_q = (h * h).sum(1) / h.shape[1]
        assert sig.q[i] == pytest.approx(float(per_q.mean()), rel=1e-12)
        assert sig.q_std[i] == pytest.approx(float(per_q.std(unbiased=False)), rel=1e-10)
        per_g = (g * g).sum(1)
        assert sig.grad[i] == pytest.approx(float(per_g.mean()), rel=1e-12)
        assert sig.grad_per_unit[i] == pytest.approx(float(per_g.mean()) / 6, rel=1e-12)
        hn = h / h.norm(dim=1, keepdim=True)
        cos = [float(hn[a] @ hn[b]) for a in range(B) for b in range(B) if a != b]
        assert sig.cos[i] == pytest.approx(np.mean(cos), rel=1e-12)
        # the block of tap i is fcs.i: its parameter gradient of the mean loss
        w, bias = gp[2 * i], gp[2 * i + 1]
        ref = math.sqrt(float((w / B).pow(2).sum() + (bias / B).pow(2).sum()))
        assert sig.param_grad[i] == pytest.approx(ref, rel=1e-12)
    assert sig.loss == "projection" and sig.seed == 7 and sig.n_examples == 4
    assert sig.input_q == pytest.approx(float((x.double() ** 2).mean()), rel=1e-12)
    assert sig.taps == model.taps and sig.D == [6, 6, 6]


def test_custom_loss_and_generator():
    torch.manual_seed(1)
    model = MLP(4, 5, 2, activation="tanh")
    x = torch.randn(3, 4)

    def loss(out):
        return (out**2).sum(1)

    sig = signal(model, x, loss=loss)
    hs, gh, _ = _manual(model, x, None, loss=loss)
    for i, g in enumerate(gh):
        assert sig.grad[i] == pytest.approx(float((g * g).sum(1).mean()), rel=1e-12)
    assert sig.loss == "custom" and sig.seed is None
    a = signal(model, x, generator=torch.Generator().manual_seed(5))
    b = signal(model, x, seed=5)
    np.testing.assert_array_equal(a.grad, b.grad)


def test_zero_rows_are_dropped_from_the_cosine():
    H = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    c, dropped = _mean_cosine(H)
    assert dropped == 1 and c == pytest.approx(1 / math.sqrt(2))
    c1, d1 = _mean_cosine(H[:2])
    assert math.isnan(c1) and d1 == 1
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Tanh())
    x = torch.randn(3, 3)
    x[1] = 0
    sig = signal(model, x)
    assert sig.cos_dropped.tolist() == [1, 1]
    assert np.isfinite(sig.cos).all()


def test_gradient_signal_is_an_apjn_on_average():
    # E_u ‖Jᵀu‖² = ‖J‖_F²: averaged over many projections g_l approaches ‖∂f/∂h_l‖_F².
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(64, 4).repeat(1, 1)
    sig = signal(model, x, taps=["1"], seed=0)
    W = model[2].weight.detach().double()
    assert sig.grad[0] == pytest.approx(float((W * W).sum()), rel=0.35)


def test_one_forward_pass_besides_the_dry_run():
    # The tap shapes come from the preparation's dry run on one example; no extra full pass.
    model = MLP(6, 6, depth=3)
    batches = []
    model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    signal(model, torch.randn(5, 6))
    assert batches == [1, 5]


class _SeqFirst(nn.Module):
    """A tap whose output has the batch on axis 1: (S, B, D)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(x).transpose(0, 1)).transpose(0, 1)


def test_tap_outputs_without_the_batch_on_axis_0_are_refused():
    with pytest.raises(ValueError, match=r"batch on axis 0, but tap 'out' gives shape \(3, 1, 4\)"):
        signal(_SeqFirst(), torch.randn(2, 3, 4), taps=["fc", "out"])
