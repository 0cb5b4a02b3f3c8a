"""Forward-only trace moments (``docs/probes.md §4.2``, ``§9.4``) against dense float64 values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from isokit.probe import moments as moments_module
from isokit.probe.moments import rademacher, trace_moments, trace_moments_from_gram

F64 = torch.float64


def _jacobian_with_spectrum(lam: torch.Tensor, D: int, seed: int) -> torch.Tensor:
    """Dense ``J`` (``D × n``) with ``JᵀJ`` having eigenvalues ``lam`` and random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    n = lam.numel()
    U, _ = torch.linalg.qr(torch.randn(D, n, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return (U * lam.sqrt()) @ V.T


def _exact_traces(J: torch.Tensor) -> list[float]:
    A = J.T @ J
    return [float(torch.trace(torch.linalg.matrix_power(A, k))) for k in (1, 2, 3)]


def _brute_force(Y: torch.Tensor) -> tuple[float, float, float]:
    """T1..T3 as explicit sums over distinct probe pairs and triples."""
    G = Y @ Y.T
    K = G.shape[0]
    t1 = float(torch.diagonal(G).mean())
    t2 = sum(float(G[i, j]) ** 2 for i, j in itertools.permutations(range(K), 2))
    t3 = sum(float(G[i, j] * G[j, k] * G[k, i]) for i, j, k in itertools.permutations(range(K), 3))
    return t1, t2 / (K * (K - 1)), t3 / (K * (K - 1) * (K - 2))


def _jackknife(values: list[float], full: float) -> tuple[float, float]:
    K = len(values)
    mean = sum(values) / K
    se = math.sqrt((K - 1) / K * sum((v - mean) ** 2 for v in values))
    return K * full - (K - 1) * mean, se


@pytest.mark.parametrize("seed", [0, 1])
def test_estimators_and_jackknife_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    K, D, r = 6, 5, 4
    Y = torch.randn(K, D, generator=g, dtype=F64)
    res = trace_moments(Y, r=r)
    t = _brute_force(Y)
    assert res.t1 == pytest.approx(t[0], rel=1e-12)
    assert res.t2 == pytest.approx(t[1], rel=1e-12)
    assert res.t3 == pytest.approx(t[2], rel=1e-12)
    # The trace formula of docs/probes.md §4.2 gives the same T3.
    G = Y @ Y.T
    d = torch.diagonal(G)
    t3_formula = torch.trace(G @ G @ G) - 3 * (d * torch.diagonal(G @ G)).sum() + 2 * (d**3).sum()
    assert res.t3 == pytest.approx(float(t3_formula) / (K * (K - 1) * (K - 2)), rel=1e-12)

    loo = [_brute_force(torch.cat([Y[:p], Y[p + 1 :]])) for p in range(K)]
    for k, name in enumerate(("t1", "t2", "t3")):
        _, se = _jackknife([v[k] for v in loo], t[k])
        assert getattr(res, f"{name}_se") == pytest.approx(se, rel=1e-10)
    sf_loo = [r * v[1] / v[0] ** 2 - 1 for v in loo]
    sf_full = r * t[1] / t[0] ** 2 - 1
    var, var_se = _jackknife(sf_loo, sf_full)
    assert res.var_plugin == pytest.approx(sf_full, rel=1e-12)
    assert res.var == pytest.approx(var, rel=1e-10)
    assert res.var_se == pytest.approx(var_se, rel=1e-10)
    assert res.m1 == pytest.approx(t[0] / r) and res.m3_se == pytest.approx(res.t3_se / r)
    assert not res.degenerate and res.n_probes == K and res.r == r


def test_means_are_unbiased_over_repeats():
    lam = torch.linspace(0.1, 2.5, 30, dtype=F64) ** 2
    J = _jacobian_with_spectrum(lam, D=40, seed=3)
    exact = _exact_traces(J)
    g = torch.Generator().manual_seed(4)
    n_rep, K = 400, 16
    est = torch.tensor(
        [
            [r.t1, r.t2, r.t3]
            for r in (
                trace_moments(rademacher((K, 30), generator=g) @ J.T, r=30) for _ in range(n_rep)
            )
        ]
    )
    mean, se = est.mean(0), est.std(0) / math.sqrt(n_rep)
    for k in range(3):
        assert abs(float(mean[k]) - exact[k]) <= 3 * float(se[k]), (k, mean[k], exact[k], se[k])


def test_jackknife_errors_cover_the_truth():
    lam = torch.linspace(0.2, 2.0, 60, dtype=F64) ** 2
    J = _jacobian_with_spectrum(lam, D=80, seed=5)
    exact = _exact_traces(J)
    n = 60
    sf_exact = n * exact[1] / exact[0] ** 2 - 1
    g = torch.Generator().manual_seed(6)
    hits = torch.zeros(4)
    n_rep = 50
    for _ in range(n_rep):
        res = trace_moments(rademacher((32, n), generator=g) @ J.T, r=n)
        values = [(res.t1, res.t1_se), (res.t2, res.t2_se), (res.t3, res.t3_se)]
        values.append((res.var, res.var_se))
        for k, ((v, se), truth) in enumerate(zip(values, [*exact, sf_exact], strict=True)):
            hits[k] += abs(v - truth) <= 2 * se
    assert (hits / n_rep >= 0.8).all(), hits / n_rep


def test_relative_se_of_m1_follows_the_gaussian_formula():
    lam = torch.linspace(0.1, 3.0, 50, dtype=F64) ** 2
    J = _jacobian_with_spectrum(lam, D=50, seed=7)
    r, K = 50, 64
    m1, m2 = float(lam.mean()), float((lam**2).mean())
    predicted = math.sqrt(2 / (K * r)) * math.sqrt(m2) / m1
    g = torch.Generator().manual_seed(8)
    gauss = [trace_moments(torch.randn(K, r, generator=g, dtype=F64) @ J.T, r=r) for _ in range(40)]
    ratio = sum(x.m1_se / x.m1 for x in gauss) / len(gauss) / predicted
    assert 0.8 <= ratio <= 1.2, ratio
    # Rademacher probes do no worse: Var(vᵀAv) = 2(tr A² − Σ A_ii²) ≤ 2 tr A².
    rade = [trace_moments(rademacher((K, r), generator=g) @ J.T, r=r) for _ in range(40)]
    assert sum(x.m1_se / x.m1 for x in rade) / len(rade) <= 1.1 * predicted


def test_jackknife_removes_most_of_the_ratio_bias():
    lam = torch.tensor([4.0, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.1], dtype=F64)
    J = _jacobian_with_spectrum(lam, D=8, seed=1)
    sf_exact = float((lam**2).mean() / lam.mean() ** 2 - 1)
    g = torch.Generator().manual_seed(2)
    res = [
        trace_moments(torch.randn(16, 8, generator=g, dtype=F64) @ J.T, r=8) for _ in range(1500)
    ]
    bias_jack = sum(x.var for x in res) / len(res) - sf_exact
    bias_plugin = sum(x.var_plugin for x in res) / len(res) - sf_exact
    assert abs(bias_plugin) > 0.1  # the O(1/K) bias is real here ...
    assert abs(bias_jack) < abs(bias_plugin) / 4  # ... and the jackknife removes most of it


def test_isometric_jacobian_gives_exact_t1():
    # J = I and Rademacher probes: every G_ii = ‖v‖² = n, so T1 = tr I exactly, with zero SE.
    g = torch.Generator().manual_seed(0)
    Y = rademacher((10, 7), generator=g)
    res = trace_moments(Y, r=7)
    assert res.t1 == 7.0 and res.t1_se == 0.0


def test_zero_jacobian_is_degenerate_without_raising():
    res = trace_moments(torch.zeros(8, 5), r=5)
    assert res.degenerate
    assert (res.t1, res.t2, res.t3) == (0.0, 0.0, 0.0)
    assert (res.t1_se, res.t2_se, res.t3_se) == (0.0, 0.0, 0.0)
    assert math.isnan(res.var) and math.isnan(res.var_se) and math.isnan(res.var_plugin)


def test_low_precision_input_and_chunked_gram_match_float64(monkeypatch):
    g = torch.Generator().manual_seed(9)
    Y32 = torch.randn(7, 2, 3, 5, generator=g)  # [K, *tap_shape] is flattened
    monkeypatch.setattr(moments_module, "_GRAM_CHUNK_ELEMENTS", 14)  # two columns per chunk
    res = trace_moments(Y32, r=20)
    Y64 = Y32.to(F64).reshape(7, -1)
    ref = trace_moments_from_gram(Y64 @ Y64.T, r=20)
    for name in ("t1", "t2", "t3", "t1_se", "t2_se", "t3_se", "var", "var_se"):
        assert getattr(res, name) == pytest.approx(getattr(ref, name), rel=1e-12), name


def test_rademacher_draws():
    g = torch.Generator().manual_seed(0)
    v = rademacher((200, 50), generator=g, dtype=torch.float32)
    assert v.dtype == torch.float32 and v.shape == (200, 50)
    assert set(v.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(v.mean())) < 0.02
    again = rademacher((200, 50), generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    assert torch.equal(v, again)
    with pytest.raises(ValueError, match="floating dtype"):
        rademacher((3,), generator=g, dtype=torch.int64)


@pytest.mark.parametrize(
    ("Y", "r", "match"),
    [
        (torch.ones(5), 1, "probes first"),
        (torch.ones(3, 4), 2, "at least 4 probes"),
        (torch.ones(5, 4), 5, "exceeds"),
        (torch.ones(5, 4), 0, "positive int"),
        (torch.ones(5, 4), True, "positive int"),
        (torch.ones(5, 4), 2.0, "positive int"),
        (torch.full((5, 4), math.nan), 2, "NaN or inf"),
        (torch.ones(5, 4, dtype=torch.int64), 2, "real floating"),
    ],
)
def test_bad_input_raises(Y, r, match):
    with pytest.raises(ValueError, match=match):
        trace_moments(Y, r=r)


def test_non_square_gram_raises():
    with pytest.raises(ValueError, match="square"):
        trace_moments_from_gram(torch.ones(4, 5), r=2)
