"""Fans and variance-scaling initializers checked against formulas, torch and autograd."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import truncnorm

from isokit.init.variance import (
    TRUNCATED_NORMAL_STD,
    fans,
    kaiming_normal_,
    kaiming_uniform_,
    torch_default_,
    xavier_normal_,
    xavier_uniform_,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_std(w: torch.Tensor, expected: float, rel: float = 0.03) -> None:
    std = w.double().std().item()
    assert abs(std / expected - 1) < rel, (std, expected)
    assert abs(w.double().mean().item()) < 0.05 * expected


# ------------------------------------------------------------------------------------------- fans


@pytest.mark.parametrize(
    "shape",
    [(10, 20), (20, 10), (7, 3, 5), (16, 4, 3, 3), (32, 1, 3, 3), (6, 2, 3, 5, 1), (8, 8, 1, 1)],
)
def test_fans_torch_convention_matches_torch(shape):
    w = torch.empty(shape)
    assert fans(w) == torch.nn.init._calculate_fan_in_and_fan_out(w)


def test_fans_depthwise_example():
    w = torch.empty(32, 1, 3, 3)
    assert fans(w, groups=32) == (9, 288)
    assert fans(w, convention="true", groups=32) == (9, 9)


def _count_dependencies(conv, x_shape) -> tuple[int, int]:
    """(#inputs one interior output depends on, #outputs one interior input feeds), by autograd."""
    x = torch.zeros(x_shape, dtype=torch.float64, requires_grad=True)
    y = conv(x)
    centre_out = tuple(s // 2 for s in y.shape[2:])
    y[(0, 0, *centre_out)].backward()
    fan_in = int((x.grad != 0).sum())
    e = torch.zeros(x_shape, dtype=torch.float64)
    e[(0, 0, *(s // 2 for s in x_shape[2:]))] = 1.0
    fan_out = int((conv(e) != 0).sum())
    return fan_in, fan_out


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_fans_true_convention_counts_real_connections(groups):
    g = gen(1)
    conv = torch.nn.Conv2d(8, 12, 3, padding=1, groups=groups, bias=False).double()
    torch.nn.init.normal_(conv.weight, generator=g)
    assert fans(conv.weight, convention="true", groups=groups) == _count_dependencies(
        conv, (1, 8, 9, 9)
    )


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_fans_true_convention_transposed_counts_real_connections(groups):
    g = gen(2)
    convt = torch.nn.ConvTranspose2d(8, 12, 3, padding=1, groups=groups, bias=False).double()
    torch.nn.init.normal_(convt.weight, generator=g)
    true = fans(convt.weight, convention="true", groups=groups, transposed=True)
    assert true == _count_dependencies(convt, (1, 8, 9, 9))
    # torch's own numbers for the same weight are the swapped ones (pytorch/pytorch#7865).
    assert fans(convt.weight, groups=groups, transposed=True) == (12 // groups * 9, 8 * 9)


# ----------------------------------------------------------------------- variance of the draws


def test_xavier_uniform_std_and_bound():
    w = xavier_uniform_(torch.empty(1000, 1000), generator=gen())
    bound = math.sqrt(6 / 2000)
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.999 * bound
    assert_std(w, bound / math.sqrt(3))


def test_xavier_normal_conv_std_with_gain():
    w = xavier_normal_(torch.empty(256, 256, 3, 3), gain=5 / 3, generator=gen())
    assert_std(w, 5 / 3 * math.sqrt(2 / (256 * 9 + 256 * 9)))


@pytest.mark.parametrize("fill", [xavier_normal_, kaiming_normal_])
def test_tf_truncated_keeps_variance_and_truncates_at_two_sigma_prime(fill):
    w = fill(torch.empty(1000, 800), variant="tf_truncated", generator=gen())
    target = math.sqrt(2 / 1800) if fill is xavier_normal_ else math.sqrt(2 / 800)
    assert_std(w, target)
    sigma_prime = target / truncnorm(-2, 2).std()
    assert w.abs().max() <= 2 * sigma_prime * (1 + 1e-6)
    assert w.abs().max() > 1.9 * sigma_prime


def test_truncated_normal_constant_is_the_truncated_std():
    assert truncnorm(-2, 2).std() == pytest.approx(TRUNCATED_NORMAL_STD, rel=1e-12)


@pytest.mark.parametrize("mode, fan", [("fan_in", 500), ("fan_out", 1000)])
@pytest.mark.parametrize("uniform", [False, True])
def test_kaiming_modes(mode, fan, uniform):
    fill = kaiming_uniform_ if uniform else kaiming_normal_
    w = fill(torch.empty(1000, 500), mode=mode, nonlinearity="relu", generator=gen())
    std = math.sqrt(2 / fan)
    assert_std(w, std)
    if uniform:
        assert w.abs().max() <= math.sqrt(3) * std


def test_kaiming_leaky_relu_slope_and_tanh_gain():
    w = kaiming_uniform_(torch.empty(1000, 1000), 0.2, generator=gen())
    assert_std(w, math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(1000))
    w = kaiming_normal_(torch.empty(1000, 1000), nonlinearity="tanh", generator=gen())
    assert_std(w, 5 / 3 / math.sqrt(1000))


@pytest.mark.parametrize(
    "convention, expected_fan_out", [("torch", 512 * 9), ("true", 512 // 8 * 9)]
)
def test_kaiming_fan_out_grouped_conv(convention, expected_fan_out):
    w = kaiming_normal_(
        torch.empty(512, 64, 3, 3),
        mode="fan_out",
        nonlinearity="relu",
        convention=convention,
        groups=8,
        generator=gen(),
    )
    assert_std(w, math.sqrt(2 / expected_fan_out))


@pytest.mark.parametrize("convention, fan_out", [("torch", 4096 * 9), ("true", 9)])
def test_depthwise_fans_in_draws(convention, fan_out):
    w = xavier_uniform_(
        torch.empty(4096, 1, 3, 3), convention=convention, groups=4096, generator=gen()
    )
    assert_std(w, math.sqrt(2 / (9 + fan_out)))
    w = kaiming_uniform_(torch.empty(4096, 1, 3, 3), nonlinearity="relu", generator=gen())
    assert_std(w, math.sqrt(2 / 9))


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (xavier_uniform_, torch.nn.init.xavier_uniform_),
        (xavier_normal_, torch.nn.init.xavier_normal_),
        (kaiming_uniform_, torch.nn.init.kaiming_uniform_),
        (kaiming_normal_, torch.nn.init.kaiming_normal_),
    ],
)
def test_default_convention_reproduces_torch(ours, theirs):
    shape = (24, 6, 3, 3)
    a = ours(torch.empty(shape), generator=gen(5))
    b = theirs(torch.empty(shape), generator=gen(5))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------- torch default


def test_torch_default_bounds_and_std():
    w, b = torch.empty(1000, 600), torch.empty(1000)
    out = torch_default_(w, b, generator=gen())
    assert out is w
    bound = 1 / math.sqrt(600)
    assert w.abs().max() <= bound and b.abs().max() <= bound
    assert w.abs().max() > 0.999 * bound
    assert_std(w, 1 / math.sqrt(3 * 600))


def test_torch_default_grouped_conv_uses_per_group_fan_in():
    w = torch_default_(torch.empty(256, 32, 3, 3), generator=gen())  # e.g. groups=8
    assert w.abs().max() <= 1 / math.sqrt(32 * 9)
    assert_std(w, 1 / math.sqrt(3 * 32 * 9))


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.nn.Linear(20, 10),
        lambda: torch.nn.Conv2d(6, 12, 3, groups=3),
        lambda: torch.nn.ConvTranspose1d(4, 6, 5, groups=2),
    ],
)
def test_torch_default_equals_module_reset_parameters(make):
    with torch.random.fork_rng():
        torch.manual_seed(11)
        module = make()
    fresh = make()
    torch_default_(fresh.weight, fresh.bias, generator=gen(11))
    torch.testing.assert_close(fresh.weight, module.weight, rtol=1e-6, atol=0)
    torch.testing.assert_close(fresh.bias, module.bias, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------- generators

RANDOM_FILLS = [xavier_uniform_, xavier_normal_, kaiming_uniform_, kaiming_normal_, torch_default_]


@pytest.mark.parametrize("fill", RANDOM_FILLS)
def test_same_seed_same_tensor_different_seed_different(fill):
    a = fill(torch.empty(16, 8, 3), generator=gen(3))
    b = fill(torch.empty(16, 8, 3), generator=gen(3))
    c = fill(torch.empty(16, 8, 3), generator=gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_writes_into_leaf_parameter_and_returns_it():
    p = torch.nn.Parameter(torch.empty(5, 4))
    assert kaiming_normal_(p, generator=gen()) is p
    assert p.requires_grad and p.grad_fn is None


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("fill", [*RANDOM_FILLS, fans])
@pytest.mark.parametrize("shape", [(5,), ()])
def test_non_matrix_raises(fill, shape):
    with pytest.raises(ValueError, match="weight"):
        fill(torch.empty(shape))


# The functions named like torch.nn.init's accept zero-element tensors as torch does
# (tests/init/test_torch_parity.py); those torch does not have still refuse them.
@pytest.mark.parametrize("fill", [torch_default_, fans])
@pytest.mark.parametrize("shape", [(0, 4), (4, 0, 3)])
def test_empty_raises(fill, shape):
    with pytest.raises(ValueError, match="weight|empty"):
        fill(torch.empty(shape))


@pytest.mark.parametrize("fill", RANDOM_FILLS)
def test_integer_dtype_raises(fill):
    with pytest.raises(TypeError, match="floating-point"):
        fill(torch.zeros(4, 4, dtype=torch.int64))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda w: fans(w, convention="keras"), "convention='keras'.*'torch', 'true'"),
        (lambda w: kaiming_normal_(w, mode="fan_avg"), "mode='fan_avg'"),
        (lambda w: kaiming_uniform_(w, nonlinearity="gelu"), "nonlinearity='gelu'"),
        (lambda w: xavier_normal_(w, variant="keras"), "variant='keras'"),
        (lambda w: xavier_uniform_(w, convention="true", groups=3), "not divisible by groups=3"),
        (lambda w: fans(w, groups=0), "positive int"),
        (lambda w: fans(w[:, :, 0, 0], groups=2), "conv weight"),
        (lambda w: fans(w[:, :, 0, 0], transposed=True), "ConvTranspose"),
    ],
)
def test_bad_options_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.empty(8, 4, 3, 3))


def test_bad_bias_raises():
    with pytest.raises(ValueError, match="bias must be a 1-D"):
        torch_default_(torch.empty(4, 3), torch.empty(4, 3))
    with pytest.raises(TypeError, match="floating-point"):
        torch_default_(torch.empty(4, 3), torch.zeros(4, dtype=torch.int32))


def test_conv_functional_sanity():
    # A He fan_in ReLU conv keeps the mean squared pre-activation of a ReLU input.
    x = torch.relu(torch.randn(8, 64, 16, 16, generator=gen(9)))
    w = kaiming_normal_(torch.empty(64, 64, 3, 3), nonlinearity="relu", generator=gen(10))
    y = F.conv2d(x, w, padding=1)[:, :, 1:-1, 1:-1]
    ratio = (y.pow(2).mean() / (2 * x.pow(2).mean())).item()
    assert abs(ratio - 1) < 0.1
