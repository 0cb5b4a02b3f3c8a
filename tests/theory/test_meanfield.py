"""Mean-field theory (``docs/theory.md`` §1–§2): closed forms vs independent quadrature, fixed
points, criticality and depth scales."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from isokit import theory as th
from isokit.theory.activations import ACTIVATIONS, activation_from_callable, get_activation
from isokit.theory.prediction import Prediction

QS = (0.05, 0.5, 2.0, 7.0)
CS = (-0.9, -0.3, 0.0, 0.4, 0.95, 0.999, 1.0)


def quadrature_twin(name: str):
    """The same φ, φ', φ'' and kinks without any closed form: forces the quadrature path."""
    a = get_activation(name)
    return activation_from_callable(
        a.phi, name=f"{name}-quad", dphi=a.dphi, d2phi=a.d2phi, kinks=a.kinks, odd=a.odd
    )


# ---------------------------------------------------------------- quadrature primitives


def test_gauss_expect_reproduces_gaussian_moments():
    assert th.gauss_expect(lambda z: z**2) == pytest.approx(1.0, abs=1e-13)
    assert th.gauss_expect(lambda z: z**4) == pytest.approx(3.0, abs=1e-12)
    assert th.gauss_expect(lambda z: z**6) == pytest.approx(15.0, abs=1e-11)


@pytest.mark.parametrize("c", [-0.7, 0.0, 0.3, 1.0])
def test_gauss_expect2_covariance(c):
    q = 1.7
    assert th.gauss_expect2(lambda u, v: u * v, q=q, c=c) == pytest.approx(q * c, abs=1e-12)
    assert th.gauss_expect2(lambda u, v: v**2, q=q, c=c) == pytest.approx(q, abs=1e-12)
    split = th.gauss_expect2(lambda u, v: u * v, q=q, c=c, kinks=(0.0,))
    assert split == pytest.approx(q * c, abs=1e-12)


# ---------------------------------------------------------------- closed forms vs quadrature


@pytest.mark.parametrize("name", ["linear", "relu", "leaky_relu", "hardtanh", "erf"])
def test_closed_form_single_integrals_match_quadrature(name):
    quad = quadrature_twin(name)
    for q in QS:
        for k in (1, 2, 3):
            closed = th.mu(act=name, q=q, k=k).value
            assert th.mu(act=quad, q=q, k=k).value == pytest.approx(closed, rel=1e-10, abs=1e-14)
        e2 = th.length_map(act=name, sw2=1.0, sb2=0.0, q=q).value
        assert th.length_map(act=quad, sw2=1.0, sb2=0.0, q=q).value == pytest.approx(e2, rel=1e-10)
        # χ_q/σ_w² by Stein's lemma (with the kink deltas of φ'') vs the closed form
        slope = th.chi_q(act=name, sw2=1.0, q=q).value
        assert th.chi_q(act=quad, sw2=1.0, q=q).value == pytest.approx(slope, rel=1e-9)


@pytest.mark.parametrize("name", ["linear", "relu", "leaky_relu", "erf"])
def test_closed_form_c_map_matches_quadrature(name):
    quad = quadrature_twin(name)
    for q in (0.3, 2.5):
        for c in CS:
            kw = {"sw2": 1.0, "sb2": 0.0, "c": c, "q": q}
            closed = th.c_map(act=name, **kw).value
            assert th.c_map(act=quad, **kw).value == pytest.approx(closed, rel=1e-9, abs=1e-12)
            slope = th.chi_c(act=name, **kw).value
            assert th.chi_c(act=quad, **kw).value == pytest.approx(slope, rel=1e-9, abs=1e-12)


def _clip_mean(m: float, s: float) -> float:
    # E clip(X, −1, 1) for X ~ N(m, s²), in closed form
    a, b = (-1 - m) / s, (1 - m) / s
    inner = m * (special.ndtr(b) - special.ndtr(a)) - s * (stats.norm.pdf(b) - stats.norm.pdf(a))
    return float(-special.ndtr(a) + special.ndtr(-b) + inner)


@pytest.mark.parametrize("q", [0.3, 2.5])
@pytest.mark.parametrize("c", [-0.6, 0.2, 0.9])
def test_hardtanh_c_map_matches_conditional_integral(q, c):
    # Independent route: condition on z1, integrate u2 | z1 in closed form, then adaptive quad.
    s, r = math.sqrt(q), math.sqrt(1 - c * c)

    def f(z1: float) -> float:
        u1 = s * z1
        return np.clip(u1, -1, 1) * _clip_mean(c * u1, s * r) * stats.norm.pdf(z1)

    pts = [-1 / s, 1 / s]
    ref = integrate.quad(f, -12, 12, points=pts, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    got = th.c_map(act="hardtanh", sw2=1.0, sb2=0.0, c=c, q=q).value * q
    assert got == pytest.approx(ref, rel=1e-8, abs=1e-12)
    # E φ'(u1)φ'(u2) = P(|u1| < 1, |u2| < 1): bivariate normal rectangle probability
    mvn = stats.multivariate_normal(mean=[0, 0], cov=[[q, q * c], [q * c, q]])
    box = mvn.cdf([1, 1]) - mvn.cdf([-1, 1]) - mvn.cdf([1, -1]) + mvn.cdf([-1, -1])
    got = th.chi_c(act="hardtanh", sw2=1.0, sb2=0.0, c=c, q=q).value
    assert got == pytest.approx(box, abs=1e-6)


@pytest.mark.parametrize("name", ["tanh", "erf", "hardtanh", "gelu", "selu", "sigmoid", "relu"])
def test_chi_q_is_the_slope_of_the_length_map(name):
    sw2, sb2, q, h = 1.3, 0.1, 0.8, 1e-5
    up = th.length_map(act=name, sw2=sw2, sb2=sb2, q=q + h).value
    down = th.length_map(act=name, sw2=sw2, sb2=sb2, q=q - h).value
    slope = th.chi_q(act=name, sw2=sw2, sb2=sb2, q=q).value
    assert slope == pytest.approx((up - down) / (2 * h), rel=1e-7)


def test_chi_c_at_one_equals_chi1():
    for name in ("tanh", "erf", "hardtanh", "relu", "gelu"):
        x1 = th.chi1(act=name, sw2=1.4, sb2=0.2).value
        assert th.chi_c(act=name, sw2=1.4, sb2=0.2, c=1.0).value == pytest.approx(x1, rel=1e-9)


@pytest.mark.parametrize("q", [1e-3, 3e-3])
def test_tanh_small_q_expansion(q):
    mu1, mu2 = th.mu(act="tanh", q=q, k=1).value, th.mu(act="tanh", q=q, k=2).value
    assert abs(mu1 - (1 - 2 * q + 7 * q**2)) < 40 * q**3
    assert abs(mu2 - (1 - 4 * q + 26 * q**2)) < 400 * q**3
    for name in ("tanh", "erf"):
        m1, m2 = (th.mu(act=name, q=q, k=k).value for k in (1, 2))
        assert (m2 / m1**2 - 1) / (8 * q**2) == pytest.approx(1.0, abs=60 * q)


def test_erf_closed_forms_of_section_2():
    q = 0.7
    mu1, mu2 = (th.mu(act="erf", q=q, k=k).value for k in (1, 2))
    assert mu2 / mu1**2 == pytest.approx((1 + 4 * q) / math.sqrt(1 + 8 * q), rel=1e-13)
    assert th.chi_q(act="erf", sw2=1.0, q=q).value == pytest.approx(
        4 / math.pi / ((1 + 2 * q) * math.sqrt(1 + 4 * q)), rel=1e-13
    )


# ---------------------------------------------------------------- fixed points


FIXED_POINT_CASES = [
    ("tanh", 1.5, 0.1),
    ("tanh", 2.5, 0.0),
    ("tanh", 0.8, 0.0),
    ("erf", 1.2, 0.3),
    ("hardtanh", 1.7, 0.05),
    ("gelu", 1.8, 0.1),
    ("relu", 1.5, 0.2),
    ("sigmoid", 2.0, 0.1),
    ("selu", 1.0, 0.0),
]


@pytest.mark.parametrize(("name", "sw2", "sb2"), FIXED_POINT_CASES)
def test_q_star_is_an_attracting_fixed_point(name, sw2, sb2):
    qs = th.q_star(act=name, sw2=sw2, sb2=sb2).value
    image = th.length_map(act=name, sw2=sw2, sb2=sb2, q=qs).value
    assert image == pytest.approx(qs, rel=1e-11, abs=1e-14)
    if qs > 0:
        assert th.chi_q(act=name, sw2=sw2, sb2=sb2).value < 1
    # the profile from q^1 = 1 converges to it
    assert th.q_profile(act=name, sw2=sw2, sb2=sb2, q1=1.0, depth=400).value[-1] == pytest.approx(
        qs, rel=1e-6, abs=1e-3
    )


def test_relu_q_star_closed_form_and_divergence():
    assert th.q_star(act="relu", sw2=1.5, sb2=0.2).value == pytest.approx(0.2 / (1 - 0.75))
    assert th.q_star(act="relu", sw2=2.0, sb2=0.0, q1=3.0).value == 3.0  # every q is fixed
    with pytest.raises(ValueError, match="no finite fixed point"):
        th.q_star(act="relu", sw2=2.5, sb2=0.0)


# ---------------------------------------------------------------- criticality


@pytest.mark.parametrize("name", ["tanh", "erf", "hardtanh", "gelu", "selu"])
@pytest.mark.parametrize("target", [0.1, 0.5, 2.0])
def test_critical_point_given_q_star(name, target):
    cp = th.critical_point(act=name, q_star=target)
    sw2, sb2 = cp.sw2.value, cp.sb2.value
    assert th.chi1(act=name, sw2=sw2, q=target).value == pytest.approx(1.0, abs=1e-12)
    image = th.length_map(act=name, sw2=sw2, sb2=sb2, q=target).value
    assert image == pytest.approx(target, rel=1e-12)
    if name == "erf":  # §2 closed form
        assert sw2 == pytest.approx(math.pi / 4 * math.sqrt(1 + 4 * target), rel=1e-13)
    if name == "hardtanh":  # σ_w² = 1/p(q*) [S]
        assert sw2 == pytest.approx(1 / math.erf(1 / math.sqrt(2 * target)), rel=1e-13)


@pytest.mark.parametrize("name", ["tanh", "erf", "hardtanh"])
@pytest.mark.parametrize("sb2", [0.0, 0.05, 0.3])
def test_critical_point_given_sb2(name, sb2):
    cp = th.critical_point(act=name, sb2=sb2)
    sw2, qs = cp.sw2.value, cp.q_star.value
    assert cp.sb2.value == sb2
    assert th.q_star(act=name, sw2=sw2, sb2=sb2).value == pytest.approx(qs, rel=1e-8, abs=1e-12)
    assert th.chi1(act=name, sw2=sw2, sb2=sb2).value == pytest.approx(1.0, abs=1e-9)
    if sb2 == 0.0:  # odd φ: the critical point is σ_w² = 1/φ'(0)² with q* = 0 ...
        # ... where χ1(σ_w²) − 1 ∝ (σ_w² − σ_c²)² on the chaotic side, so σ_w² is good to √eps.
        phi0 = get_activation(name).dphi(np.zeros(1))[0]
        assert sw2 == pytest.approx(1 / phi0**2, abs=1e-6)


def test_relu_and_linear_critical_points():
    for cp in (th.critical_point(act="relu", sb2=0.0), th.critical_point(act="relu", q_star=0.7)):
        assert (cp.sw2.value, cp.sb2.value) == (2.0, 0.0)
        assert cp.sw2.tag == "S"
    lin = th.critical_point(act="linear", sb2=0.0)
    assert (lin.sw2.value, lin.sb2.value) == (1.0, 0.0)
    with pytest.raises(ValueError, match=r"only critical point is \(sw2, sb2\) = \(2, 0\)"):
        th.critical_point(act="relu", sb2=0.1)


def test_missing_critical_point_raises():
    with pytest.raises(ValueError, match="sb2=.* < 0; choose a smaller target q_star"):
        th.critical_point(act="sigmoid", q_star=0.5)
    with pytest.raises(ValueError, match="exactly one of"):
        th.critical_point(act="tanh", q_star=0.5, sb2=0.1)


# ---------------------------------------------------------------- correlation map, depth scales


def test_c_star_in_both_phases():
    chaotic = {"act": "tanh", "sw2": 2.5, "sb2": 0.1}
    cs = th.c_star(**chaotic).value
    assert 0 < cs < 1
    assert th.c_map(**chaotic, c=cs).value == pytest.approx(cs, abs=1e-12)
    assert th.chi_c(**chaotic, c=cs).value < 1  # attracting
    assert th.c_star(act="tanh", sw2=0.9, sb2=0.1).value == 1.0
    assert th.c_star(act="tanh", sw2=2.5, sb2=0.0).value == 0.0  # odd φ, σ_b = 0
    assert th.c_star(act="relu", sw2=1.5, sb2=0.2).value == 1.0


def test_depth_scales_diverge_at_criticality_only():
    relu = th.depth_scales(act="relu", sw2=2.0, sb2=0.0)
    assert relu.xi_q.value == relu.xi_c.value == relu.xi_grad.value == math.inf
    cp = th.critical_point(act="tanh", sb2=0.05)
    crit = th.depth_scales(act="tanh", sw2=cp.sw2.value, sb2=0.05)
    assert crit.xi_c.value == crit.xi_grad.value == math.inf
    assert 0 < crit.xi_q.value < 10  # the length map still converges exponentially
    ordered = th.depth_scales(act="tanh", sw2=1.2, sb2=0.05)
    chaotic = th.depth_scales(act="tanh", sw2=2.5, sb2=0.05)
    assert 0 < ordered.xi_c.value < 100 and ordered.xi_grad.value > 0
    assert 0 < chaotic.xi_c.value < 100 and chaotic.xi_grad.value < 0  # gradients grow


@pytest.mark.parametrize(
    ("act", "point"),
    [
        ("tanh", dict(sb2=0.0)),
        ("tanh", dict(sb2=0.05)),
        ("tanh", dict(q_star=1.0)),
        ("erf", dict(sb2=0.05)),
        ("erf", dict(q_star=1.0)),
        ("hardtanh", dict(sb2=0.0)),
        ("relu", dict(sb2=0.0)),
        ("leaky_relu", dict(sb2=0.0)),
    ],
)
def test_depth_scales_are_infinite_at_the_solved_critical_point(act, point):
    # critical_point solves χ1 = 1 to round-off, not exactly: χ1 may be 1 ± a few 1e-15,
    # where −1/log χ1 would be ±1e15 layers instead of the divergence §1.3 states.
    cp = th.critical_point(act=act, **point)
    sw2, sb2 = cp.sw2.value, cp.sb2.value
    chi = th.chi1(act=act, sw2=sw2, sb2=sb2).value
    assert chi == pytest.approx(1.0, rel=th.CRITICAL_RTOL, abs=0)  # compared with a tolerance
    scales = th.depth_scales(act=act, sw2=sw2, sb2=sb2)
    assert scales.xi_grad.value == math.inf
    assert scales.xi_c.value == math.inf  # ordered side of the line: χ_c(c* = 1) = χ1


@pytest.mark.parametrize("factor", [1 - 1e-6, 1 + 1e-6])
def test_depth_scales_just_off_criticality_are_finite(factor):
    # One part in 1e6 away from ReLU's critical point: χ1 = factor, ξ_∇ = −1/log χ1 ≈ ±1e6.
    scales = th.depth_scales(act="relu", sw2=2.0 * factor, sb2=0.0, q=1.0)
    assert scales.xi_grad.value == pytest.approx(-1.0 / math.log(factor), rel=1e-9)
    assert math.isfinite(scales.xi_c.value)


def _fitted_slope(values: np.ndarray, fixed: float, burn_in: int = 3) -> float:
    dev = np.log(np.abs(values[burn_in:] - fixed))
    return float(np.polyfit(np.arange(len(dev)), dev, 1)[0])


def test_fitted_depth_scales_match_predictions():
    sw2, sb2 = 1.2, 0.05  # ordered tanh
    qs = th.q_star(act="tanh", sw2=sw2, sb2=sb2).value
    scales = th.depth_scales(act="tanh", sw2=sw2, sb2=sb2)
    profile = th.q_profile(act="tanh", sw2=sw2, sb2=sb2, q1=1.5 * qs, depth=12).value
    assert _fitted_slope(profile, qs) == pytest.approx(-1 / scales.xi_q.value, rel=0.03)
    cs = [0.3]
    for _ in range(20):
        cs.append(th.c_map(act="tanh", sw2=sw2, sb2=sb2, c=cs[-1], q=qs).value)
    assert _fitted_slope(np.array(cs), 1.0, burn_in=8) == pytest.approx(
        -1 / scales.xi_c.value, rel=0.03
    )


# ---------------------------------------------------------------- API behaviour


def test_callable_activation_matches_registered_one():
    custom = activation_from_callable(np.tanh)  # numerical derivatives
    assert custom.odd
    for q in (0.2, 1.5):
        assert th.mu(act=custom, q=q, k=2).value == pytest.approx(
            th.mu(act="tanh", q=q, k=2).value, rel=1e-8
        )
        assert th.chi_q(act=np.tanh, sw2=1.0, q=q).value == pytest.approx(
            th.chi_q(act="tanh", sw2=1.0, q=q).value, rel=1e-6
        )


def test_predictions_carry_provenance():
    assert set(ACTIVATIONS) >= {"linear", "relu", "hardtanh", "erf", "tanh", "gelu"}
    relu_mu = th.mu(act="relu", q=1.0, k=2)
    assert isinstance(relu_mu, Prediction) and relu_mu.tag == "S" and float(relu_mu) == 0.5
    assert th.q_star(act="tanh", sw2=1.5, sb2=0.1).cite == "poole2016"
    with pytest.raises(ValueError, match="provenance tag"):
        Prediction(value=1.0, tag="X", cite="derived", what="")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: th.mu(act="swish9", q=1.0), "unknown activation 'swish9'"),
        (lambda: th.mu(act="tanh", q=-1.0), "q=-1.0 is a variance"),
        (lambda: th.mu(act="tanh", q=1.0, k=2.5), "k must be an integer"),
        (lambda: th.mu(act="tanh", q=1.0, k=0), "k must be at least 1"),
        (lambda: th.q_star(act="tanh", sw2=-1.0, sb2=0.0), "sw2=-1.0 is a variance"),
        (lambda: th.q_star(act="tanh", sw2=1.0, sb2=-0.1), "sb2=-0.1 is a variance"),
        (lambda: th.q_profile(act="tanh", sw2=1, sb2=0, q1=1, depth=-1), "depth must be at least"),
        (lambda: th.c_map(act="tanh", sw2=1.5, sb2=0.1, c=1.5), r"must lie in \[-1, 1\]"),
        (lambda: th.c_star(act="tanh", sw2=0.9, sb2=0.0), "undefined at q\\* = 0"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
