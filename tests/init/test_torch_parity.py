"""The tensor functions named like ``torch.nn.init``'s keep torch's signature and behaviour.

These are the properties PyTorch's own ``test/nn/test_init.py`` checks for the functions isokit
shares (laws by Kolmogorov–Smirnov tests, std formulas per mode and slope, dirac on grouped
convolutions, eye, orthogonal columns, argument errors, zero-element tensors), restated for
isokit's functions, plus two that only a copy has to pass: the positional signature is torch's,
and where the laws are the same the draws are too, for the same generator.
"""

from __future__ import annotations

import inspect
import math
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from isokit.init import (
    dirac_,
    eye_,
    kaiming_normal_,
    kaiming_uniform_,
    orthogonal_,
    xavier_normal_,
    xavier_uniform_,
)

SHARED = {
    "xavier_uniform_": xavier_uniform_,
    "xavier_normal_": xavier_normal_,
    "kaiming_uniform_": kaiming_uniform_,
    "kaiming_normal_": kaiming_normal_,
    "orthogonal_": orthogonal_,
    "eye_": eye_,
    "dirac_": dirac_,
}
RANDOM = ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]
P_MIN = 1e-4  # torch's threshold: a correct law fails one KS test in 10 000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_shape(rng: random.Random, dims: int, low: int, high: int) -> list[int]:
    return [rng.randint(low, high) for _ in range(dims)]


def torch_fans(t: torch.Tensor) -> tuple[int, int]:
    r = t[0, 0].numel() if t.dim() > 2 else 1
    return t.size(1) * r, t.size(0) * r


def is_uniform(t: torch.Tensor, a: float, b: float) -> bool:
    return stats.kstest(t.flatten().tolist(), "uniform", args=(a, b - a)).pvalue > P_MIN


def is_normal(t: torch.Tensor, std: float) -> bool:
    return stats.kstest(t.flatten().tolist(), "norm", args=(0.0, std)).pvalue > P_MIN


# -------------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("name", sorted(SHARED))
def test_positional_signature_is_torchs(name):
    ours = list(inspect.signature(SHARED[name]).parameters.values())
    theirs = list(inspect.signature(getattr(torch.nn.init, name)).parameters.values())
    # torch's parameters come first, in torch's order, with torch's names and defaults ...
    for o, t in zip(ours, theirs, strict=False):
        assert (o.name, o.kind) == (t.name, t.kind), name
        assert o.default == t.default, (name, o.name)
    assert len(ours) >= len(theirs)
    # ... and isokit's own options can only be passed by keyword.
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs) :]), name


def test_torch_style_positional_calls():
    w = kaiming_normal_(torch.empty(40, 30), 0.0, "fan_out", "relu", gen(1))
    ref = torch.nn.init.kaiming_normal_(torch.empty(40, 30), 0.0, "fan_out", "relu", gen(1))
    assert torch.equal(w, ref)
    assert torch.equal(
        dirac_(torch.empty(6, 2, 3), 3), torch.nn.init.dirac_(torch.empty(6, 2, 3), 3)
    )
    with pytest.raises(TypeError):
        eye_(torch.empty(3, 3), 2.0)  # scale is keyword-only


# ----------------------------------------------------------------------------- the same draws


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(17, 9), (8, 3, 5, 5), (6, 4, 3)])
def test_same_draws_as_torch_for_the_same_generator(name, dtype, shape):
    ours = SHARED[name](torch.empty(shape, dtype=dtype), generator=gen(3))
    theirs = getattr(torch.nn.init, name)(torch.empty(shape, dtype=dtype), generator=gen(3))
    torch.testing.assert_close(ours, theirs, rtol=1e-6 if dtype == torch.float32 else 1e-15, atol=0)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity, a", [("leaky_relu", 0.3), ("relu", 0.0), ("tanh", 0.0)])
@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_options_draw_as_torch(name, mode, nonlinearity, a):
    ours = SHARED[name](torch.empty(12, 5, 3), a, mode, nonlinearity, generator=gen(4))
    theirs = getattr(torch.nn.init, name)(torch.empty(12, 5, 3), a, mode, nonlinearity, gen(4))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_mode_is_case_insensitive_as_torchs(name):
    ours = SHARED[name](torch.empty(6, 4), mode="FAN_OUT", generator=gen(2))
    theirs = getattr(torch.nn.init, name)(torch.empty(6, 4), mode="FAN_OUT", generator=gen(2))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (20, 2, 3, 4), (2, 3, 4, 5)])
def test_orthogonal_float64_equals_torch(shape):
    # isokit runs the QR in float64 for every dtype; in float64 the draw is torch's.
    ours = orthogonal_(torch.empty(shape, dtype=torch.float64), 0.7, gen(5))
    theirs = torch.nn.init.orthogonal_(torch.empty(shape, dtype=torch.float64), 0.7, gen(5))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-13)


# ------------------------------------------------------------------- laws (KS, as torch tests)


@pytest.mark.parametrize("use_gain", [True, False])
@pytest.mark.parametrize("dims", [2, 4])
def test_xavier_laws(use_gain, dims):
    rng = random.Random(123 + dims + 10 * use_gain)
    for i, (fill, uniform) in enumerate([(xavier_uniform_, True), (xavier_normal_, False)]):
        t = torch.zeros(random_shape(rng, dims, 20, 25))
        gain = rng.uniform(0.1, 2.0) if use_gain else 1.0
        fill(t, gain, gen(i))
        fan_in, fan_out = torch_fans(t)
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        bound = math.sqrt(3.0) * std
        assert is_uniform(t, -bound, bound) if uniform else is_normal(t, std)


@pytest.mark.parametrize("use_a", [True, False])
@pytest.mark.parametrize("dims", [2, 4])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_laws(use_a, dims, mode):
    rng = random.Random(7 + dims + 10 * use_a + 100 * (mode == "fan_out"))
    for i, (fill, uniform) in enumerate([(kaiming_uniform_, True), (kaiming_normal_, False)]):
        t = torch.zeros(random_shape(rng, dims, 20, 25))
        a = rng.uniform(0.1, 2.0) if use_a else 0.0
        fill(t, a=a, mode=mode, generator=gen(i))  # default nonlinearity: leaky_relu
        fan_in, fan_out = torch_fans(t)
        std = math.sqrt(2.0 / ((1 + a**2) * (fan_in if mode == "fan_in" else fan_out)))
        bound = math.sqrt(3.0) * std
        assert is_uniform(t, -bound, bound) if uniform else is_normal(t, std)


def test_ks_test_is_not_vacuous():
    # A law twice too wide fails the same test.
    t = xavier_normal_(torch.zeros(25, 25), generator=gen())
    assert not is_normal(t, 2 * math.sqrt(2.0 / 50))


@pytest.mark.parametrize("use_gain", [True, False])
@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (20, 2, 3, 4), (2, 3, 4, 5)])
def test_orthogonal_rows_or_columns_are_orthonormal(use_gain, shape):
    gain = random.Random(sum(shape)).uniform(0.1, 2.0) if use_gain else 1.0
    t = orthogonal_(torch.zeros(shape), gain, gen())
    rows, cols = shape[0], math.prod(shape[1:])
    flat = t.view(rows, cols)
    gram = flat.T @ flat if rows > cols else flat @ flat.T
    torch.testing.assert_close(gram, gain**2 * torch.eye(min(rows, cols)), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------- eye and dirac


@pytest.mark.parametrize("seed", range(4))
def test_eye_every_element(seed):
    t = eye_(torch.randn(random_shape(random.Random(seed), 2, 1, 5)))
    for i in range(t.size(0)):
        for j in range(t.size(1)):
            assert t[i, j] == (1.0 if i == j else 0.0)


@pytest.mark.parametrize("dims", [3, 4, 5])
@pytest.mark.parametrize("groups", [1, 2, 3])
def test_dirac_nonzeros_and_sum(dims, groups):
    rng = random.Random(10 * dims + groups)
    a, c, d, e = (rng.randint(1, 5) for _ in range(4))
    b = rng.randint(1, 5 * groups)
    t = dirac_(torch.randn((a * groups, b, c, d, e)[:dims]), groups)
    min_d = min(t.size(0) // groups, t.size(1))
    assert torch.count_nonzero(t) == min_d * groups
    assert t.sum() == min_d * groups


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("conv_dims", [1, 2, 3])
def test_dirac_conv_keeps_each_groups_input_channels(groups, conv_dims):
    batch, in_c, out_c, size, k = 8, 3, 9, 5, 3
    eff_out = out_c // groups
    x = torch.randn(batch, in_c, *([size] * conv_dims), generator=gen())
    w = torch.cat([torch.zeros(eff_out, in_c, *([k] * conv_dims))] * groups)
    dirac_(w, groups)
    y = getattr(F, f"conv{conv_dims}d")(x, w)
    inner = (slice(None), slice(None)) + (slice(1, -1),) * conv_dims
    for g in range(groups):
        assert torch.equal(y[:, eff_out * g : eff_out * g + in_c], x[inner])
        assert torch.count_nonzero(y[:, eff_out * g + in_c : eff_out * (g + 1)]) == 0


# ------------------------------------------------------------------------------ argument errors


@pytest.mark.parametrize("dims", [1, 3])
def test_eye_only_2d(dims):
    with pytest.raises(ValueError):
        eye_(torch.zeros([2] * dims))


@pytest.mark.parametrize("dims", [1, 2, 6])
def test_dirac_only_3_to_5d(dims):
    with pytest.raises(ValueError):
        dirac_(torch.zeros([2] * dims))


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("dims", [0, 1])
def test_random_fills_refuse_fewer_than_2_dims(name, dims):
    with pytest.raises(ValueError):
        SHARED[name](torch.zeros([1] * dims))
    with pytest.raises(ValueError):
        getattr(torch.nn.init, name)(torch.zeros([1] * dims))  # as torch


def test_dirac_groups_must_divide_out_channels():
    with pytest.raises(ValueError):
        dirac_(torch.zeros(5, 2, 3), 2)


# -------------------------------------------------------------------------- zero-element tensors


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
@pytest.mark.parametrize("shape", [(0, 1), (4, 0, 3), (0,)])
def test_kaiming_on_zero_element_tensor_warns_and_returns_it(name, shape):
    t = torch.empty(shape)
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        out = SHARED[name](t)
    assert out is t
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        getattr(torch.nn.init, name)(torch.empty(shape))  # torch does the same


@pytest.mark.parametrize(
    "name, shape",
    [
        ("xavier_uniform_", (0, 4)),
        ("xavier_normal_", (4, 0, 3)),
        ("orthogonal_", (0, 3)),
        ("eye_", (0, 3)),
        ("dirac_", (0, 2, 3)),
    ],
)
def test_other_shared_functions_return_zero_element_tensors_silently(name, shape):
    t = torch.empty(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SHARED[name](t) is t
        getattr(torch.nn.init, name)(torch.empty(shape))  # torch neither raises nor warns
