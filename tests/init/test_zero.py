"""ZerO (Algorithms 1 and 2) checked against scipy's Hadamard matrices and the paper's rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from isokit.init.zero import hadamard, zero_, zero_matrix

f64 = torch.float64


def scipy_block(m: int, n: int) -> torch.Tensor:
    p = 2 ** math.ceil(math.log2(m))
    return torch.from_numpy(scipy.linalg.hadamard(p)[:m, :n].astype(np.float64)) / math.sqrt(p)


# -------------------------------------------------------------------------------------- hadamard


@pytest.mark.parametrize("n", [1, 2, 4, 8, 32, 128])
def test_hadamard_properties_and_scipy(n):
    h = hadamard(n)
    assert h.dtype == f64 and h.shape == (n, n)
    assert torch.all(h.abs() == 1)
    torch.testing.assert_close(h @ h.T, n * torch.eye(n, dtype=f64), atol=0, rtol=0)
    assert torch.equal(h, torch.from_numpy(scipy.linalg.hadamard(n).astype(np.float64)))


def test_hadamard_dtype():
    assert hadamard(4, dtype=torch.int64).dtype == torch.int64
    assert hadamard(4, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(TypeError, match="signed"):
        hadamard(4, dtype=torch.uint8)


@pytest.mark.parametrize("n", [3, 6, 12, 100])
def test_hadamard_non_power_of_two_raises(n):
    with pytest.raises(ValueError, match="not a power of two"):
        hadamard(n)


@pytest.mark.parametrize(
    "n, error", [(0, ValueError), (-4, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_hadamard_bad_size_raises(n, error):
    # A wrong type is a TypeError, a wrong value a ValueError; both name the argument.
    with pytest.raises(error, match="n must be a positive int"):
        hadamard(n)


# ----------------------------------------------------------------------------------- Algorithm 1


@pytest.mark.parametrize("m, n", [(1, 1), (3, 7), (5, 5), (1, 4)])
def test_zero_matrix_not_expanding_is_eye(m, n):
    assert torch.equal(zero_matrix(m, n), torch.eye(m, n, dtype=f64))


@pytest.mark.parametrize("m, n", [(2, 1), (8, 3), (16, 9), (64, 63)])
def test_zero_matrix_power_of_two_rows_has_orthonormal_columns(m, n):
    w = zero_matrix(m, n)
    torch.testing.assert_close(w.T @ w, torch.eye(n, dtype=f64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("m, n", [(3, 2), (6, 3), (12, 5), (100, 7), (9, 8)])
def test_zero_matrix_expanding_matches_scaled_hadamard_block(m, n):
    torch.testing.assert_close(zero_matrix(m, n), scipy_block(m, n), atol=1e-15, rtol=0)


def test_zero_matrix_dtype_and_bad_sizes():
    assert zero_matrix(6, 3, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="m must be a positive int"):
        zero_matrix(0, 3)
    with pytest.raises(TypeError, match="floating-point"):
        zero_matrix(3, 3, dtype=torch.int64)


# ------------------------------------------------------------------------------------ zero_


@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (8, 8)])
def test_zero_linear_is_algorithm_1(shape):
    w = zero_(torch.empty(shape))
    assert w.dtype == torch.float32
    torch.testing.assert_close(
        w, scipy_block(*shape).float() if shape[0] > shape[1] else torch.eye(*shape)
    )


@pytest.mark.parametrize("shape", [(12, 5, 3), (12, 5, 3, 3), (4, 8, 3, 5), (6, 2, 3, 3, 3)])
def test_zero_conv_centre_tap_and_zeros_elsewhere(shape):
    w = zero_(torch.empty(shape, dtype=f64))
    centre = tuple(k // 2 for k in shape[2:])
    m, n = shape[:2]
    expected = scipy_block(m, n) if m > n else torch.eye(m, n, dtype=f64)
    torch.testing.assert_close(w[(slice(None), slice(None), *centre)], expected, atol=1e-15, rtol=0)
    rest = w.clone()
    rest[(slice(None), slice(None), *centre)] = 0
    assert torch.count_nonzero(rest) == 0


def test_zero_grouped_conv_per_group_block():
    w = zero_(torch.empty(12, 2, 3, 3, dtype=f64), groups=2)
    for g in range(2):
        torch.testing.assert_close(w[6 * g : 6 * (g + 1), :, 1, 1], scipy_block(6, 2))
    assert torch.count_nonzero(w[:, :, 0]) == 0


def test_zero_contracting_conv_equals_torch_dirac():
    for shape, groups in [((4, 6, 3, 3), 1), ((6, 4, 2, 2), 2), ((5, 5, 3), 1)]:
        ours = zero_(torch.empty(shape), groups=groups)
        assert torch.equal(ours, torch.nn.init.dirac_(torch.empty(shape), groups))


def test_zero_conv_with_power_of_two_out_preserves_norm():
    w = zero_(torch.empty(16, 5, 3, 3, dtype=f64))
    x = torch.randn(3, 5, 8, 8, dtype=f64, generator=torch.Generator().manual_seed(0))
    y = F.conv2d(x, w, padding=1)
    torch.testing.assert_close(
        y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-12, rtol=0
    )


def test_zero_is_deterministic():
    torch.manual_seed(0)
    a = zero_(torch.randn(24, 10, 3, 3))
    torch.manual_seed(1)
    b = zero_(torch.randn(24, 10, 3, 3))
    assert torch.equal(a, b)


def test_zero_writes_into_parameter():
    p = torch.nn.Parameter(torch.randn(6, 3))
    assert zero_(p) is p and p.grad_fn is None


@pytest.mark.parametrize(
    "shape, kwargs, error, match",
    [
        ((5,), {}, ValueError, "weight"),
        ((0, 4), {}, ValueError, "empty"),
        ((4, 4, 3, 3, 3, 3), {}, ValueError, "2-D to 5-D"),
        ((6, 4, 3, 3), {"groups": 4}, ValueError, "not divisible by groups=4"),
        ((6, 4), {"groups": 2}, ValueError, "conv weight"),
    ],
)
def test_zero_bad_input(shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        zero_(torch.empty(shape), **kwargs)


def test_zero_integer_dtype_raises():
    with pytest.raises(TypeError, match="floating-point"):
        zero_(torch.zeros(4, 4, dtype=torch.int64))
