"""profile(), block_profile(), the Profile result and the matrix-free tier."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from isokit.models import MLP, ResNet
from isokit.probe import ProbeOptionError, block_profile, profile
from isokit.probe.matrix_free import default_slq_taps
from isokit.probe.result import Profile
from isokit.probe.taps import TapError, resolve_taps

from .conftest import dense_jacobians


@pytest.fixture(scope="module")
def small_profile():
    torch.manual_seed(0)
    model = MLP(6, 8, 3, out_features=2, activation="tanh")
    x = torch.randn(3, 6)
    return (
        model,
        x,
        profile(model, x, meta={"scheme": "default"}, with_signal=True, with_blocks=True),
    )


# ------------------------------------------------------------------------------ the result


def test_profile_structure_and_metadata(small_profile):
    model, x, prof = small_profile
    assert prof.names == model.taps and prof.depths.tolist() == [1, 2, 3, 4]
    meta = prof.meta
    assert meta["model"] == "MLP" and meta["scheme"] == "default"
    assert meta["method"] == "exact" and meta["method_reason"].startswith("auto:")
    assert meta["dtype"] == "float64" and meta["device"] == "cpu"
    assert meta["torch"] == torch.__version__ and meta["isokit"]
    assert meta["n_in"] == 6 and meta["n_examples"] == 3 and meta["seed"] == 0
    for t in prof.taps:
        assert t.singular_values.shape == (3, t.r) and t.singular_values.dtype == np.float64
        assert set(t.stats) >= {"m1", "var", "gap", "cond", "near", "erank", "pr"}
        assert all(v.shape == (3,) for v in t.stats.values())
        assert t.degenerate.dtype == bool and not t.degenerate.any()
    assert prof.signal is not None and len(prof.blocks) == 4


def test_stat_over_depth(small_profile):
    _, _, prof = small_profile
    assert prof.stat("m1").shape == (4,)
    assert prof.stat("m1", reduce=None).shape == (4, 3)
    np.testing.assert_allclose(prof.stat("m1", "median"), np.median(prof.stat("m1", None), 1))
    np.testing.assert_allclose(
        prof.stat("m1"), [t.singular_values.__pow__(2).mean(1).mean() for t in prof.taps]
    )
    assert prof.stat("m1", section="blocks").shape == (4,)
    with pytest.raises(KeyError):
        prof.stat("nope")
    with pytest.raises(ValueError):
        prof.stat("m1", reduce="max")


def test_table_rows_are_tidy(small_profile):
    _, _, prof = small_profile
    rows = prof.table()
    assert len(rows) == 4 * 3 * len(prof.taps[0].stats)
    assert set(rows[0]) == {"model", "scheme", "tap", "depth", "example", "statistic", "value"}
    assert all(isinstance(r["value"], float) for r in rows)
    sig = prof.table(section="signal")
    assert {r["statistic"] for r in sig} >= {"q", "cos", "grad"}
    try:
        import pandas as pd
    except ImportError:
        return
    frame = pd.DataFrame(rows)
    assert list(frame.columns)[:3] == ["model", "scheme", "tap"]


def test_json_round_trip_is_exact(tmp_path, small_profile):
    _, _, prof = small_profile
    prof.taps[0].stats["cond"][1] = math.inf  # exercise the special values
    prof.taps[0].stats["mean_log_s"][2] = -math.inf
    path = tmp_path / "p.json"
    prof.to_json(path)
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temp file left behind
    text = path.read_text()
    json.loads(text)  # strict JSON
    assert "Infinity" not in text and '"inf"' in text and '"-inf"' in text
    back = Profile.from_json(path)
    assert back.meta == json.loads(json.dumps(prof.meta))
    for a, b in zip(prof.taps + prof.blocks, back.taps + back.blocks, strict=True):
        assert a.name == b.name and a.shape == b.shape
        np.testing.assert_array_equal(a.singular_values, b.singular_values)
        for key in a.stats:
            np.testing.assert_array_equal(a.stats[key], b.stats[key])
        np.testing.assert_array_equal(a.degenerate, b.degenerate)
    for key in ("q", "cos", "grad", "param_grad"):
        np.testing.assert_array_equal(getattr(prof.signal, key), getattr(back.signal, key))
    assert back.to_dict() == prof.to_dict()
    # atomic: a failing write leaves the old file untouched
    prof.meta["bad"] = object()
    try:
        prof.to_json(path)  # object() is stringified by encode, so this still succeeds
    finally:
        del prof.meta["bad"]
    assert Profile.from_json(path).to_dict()["taps"] == prof.to_dict()["taps"]


def test_to_json_replaces_atomically(tmp_path, small_profile, monkeypatch):
    _, _, prof = small_profile
    path = tmp_path / "p.json"
    path.write_text("old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        prof.to_json(path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


# ------------------------------------------------------------------------------ bad input


def test_bad_inputs_raise_clear_errors():
    model = MLP(6, 8, 2)
    with pytest.raises(ValueError, match=r"expected \(B, 6\).*got \(B=2, 5\)"):
        profile(model, torch.randn(2, 5))
    with pytest.raises(TypeError, match="floating"):
        profile(model, torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(TypeError):
        profile(model, [[0.0] * 6])
    with pytest.raises(ValueError, match="batch"):
        profile(model, torch.randn(6))
    with pytest.raises(TapError, match="close matches: acts.1"):
        profile(model, torch.randn(2, 6), taps=["acts.1", "act.1"])
    with pytest.raises(ValueError, match="method"):
        profile(model, torch.randn(2, 6), method="magic")

    class Opaque(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x)

    with pytest.raises(TapError, match="cannot infer taps"):
        profile(Opaque(), torch.randn(2, 3))
    conv = ResNet(depth=8, width=2)
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        profile(conv, torch.randn(1, 4, 8, 8))


def test_tap_resolution_modes():
    model = MLP(4, 5, 3)
    assert resolve_taps(model, lambda n, m: isinstance(m, nn.Linear)) == ["fcs.0", "fcs.1", "fcs.2"]
    seq = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2))
    assert resolve_taps(seq) == ["0", "1", "2"]

    class Blocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(3, 4)
            self.small = nn.ModuleList([nn.Tanh(), nn.Tanh()])
            self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    assert resolve_taps(Blocks()) == ["blocks.0", "blocks.1", "blocks.2"]
    with pytest.raises(TapError, match="duplicate"):
        resolve_taps(model, ["acts.0", "acts.0"])

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(3, 3)
            self.taps = ["f"]

        def forward(self, x):
            return self.f(self.f(x))

    with pytest.raises(TapError, match="more than once"):
        profile(Shared(), torch.randn(2, 3))


def test_dead_network_gives_degenerate_zeros_without_nan():
    model = MLP(5, 6, 3, activation="relu")
    with torch.no_grad():
        for fc in model.fcs:
            fc.weight.zero_()
            fc.bias.fill_(-1.0)
    for method in ("exact", "lanczos"):
        prof = profile(model, torch.randn(2, 5), method=method)
        for t in prof.taps:
            assert t.degenerate.all()
            assert t.stats["m1"].tolist() == [0.0, 0.0]
            assert (t.stats["var"] == math.inf).all()
            for values in t.stats.values():
                assert not np.isnan(values).any()
            if t.singular_values is not None:
                assert (t.singular_values == 0).all()
        json.dumps(prof.to_dict(), allow_nan=False)


# ------------------------------------------------------------------------------ lanczos


@pytest.fixture(scope="module")
def wide_input_case():
    torch.manual_seed(0)
    model = MLP(3072, 96, 2, activation="tanh")
    x = torch.randn(1, 3072)
    exact = profile(model, x, method="exact")
    approx = profile(
        model, x, method="lanczos", n_probes=16, lanczos_steps=40, slq_taps="all", seed=3
    )
    return exact, approx


def test_lanczos_m1_within_three_standard_errors(wide_input_case):
    exact, approx = wide_input_case
    assert approx.meta["method"] == "lanczos" and approx.meta["lanczos"]["n_probes"] == 16
    for te, ta in zip(exact.taps, approx.taps, strict=True):
        assert ta.r == te.r == 96 and ta.side == "output"
        truth = te.stats["m1"][0]
        est, se = ta.stats["m1"][0], ta.se["m1"][0]
        assert 0 < se < truth
        assert abs(est - truth) <= 3 * se, (ta.name, est, truth, se)


def test_lanczos_quadrature_and_ritz_bounds(wide_input_case):
    exact, approx = wide_input_case
    for te, ta in zip(exact.taps, approx.taps, strict=True):
        w = ta.density["weights"]
        assert (w >= 0).all()
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)
        smax, smin = te.singular_values[0, 0], te.singular_values[0, -1]
        lo, hi = ta.ritz["sigma_max_lower"][0], ta.ritz["sigma_min_upper"][0]
        assert lo <= smax * (1 + 1e-9) and hi >= smin * (1 - 1e-9)
        assert lo >= 0.9 * smax  # and 40 steps get close to the top
        # node statistics are populated and finite
        for key in ("gap", "near", "erank", "cond", "lmax_over_m1"):
            assert np.isfinite(ta.stats[key]).all()
        assert ta.stats["gap"][0] == pytest.approx(te.stats["gap"][0], rel=0.5)


def test_lanczos_input_side_operator_and_default_slq_taps():
    torch.manual_seed(0)
    model = MLP(10, 24, 5, activation="tanh")  # D = 24 ≥ n_in = 10: the A = JᵀJ side
    x = torch.randn(2, 10)
    approx = profile(model, x, method="lanczos", n_probes=8, lanczos_steps=10, seed=1)
    slq = approx.meta["lanczos"]["slq_taps"]
    assert slq == [model.taps[i] for i in default_slq_taps(5)] and slq[-1] == model.taps[-1]
    exact = profile(model, x, method="exact")
    for te, ta in zip(exact.taps, approx.taps, strict=True):
        assert ta.side == "input" and ta.r == 10
        if ta.density is not None:
            # m = r steps: Lanczos is exact, Ritz values are the eigenvalues
            assert ta.ritz["sigma_max_lower"] == pytest.approx(te.singular_values[:, 0], rel=1e-8)
            assert ta.ritz["sigma_min_upper"] == pytest.approx(te.singular_values[:, -1], rel=1e-6)
        else:
            assert math.isnan(approx.stat("gap")[ta.depth - 1])
    deep = default_slq_taps(56)
    assert deep[0] == 0 and deep[-1] == 55 and len(deep) <= 7 and deep == sorted(set(deep))
    ratios = np.diff(np.log(np.array(deep) + 1))
    assert ratios.max() < 2 * ratios.min() + 1e-9  # roughly log-spaced


def test_auto_picks_lanczos_when_exact_does_not_fit():
    model = MLP(64, 32, 2)
    prof = profile(model, torch.randn(1, 64), max_memory=50_000, n_probes=4, lanczos_steps=4)
    assert prof.meta["method"] == "lanczos"
    assert "does not fit" in prof.meta["method_reason"]


# ------------------------------------------------------------------------------ blocks


def test_block_profile_matches_local_jacobians_and_composes_on_chains():
    torch.manual_seed(0)
    model = MLP(5, 7, 3, activation="tanh")
    x = torch.randn(2, 5)
    local = block_profile(model, x)
    assert local.meta["kind"] == "local"
    # local Jacobian of the activation module acts.l: diag(φ'(a)); of acts.0 at its input
    m = model.double().eval().requires_grad_(False)
    for b in range(2):
        h = x[b].double()
        for i, (fc, act) in enumerate(zip(m.fcs, m.acts, strict=True)):
            a = fc(h)
            s_ref = torch.sort((1 - torch.tanh(a) ** 2).abs(), descending=True).values
            np.testing.assert_allclose(local.taps[i].singular_values[b], s_ref, rtol=1e-12)
            h = act(a)
    # for a chain of modules (taps = the modules themselves) J_l = J_l^loc J_{l-1}
    seq = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh())
    loc = block_profile(seq, x)
    full = dense_jacobians(seq, x[0])
    # J_3 = J_3^loc J_2 with the local Jacobian of the Linear = its weight
    W = seq[2].weight.detach().double()
    np.testing.assert_allclose(
        loc.taps[2].singular_values[0], torch.linalg.svdvals(W).numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        torch.linalg.svdvals(W @ full[1]).numpy(),
        torch.linalg.svdvals(full[2]).numpy(),
        rtol=1e-10,
    )


def test_block_profile_supports_identity_blocks():
    # A ResNet whose branches output zero (conv2 = 0): each block's local Jacobian is its
    # shortcut, so the non-zero local singular values are exactly 1 (the idinit check).
    torch.manual_seed(0)
    model = ResNet(depth=8, width=4)
    with torch.no_grad():
        for s in range(3):
            for block in getattr(model, f"layer{s + 1}"):
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
    x = torch.randn(2, 3, 8, 8)
    local = block_profile(model, x, taps=[f"layer{s}.0" for s in (1, 2, 3)])
    for t in local.taps:
        s = t.singular_values
        nonzero = s[s > 1e-12]
        # relu(x + 0) passes positive entries: local J = diag(1[x>0]) (∘ pad/stride)
        np.testing.assert_allclose(nonzero, 1.0, atol=1e-12)
        assert t.n_in == {4 * 64: 256, 8 * 16: 256, 16 * 4: 128}[t.D]


def test_smoothed_density_integrates_to_one_minus_zero_atom(wide_input_case):
    exact, approx = wide_input_case
    for tap in (exact.taps[-1], approx.taps[-1]):
        s, _ = tap.atoms()
        grid = np.linspace(np.log(s.min()) - 1, np.log(s.max()) + 1, 4001)
        rho, zero = tap.smoothed_density(grid, bandwidth=0.05)
        assert zero == 0.0
        assert np.trapezoid(rho, grid) == pytest.approx(1.0, abs=1e-6)
        s, w = tap.atoms()
        assert w.sum() == pytest.approx(1.0) and (s >= 0).all()
    dead = MLP(4, 4, 1, activation="relu")
    with torch.no_grad():
        dead.fcs[0].weight.zero_()
        dead.fcs[0].bias.fill_(-1)
    tap = profile(dead, torch.randn(1, 4)).taps[0]
    rho, zero = tap.smoothed_density(np.linspace(-3, 3, 11))
    assert zero == 1.0 and not rho.any()


def test_options_progress_svd_and_slq_tap_specs(capsys):
    torch.manual_seed(0)
    model = MLP(6, 8, 4, activation="tanh")
    x = torch.randn(2, 6)
    plain = profile(model, x, method="exact")
    via_svd = profile(model, x, method="exact", svd=True, progress=True, chunk_size=2)
    for a, b in zip(plain.taps, via_svd.taps, strict=True):
        np.testing.assert_allclose(a.singular_values, b.singular_values, rtol=1e-10)
    assert via_svd.meta["exact"]["chunk_size"] == 2
    by_name = profile(
        model, x, method="lanczos", n_probes=4, lanczos_steps=3, slq_taps=["acts.1", 4]
    )
    assert by_name.meta["lanczos"]["slq_taps"] == ["acts.1", "acts.3"]
    assert by_name.taps[0].density is None and by_name.taps[1].density is not None
    none = profile(model, x, method="lanczos", n_probes=4, slq_taps="none")
    assert all(t.density is None for t in none.taps)
    with pytest.raises(ProbeOptionError, match="slq_taps: 'nope' is not one of the probed"):
        profile(model, x, method="lanczos", n_probes=4, slq_taps=["nope"])
    with pytest.raises(ProbeOptionError, match="slq_taps: depth 9 is outside"):
        profile(model, x, method="lanczos", n_probes=4, slq_taps=[9])
    with pytest.raises(ValueError, match="n_probes"):
        profile(model, x, method="lanczos", n_probes=2)
