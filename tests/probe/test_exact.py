"""Exact tier: every streamed Gram equals the dense jacrev reference (``docs/probes.md §9.1``)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from isokit.models import MLP, ConvNet, ResNet, Transformer
from isokit.probe import profile
from isokit.probe.exact import ProbeMemoryError, estimate_exact_memory, plan_exact, tap_grams
from isokit.probe.hygiene import probe_context
from isokit.probe.sweeps import check_chain
from isokit.probe.taps import TapError, resolve_taps

from .conftest import (
    SkipAcross,
    TVResNet,
    dense_jacobians,
    randomize_batchnorm,
    reference_gram,
    rel_fro,
)

TOL = 1e-9


def _encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(
        d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True
    )
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


def _cases():
    torch.manual_seed(0)
    return {
        "mlp-tanh": (MLP(10, 12, 4, out_features=3, activation="tanh"), (2, 10)),
        "mlp-relu": (MLP(10, 12, 3, activation="relu"), (2, 10)),
        "convnet": (ConvNet(2, 3, 3, activation="tanh"), (2, 2, 5, 5)),
        "resnet": (ResNet(depth=8, width=4), (2, 3, 8, 8)),
        "resnet-bn": (randomize_batchnorm(ResNet(depth=8, width=4, norm="batch")), (2, 3, 8, 8)),
        "transformer": (Transformer(2, 8, 2, 16, 4), (2, 4, 8)),
        "torchvision-blocks": (randomize_batchnorm(TVResNet(width=3)), (2, 3, 6, 6)),
        "nn.TransformerEncoder": (_encoder(), (2, 3, 8)),
    }


CASES = _cases()


def _assert_matches_reference(model, x, **kwargs):
    res = tap_grams(model, x, **kwargs)
    for b in range(x.shape[0]):
        Js = dense_jacobians(model, x[b])
        assert len(Js) == len(res.taps)
        for tap, J in zip(res.taps, Js, strict=True):
            assert tap.gram.shape[1:] == (tap.r, tap.r)
            ref = reference_gram(J, tap.side)
            assert rel_fro(tap.gram[b], ref) <= TOL, (tap.name, rel_fro(tap.gram[b], ref))
            s_ref = torch.linalg.svdvals(J)[: tap.r]
            err = float((tap.singular_values[b] - s_ref).abs().max()) / float(s_ref[0])
            assert err <= 1e-7, (tap.name, err)  # Gram eigenvalues: absolute error ~ ε·s_1
    return res


@pytest.mark.parametrize("case", list(CASES))
def test_exact_grams_match_jacrev(case):
    model, shape = CASES[case]
    torch.manual_seed(1)
    x = torch.randn(*shape)
    res = _assert_matches_reference(model, x)
    # at least one tap per model is checked, and every example of the batch
    assert all(t.singular_values.shape[0] == shape[0] for t in res.taps)


@pytest.mark.parametrize("case", ["mlp-tanh", "resnet-bn", "transformer", "torchvision-blocks"])
def test_chained_sweep_matches_jacrev(case):
    model, shape = CASES[case]
    torch.manual_seed(2)
    x = torch.randn(*shape)
    res = _assert_matches_reference(model, x, strategy="chained", chunk_size=5)
    assert res.plan.strategy == "chained"
    assert res.chain_checked is True


def test_group_sweeps_and_reverse_mode_match_jacrev():
    model, shape = CASES["resnet"]
    x = torch.randn(*shape)
    res = _assert_matches_reference(model, x, strategy="groups", max_memory=650_000)
    assert res.plan.strategy == "groups" and len(res.plan.groups) > 1
    assert res.taps[-1].mode == "reverse"  # fc: 4·D = 40 ≤ n_in = 192
    forced = _assert_matches_reference(model, x, mode="reverse")
    assert all(t.mode == "reverse" for t in forced.taps)


def test_svd_mode_matches_jacrev():
    model, shape = CASES["convnet"]
    res = _assert_matches_reference(model, torch.randn(*shape), svd=True)
    assert all(bool(t.svd_used.all()) for t in res.taps)


def test_skip_across_taps_is_not_a_chain_and_auto_stays_exact():
    model = SkipAcross()
    x = torch.randn(3, 6)
    names = resolve_taps(model)
    with probe_context(model) as m:
        mods = [m.get_submodule(n) for n in names]
        assert not check_chain(m, mods, x[0].double())
    _assert_matches_reference(model, x)  # the joint sweep does not assume a chain
    with pytest.raises(TapError, match="chain"):
        tap_grams(model, x, strategy="chained")


def test_deep_linear_orthogonal_mlp_is_isometric():
    torch.manual_seed(0)
    # float64 weights: orthogonal_ in float32 is orthogonal only to ~1e-7
    model = MLP(24, 24, 12, activation="linear", bias=False).double()
    for fc in model.fcs:
        nn.init.orthogonal_(fc.weight)
    prof = profile(model, torch.randn(3, 24), method="exact")
    for tap in prof.taps:
        assert abs(tap.singular_values - 1).max() <= 1e-8
        assert abs(tap.stats["var"]).max() <= 1e-12
        assert abs(tap.stats["gap"]).max() <= 1e-12
        assert abs(tap.stats["cond"] - 1).max() <= 1e-8
        assert (tap.stats["near"] == 1).all()


def test_gram_unreliable_fires_and_svdvals_recovers_small_values():
    # A linear map with singular values 1 … 1e-8 (κ = 1e8, κ² = 1e16 > 1e12): the Gram cannot
    # resolve the small ones, svdvals can. A second tap with κ = 1e3 stays on the Gram.
    n = 8
    gen = torch.Generator().manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    bad = torch.logspace(0, -8, n, dtype=torch.float64)
    good = torch.logspace(0, -3, n, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(n, n, bias=False), nn.Linear(n, n, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(q1 @ torch.diag(good) @ q2.T)
        # second tap: W2 W1 has the bad spectrum
        model[1].weight.copy_(q1 @ torch.diag(bad / good) @ q1.T)
    res = tap_grams(model, torch.randn(2, n))
    first, second = res.taps
    assert not first.gram_unreliable.any()
    assert second.gram_unreliable.all() and second.svd_used.all()
    rel = (second.singular_values[0] - bad).abs() / bad
    assert float(rel.max()) < 1e-6  # the Gram alone would be off by ~100 % at 1e-8


def test_memory_estimate_and_memory_error():
    dims = [256] * 4
    joint = estimate_exact_memory(256, dims, chunk_size=256)
    assert joint >= 8 * 4 * 256 * 256  # at least the Grams
    chained = estimate_exact_memory(3072, [16384] * 3, strategy="chained", chunk_size=64)
    assert chained < estimate_exact_memory(3072, [16384] * 3, chunk_size=64)
    with pytest.raises(ProbeMemoryError, match="max_memory"):
        plan_exact(256, dims, n_examples=1, max_memory=1000)
    model = MLP(10, 12, 3)
    with pytest.raises(MemoryError):
        profile(model, torch.randn(2, 10), method="exact", max_memory=1000)
    auto = profile(model, torch.randn(2, 10), method="auto", max_memory=1000)
    assert auto.meta["method"] == "lanczos"
    assert "does not fit" in auto.meta["method_reason"]


def test_exact_profile_records_plan_and_sorted_float64_spectra():
    model = MLP(10, 12, 3, activation="tanh")
    prof = profile(model, torch.randn(3, 10), method="exact")
    assert prof.meta["method"] == "exact" and prof.meta["method_reason"].startswith("requested")
    assert prof.meta["exact"]["strategy"] in ("joint", "chained")
    for tap in prof.taps:
        s = tap.singular_values
        assert s.dtype == torch.float64 or str(s.dtype) == "float64"
        assert s.shape == (3, tap.r)
        assert (s[:, :-1] >= s[:, 1:]).all()


_STREAM_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time, torch
    from isokit.models import ResNet
    from isokit.probe import profile
    torch.manual_seed(0)
    model = ResNet(depth=56, norm="none")
    x = torch.randn(1, 3, 32, 32)
    model(x)  # warm up the allocator and the kernels

    def status(field):
        with open("/proc/self/status") as fh:
            return 1024 * int(next(l for l in fh if l.startswith(field)).split()[1])

    try:  # reset the peak-RSS mark, so the import peak does not hide the probe's
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before, peak = status("VmRSS"), lambda: status("VmHWM")
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.time()
    prof = profile(model, x, method="exact")
    after = peak()
    full = sum(t.D * t.n_in * 8 for t in prof.taps)
    print(json.dumps({"peak": after - before, "full": full, "seconds": time.time() - t0,
                      "strategy": prof.meta["exact"]["strategy"], "taps": len(prof.taps),
                      "finite": all(bool((t.singular_values >= 0).all()) for t in prof.taps)}))
    """
)


@pytest.mark.slow
def test_resnet56_streams_far_below_keeping_every_jacobian():
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result)  # shown with -s: peak bytes, Σ D·n_in·8, seconds
    assert result["taps"] == 29 and result["finite"]
    # Σ_l D_l·n_in·8 ≈ 6.7 GB; the chained sweep holds two taps' columns plus one chunk.
    assert result["peak"] < result["full"] / 3, result
    assert math.isfinite(result["seconds"])
