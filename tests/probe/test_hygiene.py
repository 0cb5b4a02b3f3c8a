"""Hygiene (``docs/probes.md §6``, ``§9.9``): the model and the global flags stay as found."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

from isokit.models import MLP, ResNet
from isokit.probe import block_profile, profile, signal
from isokit.probe.hygiene import global_flags, probe_context, snapshot_flags

from .conftest import randomize_batchnorm

profile_module = importlib.import_module("isokit.probe.depth_profile")


def _state(model: nn.Module):
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "dtypes": [p.dtype for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        "grads": [p.grad for p in model.parameters()],
    }


def _assert_same(before, after):
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["dtypes"] == after["dtypes"]
    assert before["hooks"] == after["hooks"]
    assert all(g is None for g in after["grads"])
    for a, b in zip(
        before["params"] + before["buffers"], after["params"] + after["buffers"], strict=True
    ):
        assert torch.equal(a, b)


def _bn_model():
    torch.manual_seed(0)
    model = randomize_batchnorm(ResNet(depth=8, width=2, norm="batch"))
    model.train()  # the user's model is in train mode
    return model


@pytest.mark.parametrize("fn", ["profile-exact", "profile-lanczos", "block_profile", "signal"])
def test_model_and_flags_untouched(fn):
    model = _bn_model()
    calls = []
    handle = model.fc.register_forward_hook(lambda m, a, o: calls.append(1))
    before, flags = _state(model), snapshot_flags()
    grad_mode = torch.is_grad_enabled()
    x = torch.randn(2, 3, 6, 6)
    x0 = x.clone()
    if fn == "profile-exact":
        profile(model, x, method="exact")
    elif fn == "profile-lanczos":
        profile(model, x, method="lanczos", n_probes=4, lanczos_steps=3)
    elif fn == "block_profile":
        block_profile(model, x)
    else:
        signal(model, x)
    _assert_same(before, _state(model))
    assert snapshot_flags() == flags and torch.is_grad_enabled() == grad_mode
    assert torch.equal(x, x0)
    assert model.training and model.layer1[0].bn1.training
    handle.remove()


def test_flags_restored_when_the_probe_raises(monkeypatch):
    model = _bn_model()
    before, flags = _state(model), snapshot_flags()
    seen = {}

    def boom(*args, **kwargs):
        seen.update(snapshot_flags())
        raise RuntimeError("injected failure")

    monkeypatch.setattr(profile_module, "exact_spectra", boom)
    with pytest.raises(RuntimeError, match="injected"):
        profile(model, torch.randn(2, 3, 6, 6), method="exact")
    # inside the probe: no grad, TF32 off, cudnn deterministic without autotuning, no fast path
    assert seen["grad_enabled"] is False
    assert seen["cudnn.benchmark"] is False and seen["cudnn.deterministic"] is True
    assert seen["mha.fastpath"] is False
    if "cuda.matmul.fp32_precision" in seen:
        assert seen["cuda.matmul.fp32_precision"] == "ieee"
        assert seen["cudnn.conv.fp32_precision"] == "ieee"
    else:
        assert seen["cuda.matmul.allow_tf32"] is False and seen["cudnn.allow_tf32"] is False
    assert snapshot_flags() == flags
    _assert_same(before, _state(model))


def test_non_default_flags_are_restored():
    saved = snapshot_flags()
    try:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
        if "cuda.matmul.fp32_precision" in saved:
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.cudnn.conv.fp32_precision = "tf32"
        else:
            torch.backends.cuda.matmul.allow_tf32 = True
        custom = snapshot_flags()
        with torch.no_grad():
            with pytest.raises(ValueError), global_flags():
                assert not torch.backends.cudnn.benchmark
                raise ValueError("inside")
            assert not torch.is_grad_enabled()
        assert snapshot_flags() == {**custom, "grad_enabled": True}
    finally:
        torch.backends.cudnn.benchmark = saved["cudnn.benchmark"]
        torch.backends.cudnn.deterministic = saved["cudnn.deterministic"]
        if "cuda.matmul.fp32_precision" in saved:
            torch.backends.cuda.matmul.fp32_precision = saved["cuda.matmul.fp32_precision"]
            torch.backends.cudnn.conv.fp32_precision = saved["cudnn.conv.fp32_precision"]
        else:
            torch.backends.cuda.matmul.allow_tf32 = saved["cuda.matmul.allow_tf32"]
    assert snapshot_flags() == saved


def test_probe_copy_is_float64_eval_and_detached():
    model = MLP(3, 4, 2).train()
    with probe_context(model) as m:
        assert m is not model and not m.training
        assert all(p.dtype == torch.float64 and not p.requires_grad for p in m.parameters())
        assert not torch.is_grad_enabled()
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(TypeError), probe_context(model, dtype=torch.int64):
        pass


def test_eval_batchnorm_is_batch_independent_and_deterministic():
    model = _bn_model()
    x = torch.randn(3, 3, 6, 6)
    full = profile(model, x, method="exact")
    alone = profile(model, x[1:2], method="exact")
    again = profile(model, x, method="exact")
    for a, b, c in zip(full.taps, alone.taps, again.taps, strict=True):
        np.testing.assert_allclose(
            a.singular_values[1], b.singular_values[0], rtol=1e-12, atol=1e-15
        )
        np.testing.assert_array_equal(a.singular_values, c.singular_values)


def test_float32_probe_dtype_is_recorded():
    torch.manual_seed(0)
    model = MLP(4, 5, 2, activation="tanh")
    prof = profile(model, torch.randn(2, 4), dtype=torch.float32)
    ref = profile(model, torch.randn(2, 4).double().float(), dtype=torch.float64)
    assert prof.meta["dtype"] == "float32" and ref.meta["dtype"] == "float64"
    assert all(t.singular_values.dtype == np.float64 for t in prof.taps)
