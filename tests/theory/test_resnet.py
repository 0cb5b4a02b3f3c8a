"""Residual networks (``docs/theory.md`` §4): closed forms, the single-parameter limit, the variance
recursion for odd φ, and float64 NumPy ensembles vs ``resnet_moments``."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from isokit import theory as th
from isokit.theory.activations import get_activation

N, S = 1000, 3


@pytest.mark.parametrize("a", [0.1, 0.5, 1.0])
def test_linear_layers_closed_forms(a):
    L = 7
    g = th.resnet_moments(act="linear", a=a, sw2=1.0, sb2=0.0, depth=L)
    o = th.resnet_moments(act="linear", a=a, sw2=1.0, sb2=0.0, depth=L, weights="orthogonal")
    assert g.m1.value == pytest.approx((1 + a * a) ** L, rel=1e-14)
    assert o.m1.value == g.m1.value
    assert g.var.value == pytest.approx(L * (2 * a**2 + a**4) / (1 + a**2) ** 2, rel=1e-14)
    assert o.var.value == pytest.approx(L * 2 * a**2 / (1 + a**2) ** 2, rel=1e-14)
    assert g.t.value == pytest.approx(L * a * a)


@pytest.mark.parametrize("name", ["linear", "relu", "tanh"])
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_small_branch_limit_depends_on_t_alone(name, weights):
    # a² = O(1/L): m1 → e^t and v → 2t with t = Σ s_l; the corrections are O(t²/L)
    L, t_target = 2000, 0.8
    m = th.resnet_moments(
        act=name, a=math.sqrt(t_target / L), sw2=1.0, sb2=0.0, depth=L, weights=weights
    )
    t = m.t.value
    mu1 = {"linear": 1.0, "relu": 0.5}.get(name)
    if mu1 is not None:  # μ1 does not depend on q, so t = L·a²·σ_w²·μ1 exactly
        assert t == pytest.approx(t_target * mu1, rel=1e-12)
    tol = 2 * (1 + t) ** 2 / L
    assert m.m1.value == pytest.approx(math.exp(t), rel=tol)
    assert m.var.value == pytest.approx(2 * t, rel=tol)


@pytest.mark.parametrize("name", ["linear", "tanh", "erf", "relu", "leaky_relu"])
def test_predict_resnet_is_resnet_moments_at_every_depth(name):
    kw = dict(act=name, a=0.4, sw2=1.3, sb2=0.05 if name in ("tanh", "erf") else 0.0)
    per_depth = th.predict_resnet(depth=6, weights="orthogonal", x0_sq=2.0, **kw)
    np.testing.assert_array_equal(per_depth.depths, np.arange(1, 7))
    for d in range(1, 7):
        whole = th.resnet_moments(depth=d, weights="orthogonal", x0_sq=2.0, **kw)
        for field in ("m1", "var", "var_raw", "t"):
            got = getattr(per_depth, field).value[d - 1]
            assert got == pytest.approx(getattr(whole, field).value, rel=1e-13), field
        assert whole.var_raw.value == pytest.approx(whole.m1.value**2 * whole.var.value, rel=1e-14)


@pytest.mark.parametrize(
    ("name", "bulk"),
    [("linear", False), ("tanh", False), ("erf", False), ("relu", True), ("leaky_relu", True)],
)
def test_non_odd_activations_predict_the_bulk_and_say_so(name, bulk):
    # §4: the non-zero mean of ReLU-like branch outputs makes one outlier eigenvalue; the
    # formulas then describe λ_2..λ_r, which the probe measures as m1_bulk and var_bulk.
    for pred in (
        th.resnet_moments(act=name, a=0.5, sw2=1.0, sb2=0.0, depth=3),
        th.predict_resnet(act=name, a=0.5, sw2=1.0, sb2=0.0, depth=3),
    ):
        statistics = (pred.m1.statistic, pred.var.statistic, pred.var_raw.statistic)
        if bulk:
            assert statistics == ("m1_bulk", "var_bulk", None)
            assert "bulk" in pred.m1.what and "bulk" in pred.var.what
        else:
            assert statistics == ("m1", "var", "var_raw")
        assert pred.t.statistic is None


def test_per_block_arrays_and_empty_net():
    L = 5
    scalar = th.resnet_moments(act="erf", a=0.3, sw2=1.2, sb2=0.1, depth=L)
    arrays = th.resnet_moments(act="erf", a=[0.3] * L, sw2=[1.2] * L, sb2=[0.1] * L, depth=L)
    assert arrays.var.value == pytest.approx(scalar.var.value, rel=1e-14)
    empty = th.resnet_moments(act="tanh", a=0.5, sw2=1.0, sb2=0.0, depth=0)
    assert (empty.m1.value, empty.var.value) == (1.0, 0.0)


# ---------------------------------------------------------------- simulation


def _haar(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _resnet(rng, name, a, sw2, sb2, depth, n, weights, *, with_jacobian=True):
    """Forward pass of ``x^l = x^{l−1} + a·φ(W x^{l−1} + b)`` from ``x^0 ~ N(0, I)``.

    Returns ``J = Π (I + a·D W)``, the measured ``q^l = ‖h^l‖²/N``, ``x^0`` and ``x^L``.
    """
    act = get_activation(name)
    x0 = rng.standard_normal(n)
    x, J, qs = x0.copy(), np.eye(n) if with_jacobian else None, []
    for _ in range(depth):
        if weights == "gaussian":
            W = rng.standard_normal((n, n)) * math.sqrt(sw2 / n)
        else:
            W = math.sqrt(sw2) * _haar(rng, n)
        h = W @ x + math.sqrt(sb2) * rng.standard_normal(n)
        qs.append(np.mean(h**2))
        if with_jacobian:
            J = J + a * (act.dphi(h)[:, None] * (W @ J))
        x = x + a * act.phi(h)
    return J, np.array(qs), x0, x


@functools.cache
def _ensemble(name, a, sw2, sb2, depth, weights, n=N, draws=S, seed=0):
    rng = np.random.default_rng([seed, depth, n, int(1e6 * a), int(1e6 * sw2)])
    runs = [_resnet(rng, name, a, sw2, sb2, depth, n, weights) for _ in range(draws)]
    lams = np.array([np.sort(np.linalg.eigvalsh(J @ J.T)) for J, *_ in runs])
    return lams, runs


def _m1_var(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m1, m2 = lam.mean(axis=1), np.mean(lam**2, axis=1)
    return m1, m2 / m1**2 - 1


@pytest.mark.parametrize(
    ("name", "weights", "n"),
    [
        ("linear", "gaussian", N),
        ("linear", "orthogonal", 600),  # orthogonal nets are nearly unbiased; QR costs N³
        ("tanh", "gaussian", N),
    ],
)
def test_residual_ensembles_match_resnet_moments(name, weights, n):
    L, a, sw2, sb2 = 8, 0.5, 1.5, 0.1
    if name == "linear":
        sw2, sb2 = 1.0, 0.0
    lams, _ = _ensemble(name, a, sw2, sb2, L, weights, n=n)
    m1, v = _m1_var(lams)
    pred = th.resnet_moments(act=name, a=a, sw2=sw2, sb2=sb2, depth=L, weights=weights)
    assert v.mean() == pytest.approx(pred.var.value, rel=0.03)
    assert m1.mean() == pytest.approx(pred.m1.value, rel=0.03)
    logs = np.log(m1)
    assert abs(logs.mean() - math.log(pred.m1.value)) <= 3 * logs.std(ddof=1) / math.sqrt(S)


def test_odd_variance_recursion_matches_forward_pass():
    L, a, sw2, sb2, draws = 10, 0.7, 1.5, 0.1, 10
    rng = np.random.default_rng(5)
    runs = [
        _resnet(rng, "tanh", a, sw2, sb2, L, N, "gaussian", with_jacobian=False)[1]
        for _ in range(draws)
    ]
    pred = th.resnet_q_profile(act="tanh", a=a, sw2=sw2, sb2=sb2, depth=L, x0_sq=1.0).value
    # ‖x^l‖² random-walks by O(1/√N) per block (the skip/branch cross term vanishes only in
    # expectation), so compare the mean profile with its standard error.
    se = np.std(runs, axis=0, ddof=1) / math.sqrt(draws)
    assert np.all(np.abs(np.mean(runs, axis=0) - pred) <= 4 * se)
    np.testing.assert_allclose(np.mean(runs, axis=0), pred, rtol=0.06)
    with pytest.raises(ValueError, match="needs an odd activation"):
        th.resnet_q_profile(act="gelu", a=a, sw2=sw2, sb2=sb2, depth=L)
    with pytest.raises(ValueError, match="needs an odd activation"):
        th.resnet_moments(act="gelu", a=a, sw2=sw2, sb2=sb2, depth=L)


def test_relu_resnet_outlier_and_bulk():
    L, a = 8, 0.5
    lams, runs = _ensemble("relu", a, 2.0, 0.0, L, "gaussian")
    pred = th.resnet_moments(act="relu", a=a, sw2=2.0, sb2=0.0, depth=L)
    for lam, (J, _, x0, xL) in zip(lams, runs, strict=True):
        # Euler's relation for a bias-free, degree-1 homogeneous net: J·x^0 = x^L exactly
        np.testing.assert_allclose(J @ x0, xL, rtol=1e-10, atol=1e-10)
        gain = np.sum(xL**2) / np.sum(x0**2)
        assert lam[-1] >= gain * (1 - 1e-10)  # σ_max² ≥ ‖x^L‖²/‖x^0‖²
        assert gain > 2 * pred.m1.value  # the skip path accumulates the positive mean
    bulk_m1, bulk_v = _m1_var(lams[:, :-1])  # drop the outlier
    assert bulk_m1.mean() == pytest.approx(pred.m1.value, rel=0.03)
    assert bulk_v.mean() == pytest.approx(pred.var.value, rel=0.03)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: th.resnet_moments(act="tanh", a=0.5, sw2=1, sb2=0, depth=-2), "depth must be"),
        (lambda: th.resnet_moments(act="tanh", a=[0.5], sw2=1, sb2=0, depth=2), "a has 1 entries"),
        (lambda: th.resnet_moments(act="tanh", a=0.5, sw2=1, sb2=-1, depth=2), "sb2=-1.0 is a"),
        (
            lambda: th.resnet_moments(act="tanh", a=0.5, sw2=1, sb2=0, depth=2, weights="x"),
            "weights",
        ),
        (lambda: th.resnet_moments(act="foo", a=0.5, sw2=1, sb2=0, depth=2), "unknown activation"),
        (lambda: th.resnet_moments(act="tanh", a=math.nan, sw2=1, sb2=0, depth=2), "finite"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
