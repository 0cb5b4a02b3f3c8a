"""Statistics on synthetic spectra (``docs/probes.md §9.8``) and their invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isokit.probe.statistics import STAT_NAMES, degenerate_mask, saturated_mask, stats


def test_all_ones_is_perfect_isometry():
    out = stats(np.ones(10))
    assert set(out) == set(STAT_NAMES)
    assert out["m1"] == out["m2"] == out["m3"] == 1.0
    assert out["var"] == 0.0 and out["gap"] == 0.0
    assert out["cond"] == 1.0 and out["lmax_over_m1"] == 1.0
    assert out["near"] == 1.0 and out["near_rel"] == 1.0
    assert out["erank"] == pytest.approx(10.0, rel=1e-14)
    assert out["pr"] == pytest.approx(10.0, rel=1e-14)
    assert out["zero_fraction"] == 0.0 and out["mean_log_s"] == 0.0


def test_constant_spectrum_off_one_is_scaled_isometry():
    c = 3.0
    out = stats(np.full(7, c))
    assert out["gap"] == pytest.approx(0.0, abs=1e-15)
    assert out["var"] == pytest.approx(0.0, abs=1e-15)
    assert out["near"] == 0.0 and out["near_rel"] == 1.0
    assert out["mean_log_s"] == pytest.approx(math.log(c))
    assert out["m1"] == pytest.approx(c**2) and out["m3"] == pytest.approx(c**6)


def test_one_zero_value_makes_gap_and_cond_infinite():
    out = stats([2.0, 1.0, 0.5, 0.0])
    assert out["gap"] == math.inf and out["cond"] == math.inf
    assert out["mean_log_s"] == -math.inf
    assert out["zero_fraction"] == 0.25
    assert math.isfinite(out["var"]) and out["sigma_min"] == 0.0


def test_round_off_below_threshold_counts_as_zero():
    out = stats([1.0, 1e-17], n_rows=2, n_cols=2)
    assert out["gap"] == math.inf and out["zero_fraction"] == 0.5
    kept = stats([1.0, 1e-10], n_rows=2, n_cols=2)
    assert math.isfinite(kept["gap"]) and kept["zero_fraction"] == 0.0


def test_degenerate_spectrum_convention():
    out = stats(np.zeros(5))
    assert math.isnan(out["var"])  # docs/probes.md §6 default
    assert out["cond"] == out["gap"] == math.inf and out["mean_log_s"] == -math.inf
    for name in ("m1", "m2", "m3", "sigma_max", "sigma_min", "near", "erank", "pr"):
        assert out[name] == 0.0
    assert out["zero_fraction"] == 1.0
    prof_style = stats(np.zeros(5), degenerate_var=math.inf)
    assert prof_style["var"] == math.inf  # what Profiles store: no NaN anywhere
    assert degenerate_mask(np.zeros(5)) and not degenerate_mask(np.ones(5))
    assert saturated_mask(np.zeros(5))


def test_known_values():
    s = np.array([2.0, 1.0])
    out = stats(s)
    lam = s**2
    assert out["m1"] == pytest.approx(lam.mean())
    assert out["m2"] == pytest.approx((lam**2).mean())
    assert out["var"] == pytest.approx((lam**2).mean() / lam.mean() ** 2 - 1)
    assert out["gap"] == pytest.approx(math.log(lam.mean()) - np.log(lam).mean())
    p = s / s.sum()
    assert out["erank"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert out["pr"] == pytest.approx(lam.sum() ** 2 / (lam**2).sum())
    assert out["lmax_over_m1"] == pytest.approx(4.0 / 2.5)
    assert out["cond"] == 2.0


def test_near_band_edges():
    s = np.array([1 / 1.1, 1.1, 1.1 * (1 + 1e-9), 1.0])
    out = stats(s)
    assert out["near"] == pytest.approx(0.75)


def test_batched_equals_single_and_order_is_irrelevant():
    rng = np.random.default_rng(0)
    batch = rng.random((4, 6)) + 0.1
    out = stats(batch, n_rows=6, n_cols=9)
    for b in range(4):
        single = stats(rng.permutation(batch[b]), n_rows=6, n_cols=9)
        for name in STAT_NAMES:
            assert out[name][b] == pytest.approx(single[name], rel=1e-12), name
    mixed = stats(np.stack([np.zeros(6), np.ones(6)]), degenerate_var=math.inf)
    assert mixed["var"].tolist() == [math.inf, 0.0]
    assert mixed["cond"].tolist() == [math.inf, 1.0]


def test_extreme_scales_stay_finite():
    tiny = stats(np.array([3e-200, 1e-200]))
    ref = stats(np.array([3.0, 1.0]))
    for name in ("var", "gap", "pr", "erank", "near_rel", "lmax_over_m1", "cond"):
        assert tiny[name] == pytest.approx(ref[name], rel=1e-12), name


def test_bad_input():
    with pytest.raises(ValueError):
        stats([])
    with pytest.raises(ValueError):
        stats([1.0, -1.0])
    with pytest.raises(ValueError):
        stats([1.0, math.nan])
    with pytest.raises(ValueError):
        stats([1.0], band=0)


spectra = st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=30).map(np.array)


@settings(max_examples=60, deadline=None)
@given(spectra, st.floats(1e-3, 1e3))
def test_scale_free_statistics_are_scale_invariant(s, c):
    a, b = stats(s), stats(c * s)
    for name in ("var", "gap", "pr", "erank", "near_rel", "lmax_over_m1", "cond", "zero_fraction"):
        assert b[name] == pytest.approx(a[name], rel=1e-9, abs=1e-12), name
    assert b["m1"] == pytest.approx(c**2 * a["m1"], rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(spectra)
def test_bounds(s):
    out = stats(s)
    r = len(s)
    assert out["var"] >= 0 and out["gap"] >= 0
    assert 1 - 1e-9 <= out["pr"] <= r * (1 + 1e-12)
    assert 1 - 1e-9 <= out["erank"] <= r * (1 + 1e-12)
    assert out["pr"] == pytest.approx(r / (1 + out["var"]), rel=1e-9)
    assert out["sigma_min"] <= out["sigma_max"] and out["cond"] >= 1
    assert 0 <= out["near"] <= 1 and out["lmax_over_m1"] >= 1 - 1e-12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.01, 0.01), min_size=2, max_size=20))
def test_small_spread_gap_is_half_var(eps):
    s = np.exp(np.array(eps))
    out = stats(s)
    assert out["gap"] == pytest.approx(out["var"] / 2, rel=0.1, abs=1e-9)
