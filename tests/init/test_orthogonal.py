"""Orthogonal, delta-orthogonal, eye_ and dirac_ checked by isometry and against torch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from isokit.init.orthogonal import delta_orthogonal_, dirac_, eye_, orthogonal_

f64 = torch.float64
CONV = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ orthogonal


@pytest.mark.parametrize("shape", [(40, 12), (12, 40), (25, 25), (16, 4, 3, 3), (4, 16, 3)])
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)])
def test_orthogonal_is_semi_orthogonal(shape, gain):
    w = orthogonal_(torch.empty(shape, dtype=f64), gain, generator=gen())
    m = w.reshape(shape[0], -1)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    eye = torch.eye(min(m.shape), dtype=f64)
    torch.testing.assert_close(gram, gain**2 * eye, atol=1e-12, rtol=0)


def test_orthogonal_float32_is_cast_from_float64():
    w = orthogonal_(torch.empty(64, 48), generator=gen())
    assert w.dtype == torch.float32
    torch.testing.assert_close(w.T @ w, torch.eye(48), atol=1e-5, rtol=0)


def test_orthogonal_float64_matches_torch_for_same_seed():
    for shape in [(30, 10), (10, 30), (8, 2, 3, 3)]:
        ours = orthogonal_(torch.empty(shape, dtype=f64), 1.5, generator=gen(7))
        theirs = torch.nn.init.orthogonal_(torch.empty(shape, dtype=f64), 1.5, generator=gen(7))
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


def test_orthogonal_is_haar_not_qr_biased():
    # Haar Q on O(3): each entry is a coordinate of a uniform point on S², so mean 0 and
    # E[q²] = 1/3, and det = ±1 equally often. Plain Householder QR makes diag(Q) one-signed.
    g = gen(1)
    qs = torch.stack([orthogonal_(torch.empty(3, 3, dtype=f64), generator=g) for _ in range(3000)])
    n = qs.shape[0]
    assert qs.mean(0).abs().max() < 4 * math.sqrt(1 / 3 / n)
    assert (qs.pow(2).mean(0) - 1 / 3).abs().max() < 0.03
    pos_det = (torch.linalg.det(qs) > 0).double().mean().item()
    assert abs(pos_det - 0.5) < 4 * math.sqrt(0.25 / n)


# ------------------------------------------------------------------------------ delta-orthogonal


def _norm_ratio(w: torch.Tensor, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
    pad = tuple(k // 2 for k in w.shape[2:])
    y = CONV[w.dim()](x, w, padding=pad, groups=groups)
    return y.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)


@pytest.mark.parametrize(
    "shape, spatial",
    [
        ((16, 8, 3), (20,)),
        ((8, 8, 5), (11,)),
        ((12, 4, 3, 3), (9, 9)),
        ((6, 6, 3, 5), (7, 8)),
        ((10, 3, 3, 3, 3), (5, 6, 4)),
        ((4, 4, 1, 1), (6, 6)),
    ],
)
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_delta_orthogonal_conv_preserves_norm(shape, spatial, gain):
    w = delta_orthogonal_(torch.empty(shape, dtype=f64), gain, generator=gen())
    x = torch.randn(3, shape[1], *spatial, dtype=f64, generator=gen(1))
    torch.testing.assert_close(
        _norm_ratio(w, x), torch.full((3,), gain, dtype=f64), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("shape, groups", [((16, 2, 3, 3), 4), ((12, 3, 5), 4), ((8, 1, 3, 3), 8)])
def test_delta_orthogonal_grouped_preserves_norm(shape, groups):
    w = delta_orthogonal_(torch.empty(shape, dtype=f64), groups=groups, generator=gen())
    x = torch.randn(2, shape[1] * groups, *(7,) * (len(shape) - 2), dtype=f64, generator=gen(2))
    torch.testing.assert_close(
        _norm_ratio(w, x, groups), torch.ones(2, dtype=f64), atol=1e-12, rtol=0
    )


def test_delta_orthogonal_structure_and_independent_groups():
    w = delta_orthogonal_(torch.empty(8, 3, 3, 3, dtype=f64), 1.0, groups=2, generator=gen())
    off_centre = w.clone()
    off_centre[:, :, 1, 1] = 0
    assert torch.count_nonzero(off_centre) == 0
    q0, q1 = w[:4, :, 1, 1], w[4:, :, 1, 1]
    for q in (q0, q1):
        torch.testing.assert_close(q.T @ q, torch.eye(3, dtype=f64), atol=1e-12, rtol=0)
    assert not torch.allclose(q0, q1)


def test_delta_orthogonal_contracting():
    with pytest.raises(ValueError, match="allow_contracting=True"):
        delta_orthogonal_(torch.empty(4, 8, 3, 3))
    w = delta_orthogonal_(
        torch.empty(4, 8, 3, 3, dtype=f64), allow_contracting=True, generator=gen()
    )
    q = w[:, :, 1, 1]
    torch.testing.assert_close(q @ q.T, torch.eye(4, dtype=f64), atol=1e-12, rtol=0)


def test_delta_orthogonal_seeds():
    a = delta_orthogonal_(torch.empty(8, 4, 3, 3), generator=gen(3))
    b = delta_orthogonal_(torch.empty(8, 4, 3, 3), generator=gen(3))
    c = delta_orthogonal_(torch.empty(8, 4, 3, 3), generator=gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_orthogonal_seeds():
    a = orthogonal_(torch.empty(8, 4), generator=gen(3))
    b = orthogonal_(torch.empty(8, 4), generator=gen(3))
    c = orthogonal_(torch.empty(8, 4), generator=gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((8, 8, 2, 2), {}, "even side"),
        ((8, 8, 3, 4), {}, "even side"),
        ((8, 8), {}, "use orthogonal_"),
        ((8,), {}, "3-D to 5-D"),
        ((8, 8, 3, 3, 3, 3), {}, "3-D to 5-D"),
        ((0, 8, 3, 3), {}, "empty"),
        ((9, 2, 3, 3), {"groups": 2}, "not divisible by groups=2"),
        ((8, 2, 3, 3), {"groups": 0}, "positive int"),
    ],
)
def test_delta_orthogonal_bad_input(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        delta_orthogonal_(torch.empty(shape), **kwargs)


@pytest.mark.parametrize("fill", [orthogonal_, delta_orthogonal_, eye_, dirac_])
def test_integer_dtype_raises(fill):
    shape = (4, 4) if fill in (orthogonal_, eye_) else (4, 4, 3, 3)
    with pytest.raises(TypeError, match="floating-point"):
        fill(torch.zeros(shape, dtype=torch.int32))


@pytest.mark.parametrize("shape", [(5,), ()])
def test_orthogonal_bad_shape(shape):
    with pytest.raises(ValueError, match="weight|empty"):
        orthogonal_(torch.empty(shape))


# ------------------------------------------------------------------------------------ eye, dirac


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_eye_equals_scaled_torch_eye(shape, scale):
    w = eye_(torch.empty(shape), scale=scale)
    torch.testing.assert_close(w, scale * torch.eye(*shape), atol=0, rtol=0)


@pytest.mark.parametrize(
    "shape, groups",
    [((6, 4, 3), 1), ((4, 6, 3, 3), 1), ((8, 2, 3, 3), 2), ((6, 3, 3, 5, 1), 3), ((4, 4, 2, 2), 1)],
)
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_dirac_equals_scaled_torch_dirac(shape, groups, scale):
    w = dirac_(torch.empty(shape), groups, scale=scale)
    expected = scale * torch.nn.init.dirac_(torch.empty(shape), groups)
    torch.testing.assert_close(w, expected, atol=0, rtol=0)


def test_dirac_conv_is_scaled_identity():
    w = dirac_(torch.empty(6, 2, 3, 3, dtype=f64), 3, scale=0.5)
    x = torch.randn(2, 6, 5, 5, dtype=f64, generator=gen())
    torch.testing.assert_close(F.conv2d(x, w, padding=1, groups=3), 0.5 * x, atol=0, rtol=0)


def test_eye_dirac_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        eye_(torch.empty(3, 3, 3))
    with pytest.raises(ValueError, match="3-D to 5-D"):
        dirac_(torch.empty(3, 3))
    with pytest.raises(ValueError, match="not divisible by groups=4"):
        dirac_(torch.empty(6, 2, 3, 3), groups=4)
    with pytest.raises(TypeError):  # scale is keyword-only, the second argument of dirac_ groups
        eye_(torch.empty(3, 3), 2.0)
