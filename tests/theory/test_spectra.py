"""Jacobian spectra (``docs/theory.md`` §3, §6): series method vs exact moments, the
Fuss–Catalan law, edges, and float64 NumPy ensembles vs predictions within the finite-width
tolerances of §6."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import integrate, optimize, special

from isokit import theory
from isokit.theory import piecewise_linear as pl
from isokit.theory.activations import get_activation

N, S = 1000, 3  # the width and number of draws the §6 tolerances are stated for


# ---------------------------------------------------------------- exact moments


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8])
def test_series_reproduces_fuss_catalan(depth):
    m = theory.series_moments(act="linear", sw2=1.0, sb2=0.0, depth=depth, order=8).value
    fc = [theory.fuss_catalan(depth=depth, k=k).value for k in range(1, 9)]
    np.testing.assert_allclose(m, fc, rtol=1e-9)
    assert fc[1] == depth + 1 and fc[2] == (depth + 1) * (3 * depth + 2) // 2
    assert [theory.pl_moments(depth=depth, p=1.0, k=k).value for k in range(1, 9)] == fc


@pytest.mark.parametrize("depth", [1, 5, 20])
def test_series_linear_orthogonal_is_an_isometry(depth):
    m = theory.series_moments(
        act="linear", sw2=1.0, sb2=0.0, depth=depth, weights="orthogonal", order=8
    )
    np.testing.assert_allclose(m.value, 1.0, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 4, 10])
def test_series_relu_closed_forms(depth):
    L = depth
    gauss = theory.series_moments(act="relu", sw2=2.0, sb2=0.0, depth=L, order=3).value
    orth = theory.series_moments(
        act="relu", sw2=2.0, sb2=0.0, depth=L, weights="orthogonal", order=3
    )
    np.testing.assert_allclose(gauss, [1, 2 * L + 1, 6 * L**2 + 4 * L + 1], rtol=1e-12)
    np.testing.assert_allclose(orth.value, [1, L + 1, 1 + 3 * L * (L + 1) / 2], rtol=1e-12)


def _hardtanh_q(p: float) -> float:
    # p(q) = erf(1/√(2q))  ⇒  q = 1/(2·erfinv(p)²)
    return 1 / (2 * special.erfinv(p) ** 2)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("p", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("depth", [1, 3, 7])
def test_pl_moments_expanded_form_equals_series(weights, p, depth):
    q = _hardtanh_q(p)
    for scale in (1.0, 1.15):  # at and off criticality
        sw2 = scale / p
        series = theory.series_moments(
            act="hardtanh",
            sw2=sw2,
            sb2=0.0,
            depth=depth,
            weights=weights,
            order=6,
            q_profile=[q] * depth,
        ).value
        exact = [
            theory.pl_moments(depth=depth, p=p, k=k, weights=weights, sw2=sw2).value
            for k in range(1, 7)
        ]
        np.testing.assert_allclose(series, exact, rtol=1e-8)


@pytest.mark.parametrize("name", ["tanh", "erf", "gelu", "hardtanh"])
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_series_first_two_moments_match_m1_and_var(name, weights):
    cases = [
        {"sw2": 1.4, "sb2": 0.1},  # at the fixed point
        {"sw2": 1.4, "sb2": 0.1, "q1": 3.0},  # input off the fixed point
        {"sw2": [1.2, 1.6, 0.9, 1.4], "sb2": [0.0, 0.1, 0.2, 0.05], "q_profile": [0.3, 1, 2, 0.7]},
    ]
    for kw in cases:
        for tap in ("post", "pre"):
            m = theory.series_moments(act=name, depth=4, weights=weights, order=2, tap=tap, **kw)
            mv = theory.jacobian_moments(act=name, depth=4, weights=weights, tap=tap, **kw)
            assert m.value[0] == pytest.approx(mv.m1.value, rel=1e-12)
            assert m.value[1] / m.value[0] ** 2 - 1 == pytest.approx(mv.var.value, rel=1e-10)
            # the raw variance m2 − m1² of the same spectrum
            raw = m.value[1] - m.value[0] ** 2
            assert mv.var_raw.value == pytest.approx(raw, rel=1e-10)


def test_special_cases_of_var():
    L = 6
    for weights, v in (("gaussian", 2 * L), ("orthogonal", L)):
        assert (
            theory.jacobian_moments(act="relu", sw2=2, sb2=0, depth=L, weights=weights).var.value
            == v
        )
    cp = theory.critical_point(act="hardtanh", q_star=0.8)
    p = math.erf(1 / math.sqrt(1.6))
    kw = {"act": "hardtanh", "sw2": cp.sw2.value, "sb2": cp.sb2.value, "depth": L}
    assert theory.jacobian_moments(**kw).var.value == pytest.approx(L / p, rel=1e-9)
    assert theory.jacobian_moments(**kw, weights="orthogonal").var.value == pytest.approx(
        L * (1 / p - 1), rel=1e-9
    )
    for name in ("tanh", "erf"):
        cp = theory.critical_point(act=name, q_star=1e-3)
        v = theory.jacobian_moments(
            act=name, sw2=cp.sw2.value, sb2=cp.sb2.value, depth=L, weights="orthogonal"
        ).var.value
        assert v == pytest.approx(8 * L * 1e-6, rel=0.02)
        for kw in ({"sw2": 1.3, "sb2": 0.2}, {"sw2": 3.0, "sb2": 0.0}):
            assert theory.jacobian_moments(act=name, depth=L, **kw).var.value >= L  # μ2 ≥ μ1²


def test_provenance_of_m1_and_var():
    relu = theory.jacobian_moments(act="relu", sw2=2.0, sb2=0.0, depth=3)
    assert (relu.m1.tag, relu.var.tag) == ("S", "R")  # criticality: Pennington et al.
    off = theory.jacobian_moments(act="tanh", sw2=1.3, sb2=0.0, depth=3, q1=2.0)
    assert (off.m1.tag, off.var.tag, off.var.cite) == ("D", "D", "derived")
    # var_raw = m1²·var is sourced no better than its weaker factor
    assert (relu.var_raw.tag, off.var_raw.tag) == ("R", "D")


def test_predictions_name_the_probe_statistic_they_predict():
    moments = theory.jacobian_moments(act="relu", sw2=2.0, sb2=0.0, depth=3)
    assert (moments.m1.statistic, moments.var.statistic, moments.var_raw.statistic) == (
        "m1",
        "var",
        "var_raw",
    )
    pred = theory.predict_mlp(act="relu", sw2=2.0, sb2=0.0, depth=3, width=N)
    named = {name: getattr(pred, name).statistic for name in ("m1", "var", "var_raw")}
    assert named == {"m1": "m1", "var": "var", "var_raw": "var_raw"}
    assert pred.zero_fraction.statistic == "zero_fraction"
    assert pred.edge_norm.statistic == "lmax_over_m1"
    assert pred.q.statistic is None and pred.m3_norm.statistic is None
    assert theory.chi1(act="relu", sw2=2.0).statistic is None
    with pytest.raises(ValueError, match="statistic must be"):
        theory.Prediction(value=1.0, tag="D", cite="derived", what="x", statistic=1)


# ---------------------------------------------------------------- density, edge, finite width


def _dx_dtheta(L: int, th: np.ndarray) -> np.ndarray:
    x, _ = pl._fc_curve(L, th)
    dlog = (L + 1) ** 2 / np.tan((L + 1) * th) - 1 / np.tan(th) - L**2 / np.tan(L * th)
    return x * dlog


@pytest.mark.parametrize("depth", [1, 2, 3, 6])
def test_fc_density_is_normalized_with_fuss_catalan_moments(depth):
    top = math.pi / (depth + 1)

    def moment(k: int) -> float:
        def f(th: float) -> float:
            d = theory.fc_density(depth=depth, theta=np.array([th]))
            x, rho = d.x.value[0], d.density.value[0]
            return x**k * rho * abs(_dx_dtheta(depth, np.array([th]))[0])

        return integrate.quad(f, 1e-12, top - 1e-12, epsabs=1e-13, epsrel=1e-11, limit=400)[0]

    assert moment(0) == pytest.approx(1.0, abs=1e-8)
    for k in range(1, 5):
        assert moment(k) == pytest.approx(theory.fuss_catalan(depth=depth, k=k).value, rel=1e-7)


def test_fc_density_at_one_layer_is_marchenko_pastur():
    th = np.linspace(0.01, math.pi / 2 - 0.01, 50)
    d = theory.fc_density(depth=1, theta=th)
    x = d.x.value
    np.testing.assert_allclose(d.density.value, np.sqrt(x * (4 - x)) / (2 * np.pi * x), rtol=1e-12)
    at_x = theory.fc_density(depth=1, x=x).density.value  # the x= route inverts θ by bisection
    np.testing.assert_allclose(at_x, d.density.value, rtol=1e-9)
    assert theory.fc_density(depth=3, x=np.array([-1.0, 1e3])).density.value.tolist() == [0, 0]


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("p", [0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("depth", [1, 2, 3, 8, 20])
def test_pl_edge_closed_form_is_the_minimum_of_m_inverse(weights, p, depth):
    sw2 = 1.1 / p

    def log_m_inv(t: float) -> float:
        z = math.exp(t)
        core = sw2 * (z + p) / (z + 1 if weights == "orthogonal" else 1.0)
        return math.log1p(1 / z) + depth * math.log(core)

    res = optimize.minimize_scalar(
        log_m_inv, bounds=(-30, 30), method="bounded", options={"xatol": 1e-10}
    )
    numeric = math.exp(res.fun)
    if weights == "orthogonal":  # M^{−1} → σ_w^{2L} as z → ∞
        numeric = min(numeric, sw2**depth)
    edge = theory.pl_edge(depth=depth, p=p, weights=weights, sw2=sw2).value
    assert edge == pytest.approx(numeric, rel=1e-8)
    if p == 1.0 and weights == "gaussian":
        assert theory.pl_edge(depth=depth, p=1.0).value == pytest.approx(
            (depth + 1) ** (depth + 1) / depth**depth, rel=1e-13
        )


def test_linear_gaussian_m2_finite_small_cases_and_expansion():
    assert theory.linear_gaussian_m2_finite(depth=1, width=10).value == pytest.approx(2.1)
    for L, n in ((4, 200), (16, 1000), (32, 1000)):
        exact = theory.linear_gaussian_m2_finite(depth=L, width=n).value
        approx = (L + 1) + L * (L + 1) / (2 * n)
        assert exact == pytest.approx(approx, rel=3 * (L / n) ** 2)


def test_linear_gaussian_m2_finite_matches_monte_carlo():
    rng = np.random.default_rng(11)
    L, n, draws = 3, 16, 4000
    w = rng.standard_normal((draws, L, n, n)) / math.sqrt(n)
    J = w[:, 0]
    for layer in range(1, L):
        J = w[:, layer] @ J
    g = J @ np.swapaxes(J, 1, 2)
    m2 = np.einsum("dij,dji->d", g, g) / n
    exact = theory.linear_gaussian_m2_finite(depth=L, width=n).value
    assert abs(m2.mean() - exact) < 4 * m2.std(ddof=1) / math.sqrt(draws)
    assert exact > L + 1 + 0.5 * L * (L + 1) / (2 * n)  # the 1/N term is visible here


def test_zero_atom():
    assert theory.zero_atom(p=0.5).value == 0.5
    assert theory.zero_atom(p=0.5, width=1000, depth=1).value == 0.5  # E max of one normal is 0
    two = theory.zero_atom(p=0.5, width=1000, depth=2).value  # E max of two normals is 1/√π
    assert two == pytest.approx(0.5 + math.sqrt(0.25 / 1000) / math.sqrt(math.pi), rel=1e-9)
    assert theory.zero_atom(p=0.5, width=1000, depth=8).value > two


# ---------------------------------------------------------------- NumPy float64 ensembles


def _haar(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@functools.cache
def _haar_pool(n: int, count: int) -> tuple[np.ndarray, ...]:
    """Haar matrices shared by the orthogonal ensembles of different tests (QR dominates their
    cost). Within one ensemble every layer and draw still gets its own matrix."""
    rng = np.random.default_rng([99, n, count])
    return tuple(_haar(rng, n) for _ in range(count))


@functools.cache
def _spectra(name, sw2, sb2, depth, weights, q_in=1.0, n=N, draws=S, seed=0, m1_only=False):
    """Eigenvalues of ``JJᵀ`` per draw, at depth ``L`` and at ``L/2`` (a prefix of the same
    forward pass): ``{L: (draws, n), L/2: (draws, n)}``. ``J = D^L W^L ⋯ D^1 W^1`` along the
    forward pass of ``x^0 = φ(√q_in·ζ)``, the input at the fixed point (§0). With ``m1_only``
    the rows hold just ``m1 = ‖J‖_F²/N`` (no eigendecomposition)."""
    act = get_activation(name)
    rng = np.random.default_rng([seed, depth, n, draws, int(1e6 * sw2)])
    pool = _haar_pool(n, depth * draws) if weights == "orthogonal" else ()
    out: dict[int, list[np.ndarray]] = {depth: [], depth // 2: []}
    for draw in range(draws):
        x, J = act.phi(math.sqrt(q_in) * rng.standard_normal(n)), None
        for layer in range(depth):
            if weights == "gaussian":
                W = rng.standard_normal((n, n)) * math.sqrt(sw2 / n)
            else:
                W = math.sqrt(sw2) * pool[draw * depth + layer]
            h = W @ x + math.sqrt(sb2) * rng.standard_normal(n)
            J = act.dphi(h)[:, None] * (W if J is None else W @ J)
            x = act.phi(h)
            if layer + 1 in out:
                spec = [np.sum(J**2) / n] if m1_only else np.linalg.eigvalsh(J @ J.T)
                out[layer + 1].append(spec)
    return {d: np.array(v) for d, v in out.items()}


def _stats(lam: np.ndarray) -> dict[str, np.ndarray]:
    """Per-draw scale-free statistics (§6 rule 2)."""
    m1, m2, m3 = (np.mean(lam**k, axis=1) for k in (1, 2, 3))
    return {
        "m1": m1,
        "m2": m2,
        "var": m2 / m1**2 - 1,
        "m3n": m3 / m1**3,
        "edge": lam.max(axis=1) / m1,
    }


def _assert_log_m1(m1: np.ndarray, chi1: float, depth: int) -> None:
    logs = np.log(m1)
    tol = 3 * logs.std(ddof=1) / math.sqrt(len(logs))
    assert abs(logs.mean() - depth * math.log(chi1)) <= tol


def test_linear_gaussian_ensemble():
    L = 8
    st = _stats(_spectra("linear", 1.0, 0.0, L, "gaussian")[L])
    m2 = theory.linear_gaussian_m2_finite(depth=L, width=N).value
    assert st["m2"].mean() == pytest.approx(m2, rel=0.03)
    assert st["var"].mean() == pytest.approx(L, rel=0.03)
    fc3 = theory.fuss_catalan(depth=L, k=3).value
    assert st["m3n"].mean() == pytest.approx(fc3, rel=0.07)
    edge = theory.pl_edge(depth=L, p=1.0).value
    assert st["edge"].mean() <= 1.02 * edge


def test_linear_orthogonal_ensemble_is_an_exact_isometry():
    rng = np.random.default_rng(3)
    J = np.eye(400)
    for _ in range(8):
        J = _haar(rng, 400) @ J
    np.testing.assert_allclose(np.linalg.svd(J, compute_uv=False), 1.0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_relu_ensemble_at_criticality(weights):
    L = 8
    lam = _spectra("relu", 2.0, 0.0, L, weights)[L]
    st = _stats(lam)
    v = theory.jacobian_moments(act="relu", sw2=2.0, sb2=0.0, depth=L, weights=weights).var.value
    assert v == (2 * L if weights == "gaussian" else L)
    assert st["var"].mean() == pytest.approx(v, rel=0.03)
    _assert_log_m1(st["m1"], 1.0, L)
    assert st["edge"].mean() <= 1.02 * theory.pl_edge(depth=L, p=0.5, weights=weights).value
    # zero fraction: eigenvalues below the float64 rank threshold of JJᵀ
    zeros = np.mean(lam <= lam.max(axis=1, keepdims=True) * N * np.finfo(float).eps, axis=1)
    assert np.all((zeros >= 0.5) & (zeros <= 0.5 + 0.045))
    assert zeros.mean() == pytest.approx(theory.zero_atom(p=0.5, width=N, depth=L).value, abs=0.02)


@pytest.mark.parametrize(
    ("name", "weights", "p"),
    [("linear", "gaussian", 1.0), ("relu", "gaussian", 0.5), ("relu", "orthogonal", 0.5)],
)
def test_top_eigenvalue_sits_at_the_edge(name, weights, p):
    L = 4  # the two-sided window of §6 is for shallow nets; a prefix of the depth-8 ensembles
    st = _stats(_spectra(name, 1.0 / p, 0.0, 2 * L, weights)[L])
    edge = theory.pl_edge(depth=L, p=p, weights=weights).value
    assert 0.93 * edge <= st["edge"].mean() <= 1.02 * edge


@functools.cache
def _tanh_critical() -> tuple[float, float, float]:
    cp = theory.critical_point(act="tanh", sb2=0.05)
    return cp.sw2.value, cp.sb2.value, cp.q_star.value


@pytest.mark.parametrize(("weights", "m3_tol"), [("gaussian", 0.07), ("orthogonal", 0.03)])
def test_tanh_ensemble_at_criticality(weights, m3_tol):
    L = 8
    sw2, sb2, qs = _tanh_critical()
    st = _stats(_spectra("tanh", sw2, sb2, L, weights, q_in=qs)[L])
    pred = theory.series_moments(act="tanh", sw2=sw2, sb2=sb2, depth=L, weights=weights, order=3)
    m1, m2, m3 = pred.value
    v = theory.jacobian_moments(act="tanh", sw2=sw2, sb2=sb2, depth=L, weights=weights).var.value
    assert m2 / m1**2 - 1 == pytest.approx(v, rel=1e-12)
    assert st["var"].mean() == pytest.approx(v, rel=0.03)
    assert st["m3n"].mean() == pytest.approx(m3 / m1**3, rel=m3_tol)
    _assert_log_m1(st["m1"], 1.0, L)


@pytest.mark.parametrize(
    ("name", "sw2", "sb2"),
    [("tanh", 1.1, 0.05), ("tanh", 2.5, 0.05), ("relu", 1.6, 0.0), ("erf", 1.0, 0.1)],
)
def test_log_m1_grows_or_decays_with_chi1(name, sw2, sb2):
    L, n, draws = 6, 400, 8
    x1 = theory.chi1(act=name, sw2=sw2, sb2=sb2).value
    q_in = 1.0 if name == "relu" else theory.q_star(act=name, sw2=sw2, sb2=sb2).value
    m1 = _spectra(name, sw2, sb2, L, "gaussian", q_in=q_in, n=n, draws=draws, seed=1, m1_only=True)
    logs = np.log(m1[L][:, 0])
    _assert_log_m1(np.exp(logs), x1, L)
    # and the predicted trend is resolved: growth or decay by many standard errors
    assert abs(L * math.log(x1)) > 5 * logs.std(ddof=1) / math.sqrt(draws)
    assert np.sign(logs.mean()) == np.sign(math.log(x1))


@pytest.mark.slow
def test_relu_orthogonal_third_moment_with_many_draws():
    L = 8
    st = _stats(_spectra("relu", 2.0, 0.0, L, "orthogonal", draws=12, seed=2)[L])
    m = theory.series_moments(act="relu", sw2=2.0, sb2=0.0, depth=L, weights="orthogonal", order=3)
    assert st["m3n"].mean() == pytest.approx(m.value[2], rel=0.03)


@pytest.mark.slow
def test_deep_linear_gaussian_needs_the_finite_width_correction():
    L = 32  # L/N = 0.032 > 0.01
    st = _stats(_spectra("linear", 1.0, 0.0, L, "gaussian", draws=4, seed=3)[L])
    m2 = theory.linear_gaussian_m2_finite(depth=L, width=N).value
    assert st["m2"].mean() == pytest.approx(m2, rel=0.10)
    assert st["var"].mean() == pytest.approx(L, rel=0.10)


# ---------------------------------------------------------------- per-depth predictions


def test_predict_mlp_is_consistent_with_single_depth_calls():
    sw2, sb2, _ = _tanh_critical()
    for weights in ("gaussian", "orthogonal"):
        pred = theory.predict_mlp(act="tanh", sw2=sw2, sb2=sb2, depth=5, weights=weights)
        for d in range(1, 6):
            mv = theory.jacobian_moments(act="tanh", sw2=sw2, sb2=sb2, depth=d, weights=weights)
            m = theory.series_moments(
                act="tanh", sw2=sw2, sb2=sb2, depth=d, weights=weights, order=3
            )
            assert pred.m1.value[d - 1] == pytest.approx(mv.m1.value, rel=1e-12)
            assert pred.var.value[d - 1] == pytest.approx(mv.var.value, rel=1e-12)
            assert pred.m3_norm.value[d - 1] == pytest.approx(m.value[2] / m.value[0] ** 3)
        assert pred.edge_norm is None and pred.zero_fraction is None
    pre = theory.predict_mlp(act="erf", sw2=1.5, sb2=0.1, depth=4, tap="pre", q1=2.0)
    for d in range(1, 5):
        m = theory.series_moments(act="erf", sw2=1.5, sb2=0.1, depth=d, tap="pre", q1=2.0, order=3)
        assert pre.m1.value[d - 1] == pytest.approx(m.value[0], rel=1e-12)
        assert pre.var.value[d - 1] == pytest.approx(m.value[1] / m.value[0] ** 2 - 1, rel=1e-10)
        assert pre.m3_norm.value[d - 1] == pytest.approx(m.value[2] / m.value[0] ** 3, rel=1e-10)


def test_predict_mlp_piecewise_linear_extras():
    relu = theory.predict_mlp(act="relu", sw2=2.0, sb2=0.0, depth=4, width=N).as_dict()
    assert relu["var"].tolist() == [2, 4, 6, 8]
    assert relu["var_raw"].tolist() == [2, 4, 6, 8]  # m1 = 1
    assert relu["edge_norm"][-1] == pytest.approx(theory.pl_edge(depth=4, p=0.5).value)
    assert relu["zero_fraction"][-1] == theory.zero_atom(p=0.5, width=N, depth=4).value
    lin = theory.predict_mlp(act="linear", sw2=1.0, sb2=0.0, depth=16, width=N)
    assert lin.var_finite.value[-1] == pytest.approx(
        theory.linear_gaussian_m2_finite(depth=16, width=N).value - 1
    )
    assert lin.zero_fraction is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: theory.series_moments(act="tanh", sw2=1, sb2=0, depth=2, order=9), "order=9 > 8"),
        (
            lambda: theory.jacobian_moments(act="tanh", sw2=1, sb2=0, depth=2, weights="haar"),
            "weights",
        ),
        (
            lambda: theory.jacobian_moments(act="tanh", sw2=1, sb2=0, depth=2, tap="mid"),
            "tap must be",
        ),
        (
            lambda: theory.jacobian_moments(act="tanh", sw2=1, sb2=0, depth=-1),
            "depth must be at least 0",
        ),
        (
            lambda: theory.jacobian_moments(act="tanh", sw2=1, sb2=0, depth=2.5),
            "depth must be an integer",
        ),
        (
            lambda: theory.jacobian_moments(act="tanh", sw2=1, sb2=0, depth=3, q_profile=[1, 1]),
            "entries",
        ),
        (
            lambda: theory.jacobian_moments(act="tanh", sw2=[1, 2], sb2=0, depth=2),
            "no common fixed",
        ),
        (
            lambda: theory.jacobian_moments(act="erf", sw2=-2, sb2=0, depth=2),
            "sw2=-2.0 is a variance",
        ),
        (lambda: theory.pl_moments(depth=2, p=0.0, k=2), r"must lie in \(0, 1\]"),
        (lambda: theory.pl_moments(depth=2, p=0.5, k=1.5), "k must be an integer"),
        (lambda: theory.fc_density(depth=2, theta=np.array([2.0])), "theta must lie"),
        (lambda: theory.fc_density(depth=0, theta=np.array([0.1])), "depth must be at least 1"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
