"""Jacobians from a start module (``docs/probes.md §3.6``) against dense float64 ``jacrev``.

The references are built here, independently of the probe: on the ResNet by running the stages
after ``start`` directly on ``z``, on the Transformer by the blocks after ``start`` or by a hook
written here that replaces the start module's output with ``z`` (a partial derivative: the
residual stream around ``start`` keeps its primal value).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev

import isokit
from isokit.models import ResNet, Transformer
from isokit.probe import ProbeOptionError, ProbeOptions
from isokit.probe.exact import exact_spectra
from isokit.probe.prepare import prepare
from tests.probe.conftest import _fastpath_off, eval_copy


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    model = ResNet(depth=8, width=4, norm="none")
    return isokit.init.apply(model, "kaiming-normal", seed=0)


@pytest.fixture(scope="module")
def transformer() -> nn.Module:
    model = Transformer(depth=3, d_model=8, heads=2, d_ff=16, seq_len=4)
    return isokit.init.apply(model, "xavier-normal", seed=0)


def _inputs(shape: tuple[int, ...], n: int = 2) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(1))


def _svals(fn, z: torch.Tensor) -> list[np.ndarray]:
    """Singular values of the Jacobian of every output of ``fn`` at ``z`` (float64 jacrev)."""
    with _fastpath_off():
        jacs = jacrev(fn)(z)
    return [torch.linalg.svdvals(J.reshape(-1, z.numel())).numpy() for J in jacs]


def _resnet_reference(model: nn.Module, x: torch.Tensor) -> list[list[np.ndarray]]:
    """From ``layer1``: ``z ↦ (layer2(z), layer3(layer2(z)), fc(mean(layer3(·))))``, per example."""
    m = eval_copy(model)
    out = []
    for xb in x.double():
        z = m.layer1(m.stem(xb[None]))[0]

        def fn(z):
            h2 = m.layer2(z[None])
            h3 = m.layer3(h2)
            return h2, h3, m.fc(h3.mean(dim=(-2, -1)))

        out.append(_svals(fn, z))
    return out


def _hooked_reference(model: nn.Module, x: torch.Tensor, start: str, taps: list[str]):
    """``z ↦ taps`` with ``start``'s output replaced by ``z`` through a hook written here."""
    m = eval_copy(model)
    start_module = m.get_submodule(start)

    def run(xb: torch.Tensor, z: torch.Tensor | None) -> dict[str, torch.Tensor]:
        got: dict[str, torch.Tensor] = {}

        def on_start(mod, args, out):
            got["start"] = out
            return None if z is None else z[None]

        hooks = [start_module.register_forward_hook(on_start)]
        for t in taps:
            hooks.append(
                m.get_submodule(t).register_forward_hook(
                    lambda mod, a, o, t=t: got.setdefault(t, o)
                )
            )
        try:
            m(xb[None])
        finally:
            for h in hooks:
                h.remove()
        return got

    out = []
    for xb in x.double():
        z0 = run(xb, None)["start"][0]
        out.append(_svals(lambda z, xb=xb: tuple(run(xb, z)[t] for t in taps), z0))
    return out


def _assert_spectra(prof, reference, names):
    assert [t.name for t in prof.taps] == names
    for i, tap in enumerate(prof.taps):
        for b, ref in enumerate(reference):
            s = tap.singular_values[b]
            want = ref[i][: tap.r]
            np.testing.assert_allclose(s, want, rtol=0, atol=1e-9 * max(1.0, want[0]))


def test_resnet_from_layer1_matches_the_stages_after_it(resnet):
    x = _inputs((3, 4, 4))
    prof = isokit.probe.profile(resnet, x, start="layer1", method="exact")
    _assert_spectra(prof, _resnet_reference(resnet, x), ["layer2.0", "layer3.0", "fc"])
    assert prof.meta["start"] == "layer1" and prof.meta["start_shape"] == [4, 4, 4]
    assert prof.meta["n_in"] == 64 and prof.meta["input_shape"] == [3, 4, 4]
    assert all(t.n_in == 64 for t in prof.taps) and [t.depth for t in prof.taps] == [1, 2, 3]


@pytest.mark.parametrize(
    ("strategy", "mode"), [("chained", "forward"), ("groups", "forward"), ("joint", "reverse")]
)
def test_every_exact_sweep_from_start(resnet, strategy, mode):
    x = _inputs((3, 4, 4))
    opts = ProbeOptions(start="layer1")
    with prepare(resnet, x, opts) as prep:
        ex = exact_spectra(prep.copy, prep.x, prep.names, strategy=strategy, mode=mode)
    assert ex.plan.strategy == strategy or mode == "reverse"
    reference = _resnet_reference(resnet, x)
    for i, tap in enumerate(ex.taps):
        for b, ref in enumerate(reference):
            want = ref[i][: tap.r]
            got = tap.singular_values[b].numpy()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * max(1.0, want[0]))


def test_transformer_from_a_block_and_from_inside_one(transformer):
    x = _inputs((4, 8))
    # From a block: the blocks after it, run directly.
    m = eval_copy(transformer)
    reference = []
    for xb in x.double():
        h = xb[None] + m.pos_embedding
        z = m.blocks[0](h)[0]

        def fn(z):
            h1 = m.blocks[1](z[None])
            return h1, m.blocks[2](h1)

        reference.append(_svals(fn, z))
    prof = isokit.probe.profile(transformer, x, start="blocks.0", method="exact")
    _assert_spectra(prof, reference, ["blocks.1", "blocks.2"])
    # From the attention inside block 0: its residual stream is held at its primal value.
    taps = ["blocks.0", "blocks.1", "blocks.2"]
    prof = isokit.probe.profile(transformer, x, start="blocks.0.attn", method="exact")
    _assert_spectra(prof, _hooked_reference(transformer, x, "blocks.0.attn", taps), taps)


def test_partial_derivative_keeps_the_skip_path_primal():
    # h = tanh(W x) + x with start the Linear: ∂h/∂z = diag(1 − tanh²), the skip adds nothing.
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.act = nn.Tanh()
            self.taps = ["act", "out"]
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(self.act(self.lin(x)) + x)

    model = Skip()
    x = _inputs((3,), n=1)
    prof = isokit.probe.profile(model, x, start="lin", method="exact")
    pre = eval_copy(model).lin(x.double())[0]
    want = np.sort((1 - torch.tanh(pre) ** 2).numpy())[::-1]
    for tap in prof.taps:
        np.testing.assert_allclose(tap.singular_values[0], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("model_name", ["resnet", "transformer"])
def test_lanczos_from_start_within_three_standard_errors(request, model_name):
    model = request.getfixturevalue(model_name)
    start, shape = ("layer1", (3, 4, 4)) if model_name == "resnet" else ("blocks.0", (4, 8))
    slq = ["fc"] if model_name == "resnet" else "none"  # Ritz bounds once, moments everywhere
    x = _inputs(shape)
    exact = isokit.probe.profile(model, x, start=start, method="exact")
    lz = isokit.probe.profile(
        model, x, start=start, method="lanczos", lanczos_steps=8, slq_taps=slq
    )
    assert lz.meta["method"] == "lanczos" and lz.names == exact.names
    for te, tl in zip(exact.taps, lz.taps, strict=True):
        assert tl.n_in == te.n_in
        m1, se = tl.stats["m1"], tl.se["m1"]
        assert np.all(np.abs(m1 - te.stats["m1"]) <= 3 * se + 1e-12 * te.stats["m1"])
        if tl.ritz is not None:  # a Ritz value never exceeds the largest singular value
            assert np.all(tl.ritz["sigma_max_lower"] <= te.singular_values[:, 0] * (1 + 1e-9))


def test_auto_taps_keep_only_those_after_start(resnet):
    x = _inputs((3, 4, 4), n=1)
    kept = isokit.probe.profile(resnet, x, start="stem", method="exact").names
    assert kept == ["layer1.0", "layer2.0", "layer3.0", "fc"]
    # A tap that contains start runs after it; a predicate's taps are filtered like "auto".
    prof = isokit.probe.profile(
        resnet, x, start="layer2.0.conv1", taps=lambda n, m: n in ("layer1", "layer2", "fc")
    )
    assert prof.names == ["layer2", "fc"]


def test_signal_and_blocks_are_measured_at_the_taps_after_start(resnet):
    x = _inputs((3, 4, 4))
    prof = isokit.probe.profile(
        resnet, x, start="layer1", method="exact", with_signal=True, with_blocks=True
    )
    full = isokit.probe.signal(resnet, x)
    assert prof.signal.taps == prof.names == [t.name for t in prof.blocks]
    keep = [full.taps.index(n) for n in prof.names]
    np.testing.assert_allclose(prof.signal.q, full.q[keep], rtol=1e-12)
    np.testing.assert_allclose(prof.signal.grad, full.grad[keep], rtol=1e-12)
    assert isokit.probe.signal(resnet, x, start="layer1").taps == prof.names
    assert isokit.probe.block_profile(resnet, x, start="layer1").names == prof.names
    assert isokit.probe.profile(resnet, x, method="exact").meta["start"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": "layr1"}, r"start: .*no module named 'layr1'.*close matches: layer1"),
        ({"start": "fc"}, r"start: no tap runs after 'fc'"),
        ({"start": "layer1", "taps": ["stem", "layer2.0"]}, r"tap 'stem' runs at or before start"),
        ({"start": "layer1", "taps": ["layer1", "fc"]}, r"tap 'layer1' runs at or before start"),
    ],
)
def test_bad_start_is_refused(resnet, kwargs, match):
    with pytest.raises(ProbeOptionError, match=match):
        isokit.probe.profile(resnet, _inputs((3, 4, 4), n=1), **kwargs)


def test_a_shared_start_module_is_refused():
    lin = nn.Linear(2, 2)
    model = nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh())
    with pytest.raises(ProbeOptionError, match=r"start: module '0' runs 2 times"):
        isokit.probe.profile(model, _inputs((2,), n=1), start="0", taps=["3"])


def test_start_view_refuses_a_batch_it_does_not_hold():
    from isokit.probe.start import StartView
    from isokit.probe.taps import TapError

    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    view = StartView(model, "0", torch.zeros(3, 2))
    with pytest.raises(TapError, match=r"bind one example with .at\(b\)"):
        view(torch.zeros(1, 2))
    assert math.isclose(float(view(torch.zeros(3, 2)).sum()), 0.0)
