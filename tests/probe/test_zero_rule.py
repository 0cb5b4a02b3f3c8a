"""One zero rule: statistics, densities, SLQ quadratures and the report's figures agree.

``isokit.probe.zero_mask`` decides which singular values (exact tier) or Gram eigenvalues
(Lanczos nodes ``θ = s²``) are round-off zeros; every place that shows or counts zeros calls it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from isokit.probe import TapSpectrum, lanczos, profile, slq_density, stats, zero_mask
from isokit.report.series import sigma_samples

GRID = np.linspace(-40.0, 5.0, 91)


def _diagonal_model(values: list[float]) -> nn.Module:
    layer = nn.Linear(len(values), len(values), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.tensor(values, dtype=torch.float64)))
    return nn.Sequential(layer)


def _zero_weight(samples: tuple[np.ndarray, np.ndarray]) -> float:
    sigma, weights = samples
    return float(weights[sigma == 0].sum())


def _slq_tap(nodes: list[float], weights: list[float]) -> TapSpectrum:
    n = len(nodes)
    return TapSpectrum(
        name="fc",
        depth=1,
        D=n,
        n_in=n,
        r=n,
        shape=(1, n),
        method="lanczos",
        side="input",
        stats={},
        degenerate=np.zeros(1, dtype=bool),
        saturated=np.zeros(1, dtype=bool),
        gram_unreliable=np.zeros(1, dtype=bool),
        density={"nodes": np.array([[nodes]]), "weights": np.array([[weights]])},
    )


def test_slq_nodes_one_and_1e_minus_20_have_one_zero_everywhere():
    # θ = 1e-20 is below the Lanczos accuracy ε·θ_max: a zero, though √θ = 1e-10 is not tiny.
    tap = _slq_tap([1.0, 1e-20], [0.5, 0.5])
    sigma, weights = sigma_samples(tap)
    np.testing.assert_array_equal(sigma, [1.0, 0.0])
    _, zero_mass = tap.smoothed_density(GRID)
    assert zero_mass == 0.5 == _zero_weight((sigma, weights))


def test_lanczos_tier_zero_frac_density_figures_and_quadrature_agree():
    model = _diagonal_model([1.0, 1e-10])  # A = JᵀJ = diag(1, 1e-20)
    prof = profile(model, torch.ones(1, 2), taps=["0"], method="lanczos", n_probes=4, seed=0)
    tap = prof.taps[0]
    zero_fraction = float(tap.stats["zero_fraction"][0])
    assert zero_fraction == pytest.approx(0.5, abs=1e-12)
    assert tap.stats["gap"][0] == math.inf and tap.stats["cond"][0] == math.inf
    _, zero_mass = tap.smoothed_density(GRID)
    assert zero_mass == pytest.approx(zero_fraction, abs=1e-12)
    assert _zero_weight(sigma_samples(tap)) == pytest.approx(zero_fraction, abs=1e-12)

    M = torch.diag(torch.tensor([1.0, 1e-20], dtype=torch.float64))
    res = lanczos(
        lambda V: V @ M, 2, steps=2, n_probes=4, generator=torch.Generator().manual_seed(0)
    )
    dens = slq_density(res, torch.as_tensor(GRID), bandwidth=0.05, n_rows=2, n_cols=2)
    assert dens.zero_mass == pytest.approx(0.5, abs=1e-12)


def test_exact_tier_stats_density_and_figures_agree():
    model = _diagonal_model([1.0, 0.0, 0.5, 1e-20])
    prof = profile(model, torch.ones(2, 4), taps=["0"], method="exact")
    tap = prof.taps[0]
    assert tap.stats["zero_fraction"].tolist() == [0.5, 0.5]
    assert tap.stats["cond"].tolist() == [math.inf, math.inf]
    _, zero_mass = tap.smoothed_density(GRID)
    assert zero_mass == 0.5 == _zero_weight(sigma_samples(tap))
    mask = zero_mask(tap.singular_values, n_rows=tap.D, n_cols=tap.n_in)
    assert mask.mean(-1).tolist() == tap.stats["zero_fraction"].tolist()


def test_zero_mask_scale_is_per_spectrum_and_uses_the_larger_dimension():
    eps = float(np.finfo(np.float64).eps)
    s = np.array([[1.0, 3 * eps], [1e-10, 3e-10 * eps]])
    # 3ε relative to s_1: zero for max(D, n_in) = 4, not for 2; the second row is scale-free.
    assert zero_mask(s, n_rows=4, n_cols=2).tolist() == [[False, True], [False, True]]
    assert zero_mask(s, n_rows=2, n_cols=2).tolist() == [[False, False], [False, False]]
    assert zero_mask(s).tolist() == [[False, False], [False, False]]  # r = 2 stands in
    assert zero_mask(np.zeros(3)).all()  # a vanishing spectrum is zero throughout
    assert zero_mask([1.0, 2e-16], eps=float(np.finfo(np.float32).eps)).tolist() == [False, True]
    assert zero_mask([1.0, 1e-20, 0.0], where=[True, True, False]).tolist() == [False, True, False]


def test_stats_zero_frac_is_zero_mask():
    rng = np.random.default_rng(0)
    eps = float(np.finfo(np.float64).eps)
    s = np.abs(rng.normal(size=(50, 6)))
    s[:, -1] = s.max(-1) * eps * rng.choice([0.5, 5.0, 6.0, 7.0], size=50)  # around τ = 6ε·s_1
    st = stats(s, n_rows=6, n_cols=3)
    np.testing.assert_array_equal(st["zero_fraction"], zero_mask(s, n_rows=6, n_cols=3).mean(-1))
    assert (np.isinf(st["cond"]) == zero_mask(s, n_rows=6, n_cols=3)[:, -1]).all()


def test_slq_density_zero_atom_uses_n_rows_and_n_cols():
    M = torch.diag(torch.tensor([1.0, 1e-15], dtype=torch.float64))
    res = lanczos(
        lambda V: V @ M, 2, steps=2, n_probes=4, generator=torch.Generator().manual_seed(0)
    )
    grid = torch.linspace(-20.0, 1.0, 5)
    assert slq_density(res, grid, bandwidth=0.1).zero_mass == 0.0  # τ = 2ε·θ_max
    wide = slq_density(res, grid, bandwidth=0.1, n_rows=100, n_cols=2)  # τ = 100ε·θ_max
    assert wide.zero_mass == pytest.approx(0.5, abs=1e-12)
