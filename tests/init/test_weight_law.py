"""Scheme.weight_law: the law each scheme registers, checked against the weights it draws."""

from __future__ import annotations

import inspect
import math
import typing

import pytest
import torch
from torch import nn

from isokit.init import apply, get_scheme, schemes
from isokit.theory.law import WeightLaw

N = 1024  # a square Linear of 1M weights: the variance estimate is within ~0.3 %


def _empirical_sigma_w2(scheme: str, layer: nn.Module, **options) -> float:
    """fan_in × the mean square of the weights the scheme draws (their mean is 0)."""
    apply(layer, scheme, seed=0, **options)
    w = layer.weight.detach().double()
    fan_in = w[0].numel()
    return float(w.pow(2).mean() * fan_in)


GAUSSIAN_CASES = [
    ("kaiming-normal", {}),
    ("kaiming-normal", {"nonlinearity": "tanh"}),
    ("kaiming-normal", {"nonlinearity": "leaky_relu", "a": 0.2}),
    ("kaiming-normal", {"nonlinearity": "selu", "mode": "fan_out"}),
    ("kaiming-uniform", {}),
    ("kaiming-uniform", {"nonlinearity": "sigmoid"}),
    ("xavier-normal", {}),
    ("xavier-normal", {"gain": 2.0, "variant": "tf_truncated"}),
    ("xavier-uniform", {"gain": 0.5}),
    ("torch-default", {}),
]


@pytest.mark.parametrize(("scheme", "options"), GAUSSIAN_CASES)
def test_gaussian_law_matches_the_variance_the_scheme_draws(scheme, options):
    law = get_scheme(scheme).weight_law(options, fan_in=N, bias=True)
    assert law.ensemble == "gaussian"
    measured = _empirical_sigma_w2(scheme, nn.Linear(N, N), **options)
    assert measured == pytest.approx(law.sigma_w2, rel=0.015)


@pytest.mark.parametrize(
    ("scheme", "options", "layer"),
    [
        ("orthogonal", {}, lambda: nn.Linear(128, 128)),
        ("orthogonal", {"gain": "relu"}, lambda: nn.Linear(128, 128)),
        ("orthogonal", {"gain": 0.7}, lambda: nn.Conv2d(32, 32, 3)),
        ("delta-orthogonal", {"gain": 1.5}, lambda: nn.Conv2d(32, 32, 3, padding=1)),
        ("delta-orthogonal", {}, lambda: nn.Linear(64, 64)),
    ],
)
def test_orthogonal_laws_match_the_drawn_weights_exactly(scheme, options, layer):
    # Orthogonal rows have unit norm, so fan_in · mean(w²) is gain² up to rounding.
    layer = layer()
    fan_in = layer.weight[0].numel()
    law = get_scheme(scheme).weight_law(options, fan_in=fan_in, bias=True)
    assert law.ensemble == ("delta-orthogonal" if scheme == "delta-orthogonal" else "orthogonal")
    measured = _empirical_sigma_w2(scheme, layer, **options)
    assert measured == pytest.approx(law.sigma_w2, rel=1e-5)


def test_torch_default_bias_law_matches_the_drawn_biases_and_vanishes_without_bias():
    fan_in = 256
    law = get_scheme("torch-default").weight_law({}, fan_in=fan_in, bias=True)
    layer = apply(nn.Linear(fan_in, 50_000), "torch-default", seed=0)
    measured = float(layer.bias.detach().double().pow(2).mean())
    assert measured == pytest.approx(law.sigma_b2, rel=0.02)
    assert law.sigma_b2 == 1.0 / (3.0 * fan_in)
    no_bias = get_scheme("torch-default").weight_law({}, fan_in=fan_in, bias=False)
    assert no_bias == WeightLaw(sigma_w2=1.0 / 3.0, sigma_b2=0.0, ensemble="gaussian")


@pytest.mark.parametrize(
    ("scheme", "options", "sigma_w2"),
    [
        # The values theory overlays were drawn with before schemes owned their laws.
        ("kaiming-normal", {}, 2.0),
        ("kaiming-uniform", {"nonlinearity": "tanh"}, (5 / 3) ** 2),
        ("kaiming-normal", {"nonlinearity": "leaky_relu", "a": 0.1}, 2.0 / (1 + 0.1**2)),
        ("kaiming-normal", {"nonlinearity": "selu"}, (3 / 4) ** 2),
        ("kaiming-normal", {"nonlinearity": "linear"}, 1.0),
        ("xavier-normal", {}, 1.0),
        ("xavier-uniform", {"gain": 3}, 9.0),
        ("orthogonal", {"gain": "relu"}, math.sqrt(2.0) ** 2),
        ("delta-orthogonal", {"gain": 2.0}, 4.0),
        ("torch-default", {}, 1.0 / 3.0),
    ],
)
def test_law_values_are_bit_identical_to_the_former_overlay_table(scheme, options, sigma_w2):
    law = get_scheme(scheme).weight_law(options, fan_in=64, bias=False)
    assert law.sigma_w2 == sigma_w2 and law.sigma_b2 == 0.0


def test_kaiming_gain_squared_agrees_with_torch_for_every_nonlinearity():
    from isokit.init.variance import Nonlinearity

    for nonlinearity in typing.get_args(Nonlinearity):
        law = get_scheme("kaiming-normal").weight_law(
            {"nonlinearity": nonlinearity, "a": 0.3}, fan_in=8, bias=False
        )
        gain = torch.nn.init.calculate_gain(nonlinearity, 0.3)
        assert law.sigma_w2 == pytest.approx(gain**2, rel=1e-14), nonlinearity


@pytest.mark.parametrize(
    "scheme",
    ["kaiming-normal", "kaiming-uniform", "xavier-normal", "xavier-uniform", "orthogonal"],
)
def test_kept_biases_have_no_law(scheme):
    assert get_scheme(scheme).weight_law({"bias": "keep"}, fan_in=16, bias=True) is None
    assert get_scheme(scheme).weight_law({"bias": "zero"}, fan_in=16, bias=True) is not None


def test_schemes_without_iid_weights_have_no_law():
    iid = {
        "torch-default",
        "kaiming-normal",
        "kaiming-uniform",
        "xavier-normal",
        "xavier-uniform",
        "orthogonal",
        "delta-orthogonal",
    }
    for scheme in schemes():
        law = scheme.weight_law({}, fan_in=16, bias=True)
        assert (law is not None) == (scheme.name in iid), scheme.name


def test_missing_options_take_the_schemes_own_defaults():
    for scheme in schemes():
        params = inspect.signature(scheme.fn).parameters.values()
        expected = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
        assert dict(scheme.defaults) == expected, scheme.name
        assert scheme.options == tuple(expected)
        if scheme.law is not None:
            assert scheme.weight_law({}, fan_in=16, bias=True) == scheme.weight_law(
                dict(scheme.defaults), fan_in=16, bias=True
            )


@pytest.mark.parametrize(
    ("options", "kwargs", "error", "match"),
    [
        ({"gian": 1.0}, {}, TypeError, "unknown option.*gian.*gain"),
        ({"gain": math.nan}, {}, ValueError, "gain must be finite"),
        ({"gain": "2"}, {}, TypeError, "gain must be a real number or 'relu', got '2'"),
        ({"bias": "drop"}, {}, ValueError, "bias='drop'"),
        ({}, {"fan_in": 0}, ValueError, "fan_in must be a positive int"),
        ({}, {"fan_in": 16.0}, TypeError, "fan_in must be a positive int"),
        ({}, {"bias": 1}, TypeError, "bias must be True or False"),
    ],
)
def test_weight_law_rejects_bad_input(options, kwargs, error, match):
    with pytest.raises(error, match=match):
        get_scheme("orthogonal").weight_law(options, **{"fan_in": 16, "bias": True, **kwargs})


def test_kaiming_law_rejects_what_the_scheme_rejects():
    with pytest.raises(ValueError, match="nonlinearity='gelu'"):
        get_scheme("kaiming-normal").weight_law({"nonlinearity": "gelu"}, fan_in=8, bias=False)
    with pytest.raises(TypeError, match="a must be a real number"):
        get_scheme("kaiming-normal").weight_law({"a": "0.1"}, fan_in=8, bias=False)
