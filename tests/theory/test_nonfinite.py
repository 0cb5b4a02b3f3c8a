"""No NaN or inf gets into or out of ``isokit.theory``: a clear ``ValueError`` names the cause.

Non-finite arguments are refused by the shared checks of ``isokit.theory._validate`` (which all
take ``(name, value)``); non-finite results from finite arguments — an activation undefined on
part of the Gaussian's range, variances that overflow float64 over the layers — are refused
where they arise instead of travelling on as NaN.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from isokit import theory as th
from isokit.theory import _validate as check

# One valid call per public function; every numeric argument is then replaced by NaN and ±inf.
VALID = [
    (th.mu, dict(act="tanh", q=1.0, k=1)),
    (th.length_map, dict(act="tanh", sw2=1.0, sb2=0.1, q=1.0)),
    (th.q_profile, dict(act="tanh", sw2=1.0, sb2=0.1, q1=1.0, depth=3)),
    (th.q_star, dict(act="tanh", sw2=1.0, sb2=0.1, q1=1.0)),
    (th.chi1, dict(act="tanh", sw2=1.0, sb2=0.1, q=1.0)),
    (th.chi_q, dict(act="tanh", sw2=1.0, sb2=0.1, q=1.0)),
    (th.c_map, dict(act="tanh", sw2=1.5, sb2=0.1, c=0.5, q=1.0)),
    (th.chi_c, dict(act="tanh", sw2=1.5, sb2=0.1, c=0.5, q=1.0)),
    (th.c_star, dict(act="tanh", sw2=1.5, sb2=0.1, q=1.0)),
    (th.depth_scales, dict(act="tanh", sw2=1.5, sb2=0.1, q=1.0)),
    (th.critical_point, dict(act="tanh", sb2=0.1)),
    (th.critical_point, dict(act="tanh", q_star=0.5)),
    (th.gauss_expect2, dict(f=lambda u, v: u * v, q=1.0, c=0.5)),
    (th.jacobian_moments, dict(act="tanh", sw2=1.0, sb2=0.1, depth=3, q1=1.0)),
    (th.jacobian_moments, dict(act="tanh", sw2=1.0, sb2=0.1, depth=2, q_profile=[1.0, 1.0])),
    (th.series_moments, dict(act="tanh", sw2=1.0, sb2=0.1, depth=3, q1=1.0)),
    (th.predict_mlp, dict(act="tanh", sw2=1.0, sb2=0.1, depth=3, q1=1.0, width=10)),
    (th.pl_moments, dict(depth=3, p=0.5, k=2, sw2=2.0)),
    (th.pl_edge, dict(depth=3, p=0.5, sw2=2.0)),
    (th.fuss_catalan, dict(depth=3, k=2)),
    (th.fc_density, dict(depth=2, x=[0.5, 1.0])),
    (th.fc_density, dict(depth=2, theta=[0.3, 0.5])),
    (th.linear_gaussian_m2_finite, dict(depth=3, width=10)),
    (th.zero_atom, dict(p=0.5, width=10, depth=2)),
    (th.resnet_moments, dict(act="tanh", a=0.5, sw2=1.0, sb2=0.1, depth=3)),
    (
        th.resnet_moments,
        dict(act="tanh", a=[0.5, 0.5], sw2=1.0, sb2=0.1, depth=2, q_profile=[1, 2]),
    ),
    (th.resnet_q_profile, dict(act="tanh", a=0.5, sw2=1.0, sb2=0.1, depth=3, x0_sq=1.0)),
]


def _cases():
    for fn, kwargs in VALID:
        for arg, value in kwargs.items():
            if arg in ("act", "f"):
                continue
            for bad in (math.nan, math.inf, -math.inf):
                # A sequence argument gets one bad entry among good ones.
                replaced = [value[0], bad] if isinstance(value, list) else bad
                yield pytest.param(fn, kwargs, arg, replaced, id=f"{fn.__name__}-{arg}={bad}")


@pytest.mark.parametrize(("fn", "kwargs", "arg", "bad"), list(_cases()))
def test_non_finite_arguments_are_refused_naming_the_argument(fn, kwargs, arg, bad):
    fn(**kwargs)  # the call is valid as given
    with pytest.raises(ValueError, match=arg):
        fn(**{**kwargs, arg: bad})


# ------------------------------------------------------------ non-finite results (fail today)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("arg", ["x", "theta"])
def test_fc_density_refuses_non_finite_points(arg, bad):
    # Before: NaN points gave NaN (theta) or silently a zero density (x).
    good = [0.5, 0.2]
    with pytest.raises(ValueError, match=f"{arg} must be finite"):
        th.fc_density(depth=2, **{arg: [good[0], bad]})


def test_an_activation_undefined_on_part_of_the_line_is_a_clear_error():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log of negatives, by design here
        with pytest.raises(ValueError, match="μ_1 of log at q=1 is nan"):
            th.mu(act=np.log, q=1.0)
        with pytest.raises(ValueError, match="E φ² of log"):
            th.q_star(act=np.log, sw2=1.0, sb2=0.0)
        with pytest.raises(ValueError, match="of exp at q=10000"):
            th.chi1(act=np.exp, sw2=1.0, q=1e4)  # exp overflows in the integrand


def test_gaussian_expectations_of_non_finite_integrands_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="E f\\(z\\) is not finite"):
            th.gauss_expect(np.log)
        with pytest.raises(ValueError, match="E f\\(u1, u2\\) is not finite"):
            th.gauss_expect2(lambda u, v: np.log(u * v), q=1.0, c=0.5)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: th.length_map(act="relu", sw2=1e308, sb2=0.0, q=1e308), "length map"),
        (lambda: th.q_profile(act="relu", sw2=1e200, sb2=0.0, q1=1.0, depth=4), "q\\^l"),
        (lambda: th.jacobian_moments(act="relu", sw2=1e200, sb2=0.0, depth=3), "m1"),
        (lambda: th.predict_mlp(act="linear", sw2=1e200, sb2=0.0, depth=3, q1=1.0), "q\\^l"),
        (lambda: th.predict_mlp(act="relu", sw2=1e200, sb2=0.0, depth=3), "m1"),
        (lambda: th.resnet_moments(act="relu", a=1e100, sw2=1e300, sb2=0.0, depth=3), "m1"),
        (lambda: th.pl_moments(depth=50, p=0.5, k=8, sw2=1e10), "overflows"),
        (lambda: th.pl_edge(depth=400, p=0.5, sw2=1e3), "overflows"),
        (lambda: th.series_moments(act="relu", sw2=1e150, sb2=0.0, depth=3, order=4), "m_1"),
    ],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy notes the overflow too
def test_overflow_from_finite_variances_is_a_clear_error(call, what):
    # Before: inf, NaN or a raw OverflowError.
    with pytest.raises(ValueError, match=what):
        call()


def test_depth_scales_keep_their_infinite_value_at_criticality():
    # ξ = −1/log χ diverges at χ = 1: the one place where inf is the answer, not an error.
    assert th.depth_scales(act="relu", sw2=2.0, sb2=0.0).xi_grad.value == math.inf


# ------------------------------------------------------------ wrong types (fail today)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: th.zero_atom(p=True), "p must be a real number"),  # was accepted as p = 1
        (lambda: th.c_map(act="tanh", sw2=1.5, sb2=0.1, c=None), "c must be a real number"),
        (lambda: th.c_map(act="tanh", sw2=1.5, sb2=0.1, c="0.5"), "c must be a real number"),
        (lambda: th.resnet_moments(act="relu", a="x", sw2=2, sb2=0, depth=2), "branch multi"),
        (lambda: th.fc_density(depth=2, x=["a"]), "x must be an array of real numbers"),
        (lambda: th.activation_from_callable(np.tanh, kinks=(math.nan,)), "kinks\\[0\\]"),
        (lambda: th.chi1(act="tanh", sw2=np.array(math.nan)), "sw2 must be finite"),
    ],
)
def test_wrong_types_are_value_errors_naming_the_argument(call, what):
    with pytest.raises(ValueError, match=what):
        call()


def test_a_zero_dimensional_array_is_a_number():
    # np.float64 was accepted, np.array(2.0) was refused as "not a real number".
    assert th.chi1(act="relu", sw2=np.array(2.0)).value == 1.0


def test_checks_take_the_name_first():
    assert check.variance("sw2", 2) == 2.0
    with pytest.raises(ValueError, match="^sw2=-1.0 is a variance"):
        check.variance("sw2", -1.0)
    with pytest.raises(ValueError, match="^depth must be at least 1"):
        check.integer("depth", 0, minimum=1)
    with pytest.raises(ValueError, match="^weights must be 'gaussian'"):
        check.weights("weights", "haar")
    assert check.reals("x", [1, 2]).tolist() == [1.0, 2.0]
