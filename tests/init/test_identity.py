"""Properties of IDI_τ / IDIC_τ and IDIZ_ε (``docs/idinit.md`` §3–§6).

Expected values are computed from the reference's formulas or by running the weight through
``torch.nn.functional.conv*``, never from the initializer's own output.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from isokit.init.identity import (
    idi_,
    idiz_,
    loosening_representable,
    unused_input_channels,
)

f64 = torch.float64


def empty(*shape: int, dtype: torch.dtype = f64) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype)


def svals(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(w.double()).sort().values


# ---------------------------------------------------------------------------------------------
# IDI on 2-D weights (§3)


@pytest.mark.parametrize("d", [1, 4, 17])
@pytest.mark.parametrize("tau", [1.0, 0.5, -2.0])
def test_square_is_tau_identity(d: int, tau: float) -> None:
    assert torch.equal(idi_(empty(d, d), tau), tau * torch.eye(d, dtype=f64))


@pytest.mark.parametrize(("d_out", "d_in"), [(6, 4), (10, 3), (9, 4), (8, 4), (5, 1)])
def test_expanding_repeats_identity(d_out: int, d_in: int) -> None:
    tau = 0.75
    w = idi_(empty(d_out, d_in), tau)
    x = torch.randn(d_in, dtype=f64)
    y = w @ x
    for m in range(d_out):
        assert y[m] == tau * x[m % d_in]
    q, r = divmod(d_out, d_in)
    counts = torch.tensor([q + 1 if j < r else q for j in range(d_in)], dtype=f64)
    assert torch.equal(w.T @ w, tau**2 * torch.diag(counts))
    expected = tau * torch.tensor([math.sqrt(q + 1)] * r + [math.sqrt(q)] * (d_in - r), dtype=f64)
    torch.testing.assert_close(svals(w), expected.sort().values, rtol=0, atol=1e-12)


def test_expanding_worked_example_differs_from_eye() -> None:
    w = idi_(empty(6, 4))
    assert torch.equal(
        w @ torch.arange(4.0, dtype=f64), torch.tensor([0.0, 1, 2, 3, 0, 1], dtype=f64)
    )
    torch.testing.assert_close(svals(w), torch.tensor([1.0, 1, 2**0.5, 2**0.5], dtype=f64))


@pytest.mark.parametrize(("d_out", "d_in"), [(3, 5), (1, 7), (4, 9)])
def test_contracting_truncate_is_eye(d_out: int, d_in: int) -> None:
    w = idi_(empty(d_out, d_in), 2.0)
    assert torch.equal(w, 2.0 * torch.nn.init.eye_(torch.empty(d_out, d_in, dtype=f64)))
    assert torch.equal(w @ w.T, 4.0 * torch.eye(d_out, dtype=f64))


@pytest.mark.parametrize(("d_out", "d_in"), [(3, 5), (2, 7), (4, 9), (3, 3), (6, 4)])
def test_tile_rule(d_out: int, d_in: int) -> None:
    w = idi_(empty(d_out, d_in), contract="tile")
    if d_out >= d_in:  # tile only changes contracting shapes
        assert torch.equal(w, idi_(empty(d_out, d_in)))
        return
    expected = torch.tensor(
        [[float(j % d_out == m) for j in range(d_in)] for m in range(d_out)], dtype=f64
    )
    assert torch.equal(w, expected)
    q, r = divmod(d_in, d_out)
    sv = [math.sqrt(q + 1)] * r + [math.sqrt(q)] * (d_out - r)
    torch.testing.assert_close(svals(w), torch.tensor(sorted(sv), dtype=f64))


def test_tile_worked_example() -> None:
    expected = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [0, 0, 1, 0, 0]], dtype=f64)
    assert torch.equal(idi_(empty(3, 5), contract="tile"), expected)


@settings(max_examples=60, deadline=None)
@given(
    d_out=st.integers(1, 40),
    d_in=st.integers(1, 40),
    contract=st.sampled_from(["truncate", "tile"]),
    tau=st.floats(0.1, 3.0),
)
def test_rank_is_min_dim(d_out: int, d_in: int, contract: str, tau: float) -> None:
    w = idi_(empty(d_out, d_in), tau, contract=contract)
    assert int(torch.linalg.matrix_rank(w)) == min(d_out, d_in)
    assert set(w.unique().tolist()) <= {0.0, tau}


@settings(max_examples=40, deadline=None)
@given(
    c_out=st.integers(1, 24),
    ipg=st.integers(1, 5),
    k=st.integers(1, 3),
    order=st.sampled_from(["torch", "tap"]),
)
def test_conv_flattened_rank_is_min_dim(c_out: int, ipg: int, k: int, order: str) -> None:
    w = idi_(empty(c_out, ipg, k, k), flatten_order=order)
    assert int(torch.linalg.matrix_rank(w.reshape(c_out, -1))) == min(c_out, ipg * k * k)


def test_writes_in_place_and_casts() -> None:
    layer = torch.nn.Linear(4, 6)
    ptr = layer.weight.data_ptr()
    out = idi_(layer.weight, 0.5)
    assert out is layer.weight and layer.weight.data_ptr() == ptr
    assert layer.weight.requires_grad and layer.weight.grad_fn is None
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        w = idi_(empty(6, 4, dtype=dtype), 0.5)
        assert w.dtype == dtype
        assert torch.equal(w.double(), idi_(empty(6, 4), 0.5))


# ---------------------------------------------------------------------------------------------
# convolutions (§6)


def source_of(m: int, opg: int, ipg: int, taps: int, order: str) -> tuple[int, int]:
    """(input channel, tap) that output ``m`` copies, per §6.1 — independent of the code."""
    g, ml = divmod(m, opg)
    j = ml % (ipg * taps)
    c, t = divmod(j, taps) if order == "torch" else divmod(j, ipg)[::-1]
    return g * ipg + c, t


def one_hot_response(w: torch.Tensor, groups: int, size: int = 9) -> tuple[torch.Tensor, int]:
    """Image i has a single 1 at the centre of input channel i; returns the conv outputs."""
    k = w.shape[-1]
    c_in = w.shape[1] * groups
    x = torch.zeros(c_in, c_in, size, size, dtype=f64)
    x[torch.arange(c_in), torch.arange(c_in), size // 2, size // 2] = 1.0
    return F.conv2d(x, w, padding=k // 2, groups=groups), size // 2


def assert_patch_shifts(
    w: torch.Tensor, tau: float, groups: int = 1, order: str = "torch", centre: bool = False
) -> None:
    c_out, ipg, k, _ = w.shape
    opg, p = c_out // groups, k // 2
    out, y0 = one_hot_response(w, groups)
    expected = torch.zeros_like(out)
    for m in range(c_out):
        c, t = source_of(m, opg, ipg, k * k, order)
        if centre:
            c, t = (m // opg) * ipg + (m % opg) % ipg, (k * k) // 2
        r, s = divmod(t, k)
        # out[m, y, x] = τ·in[c, y + r - p, x + s - p], so the 1 at y0 lands at y0 - r + p
        expected[c, m, y0 - r + p, y0 - s + p] = tau
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "groups"),
    [
        (64, 64, 3, 1),
        (3, 16, 3, 1),
        (3, 64, 3, 1),
        (16, 24, 1, 1),
        (4, 24, 3, 2),
        (4, 40, 3, 2),
        (6, 9, 5, 3),
        (1, 16, 3, 1),
    ],
)
def test_patch_maintain_copies_shifted_channel(c_in: int, c_out: int, k: int, groups: int) -> None:
    tau = 0.5
    w = idi_(empty(c_out, c_in // groups, k, k), tau, groups=groups)
    assert_patch_shifts(w, tau, groups)


def test_patch_worked_examples() -> None:
    # 64 -> 64: channel 63 is input 7 at offset (-1, -1); inputs 8..63 unused.
    w = idi_(empty(64, 64, 3, 3))
    assert w[63, 7, 0, 0] == 1 and w[63].sum() == 1
    assert w[:, 8:].abs().sum() == 0 and unused_input_channels(w) == 56
    # 3 -> 64: channels 27..53 and 54..63 repeat the first ones.
    w = idi_(empty(64, 3, 3, 3))
    assert torch.equal(w[27:54], w[:27]) and torch.equal(w[54:], w[:10])
    assert unused_input_channels(idi_(empty(16, 3, 3, 3))) == 1


def test_depthwise_centre_and_patch() -> None:
    c = 8
    w = idi_(empty(c, 1, 3, 3), 2.0, groups=c)
    assert_patch_shifts(w, 2.0, groups=c, centre=True)
    x = torch.randn(2, c, 7, 7, dtype=f64)
    assert torch.equal(F.conv2d(x, w, padding=1, groups=c), 2.0 * x)
    # depthwise multiplier 2, literal patch rule: taps 0 and 1 of each channel
    w = idi_(empty(2 * c, 1, 3, 3), 2.0, groups=c, depthwise="patch")
    assert_patch_shifts(w, 2.0, groups=c)
    w = idi_(empty(2 * c, 1, 3, 3), groups=c)
    assert_patch_shifts(w, 1.0, groups=c, centre=True)


def test_tap_order_square_is_top_left_shift() -> None:
    w = idi_(empty(16, 16, 3, 3), flatten_order="tap")
    x = torch.randn(2, 16, 8, 8, dtype=f64)
    y = F.conv2d(x, w, padding=1)
    assert torch.equal(y[:, :, 1:, 1:], x[:, :, :-1, :-1])
    assert y[:, :, 0, :].abs().sum() == 0 and y[:, :, :, 0].abs().sum() == 0
    assert unused_input_channels(w) == 0


@pytest.mark.parametrize(("c_in", "c_out", "groups"), [(3, 16, 1), (3, 64, 1), (4, 40, 2)])
def test_tap_order_shifts(c_in: int, c_out: int, groups: int) -> None:
    w = idi_(empty(c_out, c_in // groups, 3, 3), flatten_order="tap", groups=groups)
    assert_patch_shifts(w, 1.0, groups, order="tap")


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_channel_maintain_square_is_identity(k: int, nd: int) -> None:
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    c, tau = 6, 0.25
    w = idi_(empty(c, c, *([k] * nd)), tau, conv_mode="channel")
    x = torch.randn(2, c, *([7] * nd), dtype=f64)
    assert torch.equal(conv(x, w, padding=k // 2), tau * x)


def test_channel_maintain_expanding_and_contracting() -> None:
    x = torch.randn(2, 4, 6, 6, dtype=f64)
    y = F.conv2d(x, idi_(empty(10, 4, 3, 3), conv_mode="channel"), padding=1)
    assert torch.equal(y, x[:, [m % 4 for m in range(10)]])
    y = F.conv2d(x, idi_(empty(3, 4, 3, 3), conv_mode="channel"), padding=1)
    assert torch.equal(y, x[:, :3])
    y = F.conv2d(x, idi_(empty(3, 4, 3, 3), conv_mode="channel", contract="tile"), padding=1)
    assert torch.equal(y, x[:, :3] + torch.cat([x[:, 3:], torch.zeros_like(x[:, :2])], 1))


def test_patch_conv3d_and_conv1d_shift() -> None:
    # 1 -> 27 over a 3x3x3 kernel: output m is the input shifted by tap m (all 27 offsets)
    w = idi_(empty(27, 1, 3, 3, 3))
    x = torch.randn(1, 1, 6, 6, 6, dtype=f64)
    y = F.conv3d(x, w, padding=1)
    xp = F.pad(x, (1, 1) * 3)
    for m in range(27):
        a, rest = divmod(m, 9)
        b, c = divmod(rest, 3)
        assert torch.equal(y[0, m], xp[0, 0, a : a + 6, b : b + 6, c : c + 6])
    w = idi_(empty(5, 2, 3))
    x = torch.randn(1, 2, 8, dtype=f64)
    y, xp = F.conv1d(x, w, padding=1), F.pad(x, (1, 1))
    for m in range(5):
        c, t = divmod(m, 3)
        assert torch.equal(y[0, m], xp[0, c, t : t + 8])


def test_patch_spectrum_16_channels() -> None:
    c, h = 16, 6
    w = idi_(empty(c, c, 3, 3))
    basis = torch.eye(c * h * h, dtype=f64).reshape(-1, c, h, h)
    op = F.conv2d(basis, w, padding=1).reshape(c * h * h, -1).T
    sv = torch.linalg.svdvals(op)
    assert int(torch.linalg.matrix_rank(op)) == 72
    assert abs(sv.max().item() - 3.0) < 1e-12


# ---------------------------------------------------------------------------------------------
# IDIZ (§5, §6.4)

EXAMPLES = {
    (3, 5): [[1, 0, 0, -1, 0], [0, 1, 0, 0, -1], [0, 0, 1, -1, 0]],
    (3, 3): [[1, -1, 0], [0, 1, -1], [-1, 0, 1]],
    (4, 2): [[1, -1], [-1, 1], [1, -1], [-1, 1]],
    (2, 7): [[1, 0, -1, 0, 0, 0, 0], [0, 1, 0, -1, 0, 0, 0]],
}


@pytest.mark.parametrize("shape", list(EXAMPLES))
def test_idiz_reference_examples(shape: tuple[int, int]) -> None:
    eps = 1e-3
    assert torch.equal(idiz_(empty(*shape), eps), eps * torch.tensor(EXAMPLES[shape], dtype=f64))


@settings(max_examples=60, deadline=None)
@given(d_out=st.integers(1, 30), d_in=st.integers(2, 30))
def test_idiz_norms(d_out: int, d_in: int) -> None:
    eps = 1e-6
    w = idiz_(empty(d_out, d_in), eps)
    assert torch.equal(w.sum(dim=1), torch.zeros(d_out, dtype=f64))
    # 4.0 keeps every product exact, so a fused multiply-add cannot leave a rounding residue
    assert torch.equal(w @ torch.full((d_in,), 4.0, dtype=f64), torch.zeros(d_out, dtype=f64))
    assert math.isclose(torch.linalg.norm(w).item(), eps * math.sqrt(2 * d_out), rel_tol=1e-12)
    sigma = torch.linalg.matrix_norm(w, 2).item()
    if d_out < d_in:
        # WWᵀ = ε²(I + SSᵀ); SSᵀ has all-ones blocks, one per shared column D_out + k
        exact = eps * math.sqrt(1 + math.ceil(d_out / (d_in - d_out)))
        assert math.isclose(sigma, exact, rel_tol=1e-9)
    else:
        # WᵀW sums ⌈D_out/D_in⌉ row blocks of ε(I - P), each of norm <= 2ε
        assert sigma <= 2 * eps * math.sqrt(math.ceil(d_out / d_in)) * (1 + 1e-12)


@pytest.mark.parametrize(("d_out", "d_in"), [(7, 7), (16, 16), (3, 5), (6, 8), (4, 20)])
def test_idiz_output_at_most_two_eps(d_out: int, d_in: int) -> None:
    # ‖W‖₂ <= 2ε holds for square shapes and when ⌈D_out / (D_in - D_out)⌉ <= 3
    eps = 1e-6
    w = idiz_(empty(d_out, d_in), eps)
    x = torch.randn(d_in, 200, dtype=f64)
    assert (torch.linalg.norm(w @ x, dim=0) <= 2 * eps * torch.linalg.norm(x, dim=0)).all()


@pytest.mark.parametrize(("d_out", "d_in"), [(8, 9), (3, 2), (5, 4)])
def test_idiz_can_exceed_two_eps(d_out: int, d_in: int) -> None:
    # Counterexamples to the reference's blanket ‖W‖₂ <= 2ε (§5): (8, 9) is ε[I | -1], norm 3ε.
    assert torch.linalg.matrix_norm(idiz_(empty(d_out, d_in), 1.0), 2) > 2.2


@pytest.mark.parametrize("d", [2, 3, 8, 13])
def test_idiz_square_singular_values(d: int) -> None:
    eps = 1e-2
    sv = svals(idiz_(empty(d, d), eps))
    expected = torch.tensor([2 * eps * abs(math.sin(math.pi * k / d)) for k in range(d)], dtype=f64)
    torch.testing.assert_close(sv, expected.sort().values, rtol=0, atol=1e-14)


def test_idiz_single_input() -> None:
    assert torch.equal(idiz_(empty(4, 1), 2.0).flatten(), torch.tensor([2.0, -2, 2, -2], dtype=f64))
    w = idiz_(empty(3, 1), 2.0, single_input="plain")
    assert torch.equal(w.flatten(), torch.full((3,), 2.0, dtype=f64))


def test_idiz_modes() -> None:
    assert torch.equal(idiz_(empty(4, 6), mode="zero"), torch.zeros(4, 6, dtype=f64))
    assert torch.equal(idiz_(empty(6, 4), 1e-3, mode="idi_eps"), idi_(empty(6, 4), 1e-3))
    conv = idiz_(empty(8, 1, 3, 3), 1e-3, mode="idi_eps", groups=8)
    assert torch.equal(conv, idi_(empty(8, 1, 3, 3), 1e-3, groups=8, depthwise="patch"))


def test_idizc_64_channels() -> None:
    w = idiz_(empty(64, 64, 3, 3))
    assert w[0, 0, 0, 0] == 1e-6 and w[0, 7, 0, 1] == -1e-6 and (w[0] != 0).sum() == 2
    # a power-of-two ε and integer inputs make every product and difference exact
    eps = 2.0**-20
    w = idiz_(empty(64, 64, 3, 3), eps)
    x = torch.randint(-8, 9, (1, 64, 6, 6)).to(f64)
    y, xp = F.conv2d(x, w, padding=1), F.pad(x, (1, 1, 1, 1))
    for m in range(64):
        (c1, t1), (c2, t2) = divmod(m, 9), divmod(64 + m, 9)
        (r1, s1), (r2, s2) = divmod(t1, 3), divmod(t2, 3)
        expected = eps * (xp[0, c1, r1 : r1 + 6, s1 : s1 + 6] - xp[0, c2, r2 : r2 + 6, s2 : s2 + 6])
        assert torch.equal(y[0, m], expected)


def test_idizc_bottleneck_and_depthwise() -> None:
    w = idiz_(empty(64, 16, 1, 1), 1.0)[:, :, 0, 0]
    for m in range(64):
        assert w[m, m % 16] == 1 and w[m, (m + 1) % 16] == -1 and w[m].abs().sum() == 2
    # depthwise: each output is ε·(tap 0 - tap 1) of its own channel, for both depthwise rules
    w = idiz_(empty(5, 1, 3, 3), 1.0, groups=5)
    x = torch.randn(1, 5, 6, 6, dtype=f64)
    xp = F.pad(x, (1, 1, 1, 1))
    expected = xp[:, :, 0:6, 0:6] - xp[:, :, 0:6, 1:7]
    assert torch.equal(F.conv2d(x, w, padding=1, groups=5), expected)


def test_idizc_grouped_matches_2d_rule_per_group() -> None:
    w = idiz_(empty(12, 3, 3, 3), 1.0, groups=2)
    for g in range(2):
        flat = w[6 * g : 6 * (g + 1)].reshape(6, 27)
        expected = torch.zeros(6, 27, dtype=f64)
        for m in range(6):
            expected[m, m], expected[m, 6 + m % 21] = 1, -1
        assert torch.equal(flat, expected)


def test_idiz_tap_order() -> None:
    w = idiz_(empty(4, 4, 3, 3), 1.0, flatten_order="tap")
    # column j = t·4 + c: +1 at (c=m, t=0), -1 at j = 4 + m, i.e. (c=m, t=1)
    for m in range(4):
        assert w[m, m, 0, 0] == 1 and w[m, m, 0, 1] == -1 and w[m].abs().sum() == 2


# ---------------------------------------------------------------------------------------------
# loosening (§4)


def test_strict_is_deterministic_and_draws_nothing() -> None:
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    a = idi_(empty(30, 20), generator=g)
    b = idi_(empty(30, 20), generator=g)
    assert torch.equal(a, b) and torch.equal(g.get_state(), state)


def test_loose_tau_noise_statistics() -> None:
    tau, std = 1.0, 1e-6
    w = idi_(
        empty(20000, 50),
        tau,
        loose="tau",
        loose_std=std,
        generator=torch.Generator().manual_seed(0),
    )
    mask = idi_(empty(20000, 50)) != 0
    assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
    noise = w[mask] - tau
    assert abs(noise.std().item() / std - 1) < 0.05
    assert abs(noise.mean().item()) < 5 * std / math.sqrt(noise.numel())
    assert (noise != 0).all()


def test_loose_all_perturbs_zeros() -> None:
    std = 1e-6
    w = idi_(
        empty(300, 200), loose="all", loose_std=std, generator=torch.Generator().manual_seed(1)
    )
    mask = idi_(empty(300, 200)) != 0
    assert (w != 0).all()
    assert abs(w[~mask].std().item() / std - 1) < 0.05
    assert unused_input_channels(w) == 0


def test_loose_same_seed_same_tensor() -> None:
    def make(seed: int, loose: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return idi_(empty(16, 8, 3, 3, dtype=torch.float32), loose=loose, generator=g)

    assert torch.equal(make(5, "tau"), make(5, "tau"))
    assert not torch.equal(make(5, "tau"), make(6, "tau"))
    assert torch.equal(make(5, "all"), make(5, "all"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_loose_low_precision_matches_representable(dtype: torch.dtype) -> None:
    def make(dt: torch.dtype) -> torch.Tensor:
        return idi_(
            empty(4000, 10, dtype=dt), loose="tau", generator=torch.Generator().manual_seed(2)
        )

    w, ref = make(dtype), make(f64)
    assert torch.equal(w, ref.to(dtype))  # noise is drawn in float64 and cast once
    taus = w[idi_(empty(4000, 10)) != 0]
    moved = (taus != 1).double().mean().item()
    if loosening_representable(dtype):
        assert moved > 0.85  # only |z| below about half an ulp rounds back to τ
    else:
        assert moved == 0.0


def test_loosening_representable() -> None:
    assert loosening_representable(torch.float32) and loosening_representable(torch.float64)
    assert not loosening_representable(torch.float16)
    assert not loosening_representable(torch.bfloat16)
    assert not loosening_representable(torch.float32, tau=1000.0)
    assert loosening_representable(torch.float32, tau=1000.0, loose_std=1e-4)
    assert loosening_representable(torch.float16, tau=0.0)
    assert not loosening_representable(torch.float16, tau=1e6)  # overflows float16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tau", [1.0, 0.3, 3.0, 1000.0, 1e-3])
def test_loosening_representable_matches_nextafter(dtype: torch.dtype, tau: float) -> None:
    t = torch.tensor(tau, dtype=dtype)
    ulp = (torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)) - t).item()
    assert loosening_representable(dtype, tau, loose_std=ulp * 1.01)
    assert not loosening_representable(dtype, tau, loose_std=ulp * 0.99)


def test_unused_input_channels() -> None:
    assert unused_input_channels(idi_(empty(64, 64, 3, 3), conv_mode="channel")) == 0
    assert unused_input_channels(idi_(empty(3, 5))) == 2
    assert unused_input_channels(idiz_(empty(3, 5))) == 0
    assert unused_input_channels(idiz_(empty(2, 7))) == 3
    # 16 -> 16, groups 2: each group's 8 outputs are shifts of its channel 0 (8 < 9 taps)
    assert unused_input_channels(idi_(empty(16, 8, 3, 3), groups=2), groups=2) == 14


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("fn", [idi_, idiz_])
def test_rejects_bad_tensors(fn) -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fn(torch.zeros(5))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fn(torch.tensor(1.0))
    with pytest.raises(ValueError, match="empty tensor"):
        fn(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="empty tensor"):
        fn(torch.zeros(4, 3, 0, 3))
    with pytest.raises(TypeError, match=r"floating-point.*w\.float\(\)"):
        fn(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="floating-point"):
        fn(torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="groups=2 only applies to conv"):
        fn(torch.zeros(4, 4), groups=2)
    with pytest.raises(ValueError, match="C_out=6 is not divisible by groups=4"):
        fn(torch.zeros(6, 2, 3, 3), groups=4)
    with pytest.raises(ValueError, match="positive int"):
        fn(torch.zeros(6, 2, 3, 3), groups=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contract": "pad"}, "contract='pad'.*'truncate', 'tile'"),
        ({"conv_mode": "dirac"}, "conv_mode='dirac'"),
        ({"flatten_order": "C"}, "flatten_order='C'"),
        ({"depthwise": "center"}, "depthwise='center'.*'centre'"),
        ({"loose": True}, "loose=True.*None, 'tau', 'all'"),
        ({"tau": math.nan}, "tau must be finite"),
        ({"tau": math.inf}, "tau must be finite"),
        ({"loose_std": -1e-6}, "loose_std must be >= 0"),
        ({"loose_std": math.nan}, "loose_std must be finite"),
    ],
)
def test_idi_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        idi_(torch.zeros(4, 4), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "fixup"}, "mode='fixup'.*'idiz', 'zero', 'idi_eps'"),
        ({"single_input": "alt"}, "single_input='alt'"),
        ({"flatten_order": "tap-major"}, "flatten_order='tap-major'"),
        ({"eps": math.inf}, "eps must be finite"),
        ({"eps": -math.nan}, "eps must be finite"),
    ],
)
def test_idiz_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        idiz_(torch.zeros(4, 4), **kwargs)


def test_rejects_non_numbers() -> None:
    with pytest.raises(TypeError, match="tau must be a real number"):
        idi_(torch.zeros(4, 4), "1.0")
    with pytest.raises(TypeError, match="eps must be a real number"):
        idiz_(torch.zeros(4, 4), True)
    with pytest.raises(TypeError, match="floating-point torch.dtype"):
        loosening_representable(torch.int32)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        unused_input_channels(torch.zeros(3))


def test_docstring_examples() -> None:
    import doctest

    from isokit.init import identity, identity_conv

    for module in (identity, identity_conv):
        result = doctest.testmod(module, extraglobs={"torch": torch})
        assert result.failed == 0 and result.attempted > 0


def test_loose_tau_and_all_share_tau_noise() -> None:
    def make(loose: str) -> torch.Tensor:
        return idi_(empty(12, 5), loose=loose, generator=torch.Generator().manual_seed(9))

    mask = idi_(empty(12, 5)) != 0
    assert torch.equal(make("tau")[mask], make("all")[mask])
