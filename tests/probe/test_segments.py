"""The chained sweep in segments: several examples per ``vmap``, equal to dense ``jacrev``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.func import jacrev

import isokit.probe.exact as exact_mod
from isokit.models import MLP, ResNet, Transformer
from isokit.probe import profile
from isokit.probe.chain import check_segments
from isokit.probe.exact import tap_grams
from isokit.probe.hygiene import probe_context
from isokit.probe.taps import resolve_taps, run_with_taps

from .conftest import (
    TVResNet,
    dense_jacobians,
    eval_copy,
    randomize_batchnorm,
    reference_gram,
    rel_fro,
)

TOL = 1e-9


def _all_tap_jacobians(model, x):
    """Every tap's ``J_l`` (float64) of ONE example by one ``jacrev`` of all taps at once (the
    conftest reference, tap by tap, is quadratic in depth)."""
    m = eval_copy(model)
    mods = [m.get_submodule(n) for n in resolve_taps(m)]

    def taps(xx):
        return tuple(h.reshape(-1) for h in run_with_taps(m, mods, xx.unsqueeze(0)).outputs)

    return [J.reshape(J.shape[0], -1) for J in jacrev(taps)(x.detach().double())]


def _assert_matches_reference(model, x, *, fast_reference=False, **kwargs):
    res = tap_grams(model, x, **kwargs)
    for b in range(x.shape[0]):
        Js = _all_tap_jacobians(model, x[b]) if fast_reference else dense_jacobians(model, x[b])
        for tap, J in zip(res.taps, Js, strict=True):
            assert rel_fro(tap.gram[b], reference_gram(J, tap.side)) <= TOL, tap.name
            s_ref = torch.linalg.svdvals(J)[: tap.r]
            err = float((tap.singular_values[b] - s_ref).abs().max()) / float(s_ref[0])
            assert err <= 1e-7, (tap.name, err)
    return res


class LongSkip(nn.Module):
    """A deep tanh MLP whose layer ``to`` also reads the output of layer ``frm``."""

    def __init__(self, n_in=256, width=96, depth=24, frm=3, to=20) -> None:
        super().__init__()
        self.src, self.dst = frm, to
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(n_in if i == 0 else width, width), nn.Tanh())
            for i in range(depth)
        )

    def forward(self, x):
        skip = None
        for i, layer in enumerate(self.layers):
            if i == self.dst:
                x = x + skip
            x = layer(x)
            if i == self.src:
                skip = x
        return x


class SkipOverB(nn.Module):
    """Taps ``a``, ``b``, ``c`` where ``c`` reads ``a`` as well as ``b``."""

    def __init__(self, n: int = 6) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(n, n), nn.Tanh())
        self.b = nn.Sequential(nn.Linear(n, n), nn.Tanh())
        self.c = nn.Linear(n, n)
        self.taps = ["a", "b", "c"]

    def forward(self, x):
        h = self.a(x)
        return self.c(self.b(h) + h)


def test_deep_mlp_with_several_examples_runs_in_segments_and_matches_jacrev():
    torch.manual_seed(0)
    # 4·D > n_in keeps every tap in forward mode; three examples run as chunks of 2 and 1
    model = MLP(256, 96, 24, activation="tanh")
    x = torch.randn(3, 256)
    res = _assert_matches_reference(model, x, fast_reference=True)
    assert res.plan.strategy == "chained" and res.plan.example_chunk == 2
    assert len(res.plan.groups) > 1 and min(map(len, res.plan.groups)) >= 2
    assert [i for seg in res.plan.groups for i in seg] == list(range(24))
    assert res.chain_checked is True
    # the joint sweep one example at a time (what an explicit example_chunk keeps) agrees
    seg = profile(model, x, method="exact")
    one = profile(model, x, method="exact", example_chunk=1)
    assert seg.meta["exact"]["strategy"] == "chained"
    assert one.meta["exact"]["strategy"] == "joint"
    for a, b in zip(seg.taps, one.taps, strict=True):
        # the Gram's eigenvalues agree to round-off in G (Weyl: |Δλ| ≤ ‖ΔG‖ ~ r·ε·λ_max)
        lam_a, lam_b = a.singular_values**2, b.singular_values**2
        assert (abs(lam_a - lam_b).max(1) <= 1e-12 * lam_b[:, 0]).all(), a.name


def test_a_skip_across_a_segment_boundary_keeps_the_joint_sweep():
    torch.manual_seed(0)
    model = LongSkip()
    x = torch.randn(3, 256)
    res = _assert_matches_reference(model, x, fast_reference=True)
    assert res.plan.strategy == "joint" and res.plan.example_chunk == 1


def test_check_segments_looks_at_each_boundary():
    model = SkipOverB()
    x = torch.randn(6, dtype=torch.float64)
    names = resolve_taps(model)
    with probe_context(model) as m:
        mods = [m.get_submodule(n) for n in names]
        primal = run_with_taps(m, mods, x.unsqueeze(0)).outputs
        # c reads a and b: a is a boundary it depends through, b is not
        assert check_segments(m, mods, [[0], [1, 2]], x, primal)
        assert not check_segments(m, mods, [[0, 1], [2]], x, primal)
        assert not check_segments(m, mods, [[0], [1], [2]], x, primal)


def _forced_segments(plan, n_in, dims, *, n_examples, **kwargs):
    """Segments of two taps with every example in one vmap, whatever the memory."""
    if plan.strategy != "joint" or len(plan.groups) != 1:
        return None
    fwd = plan.groups[0]
    segs = [fwd[i : i + 2] for i in range(0, len(fwd), 2)]
    return replace(plan, strategy="chained", example_chunk=n_examples, groups=segs)


def _cases():
    torch.manual_seed(0)
    return {
        "resnet-bn": (randomize_batchnorm(ResNet(depth=14, width=4, norm="batch")), (2, 3, 8, 8)),
        "torchvision-blocks": (randomize_batchnorm(TVResNet(width=3)), (2, 3, 6, 6)),
        "transformer": (Transformer(5, 8, 2, 16, 4), (2, 4, 8)),
    }


CASES = _cases()


@pytest.mark.parametrize("case", list(CASES))
def test_segments_through_convolutions_batchnorm_and_attention_match_jacrev(case, monkeypatch):
    monkeypatch.setattr(exact_mod, "plan_segments", _forced_segments)
    model, shape = CASES[case]
    torch.manual_seed(1)
    x = torch.randn(*shape)
    res = _assert_matches_reference(model, x)
    assert res.plan.strategy == "chained" and len(res.plan.groups) >= 2
    assert res.plan.example_chunk == shape[0]
