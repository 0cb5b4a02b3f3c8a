"""Lanczos, SLQ and Ritz bounds (``docs/probes.md §4.3``, ``§4.4``, ``§9.5``, ``§9.6``) vs dense."""

from __future__ import annotations

import math

import pytest
import torch

from isokit.probe.krylov import lanczos
from isokit.probe.quadrature import ritz_bounds, slq_density, slq_moments

F64 = torch.float64


def _psd(lam: torch.Tensor, seed: int) -> torch.Tensor:
    """``Q diag(lam) Qᵀ`` with a random orthogonal ``Q``."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(lam.numel(), lam.numel(), generator=g, dtype=F64))
    return (Q * lam) @ Q.T


def _op(M: torch.Tensor):
    return lambda V: V @ M  # rows are vectors; M is symmetric


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_weights_are_a_probability_vector():
    M = _psd(torch.linspace(0.1, 4.0, 50, dtype=F64), seed=0)
    res = lanczos(_op(M), 50, steps=12, n_probes=5, generator=_gen(1))
    assert (res.weights >= 0).all()
    torch.testing.assert_close(res.weights.sum(1), torch.ones(5, dtype=F64), rtol=0, atol=1e-12)
    assert (res.n_steps == 12).all() and res.n_products == 60 and not res.degenerate
    assert (res.nodes.diff(dim=1) >= 0).all()  # ascending


def test_gauss_quadrature_is_exact_up_to_degree_2m_minus_1():
    lam = torch.linspace(0.5, 2.0, 40, dtype=F64)
    M = _psd(lam, seed=2)
    evals, evecs = torch.linalg.eigh(M)
    m = 6
    res = lanczos(_op(M), 40, steps=m, n_probes=3, generator=_gen(3), keep_basis=True)
    q1 = res.basis[:, 0]
    torch.testing.assert_close(q1.norm(dim=1), torch.ones(3, dtype=F64))
    coeff2 = (q1 @ evecs) ** 2  # q_1ᵀ M^k q_1 = Σ_i λ_i^k (v_iᵀ q_1)²
    for k in range(2 * m):
        exact = (coeff2 * evals**k).sum(1)
        quad = (res.weights * res.nodes**k).sum(1)
        torch.testing.assert_close(quad, exact, rtol=1e-10, atol=0)
    assert slq_moments(res, k_max=2 * m - 1).per_probe.shape == (3, 2 * m - 1)


def test_diagonal_operator_with_flat_start_reproduces_the_spectrum():
    r = 7
    lam = torch.tensor([0.3, 2.0, 1.1, 0.05, 5.0, 0.7, 3.3], dtype=F64)
    start = torch.ones(2, r, dtype=F64) / math.sqrt(r)
    res = lanczos(lambda V: V * lam, r, steps=r, start=start)
    torch.testing.assert_close(
        res.weights, torch.full((2, r), 1 / r, dtype=F64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(res.nodes, lam.sort().values.expand(2, r), rtol=1e-10, atol=0)
    mom = slq_moments(res, k_max=4)
    exact = [float((lam**k).mean()) for k in range(1, 5)]
    assert mom.moments == pytest.approx(exact, rel=1e-12)
    assert mom.standard_errors == pytest.approx([0.0] * 4, abs=1e-12)


def test_breakdown_gives_decoupled_nodes_zero_weight():
    r = 6
    lam = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 4.0], dtype=F64)
    M = _psd(lam, seed=4)
    res = lanczos(_op(M), r, steps=10, n_probes=3, generator=_gen(5), keep_basis=True)
    assert (res.n_steps == r).all()  # the Krylov space is all of R^r after r steps
    assert torch.isfinite(res.nodes).all() and torch.isfinite(res.weights).all()
    assert (res.weights[:, r:] == 0).all() and (res.residuals[:, r:] == 0).all()
    assert (res.beta[:, r - 1 :] == 0).all()
    torch.testing.assert_close(res.nodes[:, :r], lam.expand(3, r), rtol=1e-10, atol=0)
    # Exact for every degree once the space is invariant: q_1ᵀ M^k q_1 from the dense matrix.
    q1 = res.basis[:, 0]
    for k in (1, 2, 3, 15, 25):
        exact = ((q1 @ torch.linalg.matrix_power(M, k)) * q1).sum(1)
        torch.testing.assert_close((res.weights * res.nodes**k).sum(1), exact, rtol=1e-10, atol=0)


def test_early_breakdown_in_a_mixed_batch():
    # Probe 0 starts inside a 3-dim invariant subspace and freezes after 3 steps; probe 1 goes on.
    lam = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], dtype=F64)
    start = torch.zeros(2, 8, dtype=F64)
    start[0, [1, 4, 6]] = torch.tensor([1.0, 2.0, 2.0], dtype=F64)
    start[1] = 1.0
    res = lanczos(lambda V: V * lam, 8, steps=6, start=start)
    assert res.n_steps.tolist() == [3, 6]
    torch.testing.assert_close(res.nodes[0, :3], lam[[1, 4, 6]], rtol=1e-12, atol=0)
    torch.testing.assert_close(res.weights[0, :3], torch.tensor([1.0, 4.0, 4.0], dtype=F64) / 9)
    assert (res.weights[0, 3:] == 0).all() and (res.alpha[0, 3:] == 0).all()
    assert (res.residuals[0] < 1e-12).all()  # invariant subspace: exact eigenpairs
    nodes, weights = res.quadrature()
    assert nodes.numel() == 9 and float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    m1 = slq_moments(res, k_max=1).per_probe[:, 0]
    torch.testing.assert_close(m1, torch.tensor([(2 + 20 + 28) / 9, 4.5], dtype=F64))


def test_slq_moments_on_a_large_matrix_with_known_spectrum():
    r = 2000
    lam = torch.linspace(0.1, 3.0, r, dtype=F64) ** 2
    M = _psd(lam, seed=6)
    res = lanczos(_op(M), r, steps=20, n_probes=16, generator=_gen(7))
    mom = slq_moments(res, k_max=3)
    for k in range(3):
        exact = float((lam ** (k + 1)).mean())
        assert abs(mom.moments[k] - exact) <= 3 * mom.standard_errors[k], (k, mom, exact)
        assert mom.standard_errors[k] < 0.05 * exact


def _trapezoid(y: torch.Tensor, x: torch.Tensor) -> float:
    return float(torch.trapezoid(y, x))


def test_log_density_mass_mean_and_zero_atom():
    # Three exact zeros: a flat start puts 3/8 of its weight on them.
    lam = torch.tensor([0.0, 0.25, 0.0, 1.0, 4.0, 0.0, 2.0, 9.0], dtype=F64)
    M = _psd(lam, seed=8)
    start = torch.ones(1, 8, dtype=F64) @ torch.linalg.eigh(M).eigenvectors.T  # flat in M's basis
    res = lanczos(_op(M), 8, steps=8, start=start)
    assert int(res.n_steps[0]) == 6  # five distinct non-zero eigenvalues plus the null space
    grid = torch.linspace(-6, 6, 4001, dtype=F64)
    h = 0.2
    dens = slq_density(res, grid, bandwidth=h)
    assert dens.zero_mass == pytest.approx(3 / 8, abs=1e-10)
    assert _trapezoid(dens.density, grid) == pytest.approx(1 - dens.zero_mass, abs=1e-10)
    mean_log_s = float(0.5 * torch.log(lam[lam > 0]).sum() / 8)
    assert _trapezoid(grid * dens.density, grid) == pytest.approx(mean_log_s, abs=1e-10)
    # The bandwidth is a standard deviation: the smoothed variance adds h² per unit of mass.
    x = 0.5 * torch.log(lam[lam > 0])
    var_nodes = float((x**2).sum() / 8)
    second = _trapezoid(grid**2 * dens.density, grid)
    assert second == pytest.approx(var_nodes + h**2 * (1 - dens.zero_mass), abs=1e-10)
    # Linear axis: the same mass, and the mean is the mean singular value.
    lin = slq_density(res, grid, bandwidth=0.05, log=False)
    assert _trapezoid(lin.density, grid) == pytest.approx(5 / 8, abs=1e-10)
    assert _trapezoid(grid * lin.density, grid) == pytest.approx(float(lam.sqrt().sum() / 8))


def test_ritz_bounds_bracket_the_spectrum_and_residuals_are_honest():
    lam = torch.cat([torch.linspace(0.02, 1.0, 59, dtype=F64), torch.tensor([6.0], dtype=F64)])
    M = _psd(lam, seed=9)
    res = lanczos(_op(M), 60, steps=10, n_probes=3, generator=_gen(10), keep_basis=True)
    rb = ritz_bounds(res)
    assert float(lam.min()) <= rb.theta_min and rb.theta_max <= float(lam.max()) + 1e-12
    assert rb.sigma_max_lower == pytest.approx(math.sqrt(rb.theta_max))
    assert rb.sigma_min_upper == pytest.approx(math.sqrt(rb.theta_min))
    assert rb.converged_max and not rb.converged_min and not rb.converged
    assert (res.nodes >= float(lam.min()) - 1e-12).all()
    assert (res.nodes <= float(lam.max()) + 1e-12).all()
    # ‖M y − θ y‖ computed from the Ritz vectors equals the reported β_k·|S_{k,i}|.
    Y = res.ritz_vectors()
    torch.testing.assert_close(Y.norm(dim=2), torch.ones(3, 10, dtype=F64))
    direct = (Y @ M - res.nodes[:, :, None] * Y).norm(dim=2)
    torch.testing.assert_close(direct, res.residuals, rtol=0, atol=1e-12)
    # With m = r the Krylov space is complete and both ends converge.
    full = ritz_bounds(lanczos(_op(M), 60, steps=60, n_probes=1, generator=_gen(11)))
    assert full.converged
    assert full.theta_min == pytest.approx(0.02, rel=1e-10)
    assert full.theta_max == pytest.approx(6.0, rel=1e-12)


def test_zero_operator_is_degenerate_without_nan():
    res = lanczos(torch.zeros_like, 10, steps=5, n_probes=3, generator=_gen(0))
    assert res.degenerate and res.n_products == 3  # one batched product, then every probe froze
    assert res.n_steps.tolist() == [1, 1, 1]
    mom = slq_moments(res)
    assert mom.moments == (0.0, 0.0, 0.0) and mom.standard_errors == (0.0, 0.0, 0.0)
    dens = slq_density(res, torch.linspace(-3, 3, 7), bandwidth=0.1)
    assert dens.zero_mass == 1.0 and (dens.density == 0).all()
    rb = ritz_bounds(res)
    assert (rb.sigma_max_lower, rb.sigma_min_upper, rb.residual_max) == (0.0, 0.0, 0.0)
    for t in (res.nodes, res.weights, res.residuals, mom.per_probe):
        assert torch.isfinite(t).all()


def test_float32_operator_and_determinism():
    lam = torch.linspace(0.1, 2.0, 100, dtype=F64)
    M = _psd(lam, seed=12)
    ref = lanczos(_op(M), 100, steps=15, n_probes=4, generator=_gen(13))
    again = lanczos(_op(M), 100, steps=15, n_probes=4, generator=_gen(13))
    assert torch.equal(ref.nodes, again.nodes) and torch.equal(ref.weights, again.weights)
    M32 = M.float()
    lo = lanczos(_op(M32), 100, steps=15, n_probes=4, generator=_gen(13), dtype=torch.float32)
    assert lo.dtype == torch.float32 and lo.breakdown_tol == 1e-6
    assert slq_moments(lo).moments == pytest.approx(slq_moments(ref).moments, rel=1e-4)


def test_bad_input_raises():
    M = torch.eye(4, dtype=F64)
    g = _gen(0)
    with pytest.raises(ValueError, match="same shape"):
        lanczos(lambda V: V[:, :2], 4, steps=2, n_probes=2, generator=g)
    with pytest.raises(ValueError, match="steps: must be a positive integer"):
        lanczos(_op(M), 4, steps=0, n_probes=2, generator=g)
    with pytest.raises(ValueError, match="explicit generator"):
        lanczos(_op(M), 4, steps=2, n_probes=2)
    with pytest.raises(ValueError, match="n_probes"):
        lanczos(_op(M), 4, steps=2, generator=g)
    with pytest.raises(ValueError, match="start must be"):
        lanczos(_op(M), 4, steps=2, start=torch.ones(2, 3))
    with pytest.raises(ValueError, match="non-zero"):
        lanczos(_op(M), 4, steps=2, start=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        lanczos(lambda V: V * math.inf, 4, steps=2, n_probes=1, generator=g)
    res = lanczos(_op(M), 4, steps=2, n_probes=1, generator=g)
    with pytest.raises(ValueError, match="keep_basis"):
        res.ritz_vectors()
    with pytest.raises(ValueError, match="standard deviation"):
        slq_density(res, torch.linspace(0, 1, 3), bandwidth=0.0)
    with pytest.raises(ValueError, match="1-D"):
        slq_density(res, torch.zeros(2, 2), bandwidth=0.1)
    with pytest.raises(ValueError, match="k_max"):
        slq_moments(res, k_max=0)
