"""``isokit.probe`` on ``isokit.models`` agrees with ``isokit.theory`` at width 500–1000.

Every test builds reference models, measures the exact float64 Jacobian spectrum with
:func:`isokit.probe.profile` and compares it with the theory of ``docs/theory.md``:

- scale-free quantities (``var = m2/m1² − 1``, ``m3/m1³``) are computed per draw (one weight draw,
  one input) and then averaged over ``S`` draws (§6 rule 2–3);
- ``m1`` is compared on a log scale with §6 rule 2,
  ``|mean_S(log m1) − log m1_pred| ≤ 3·sd(log m1)/√S + floor``; the floor is the finite-width
  bias ``L/N`` of §6 rule 3 (``O(L/N)``), which a small ``S`` can hide behind a small sample sd;
- every tolerance is a row of the §6 table, named in a comment at the assertion.

``L/N`` stays at 0.008–0.016 in the default run (the regime of §6 rule 1). The heavier cases
(``N = 1000``, more draws, deeper nets) are ``@pytest.mark.slow``.

Models are built in float64 before they are initialized, so that orthogonal matrices are
orthogonal to float64 round-off (a float32 model is only an isometry to ~1e-7).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

import isokit.init as ii
from isokit import theory as th
from isokit.models import MLP, ConvNet, ResidualMLP
from isokit.probe import profile

# Exact singular values through torch (``svdvals`` of J) rather than the Gram + SciPy ``eigh``
# path: both are the probe's exact tier (tests/probe checks each against dense Jacobians). On
# shared 2-core runners SciPy's OpenBLAS threads, which torch.set_num_threads does not reach,
# make the Gram path up to ten times slower; torch's thread count is pinned by the fixture below.
SVD = True


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Many small float64 products and SVDs: one thread avoids oversubscribing shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ helpers


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fill_linear(fc: torch.nn.Linear, *, sw2: float, sb2: float, weights: str, g) -> None:
    """§0: Gaussian ``W ~ N(0, σ_w²/N)`` or orthogonal ``W = σ_w·O`` (Haar), ``b ~ N(0, σ_b²)``."""
    with torch.no_grad():
        if weights == "gaussian":
            fc.weight.normal_(0.0, math.sqrt(sw2 / fc.in_features), generator=g)
        else:
            ii.orthogonal_(fc.weight, math.sqrt(sw2), generator=g)
        if fc.bias is not None:
            fc.bias.normal_(0.0, math.sqrt(sb2), generator=g)


def _mlp(act: str, N: int, L: int, *, sw2: float, sb2: float, weights: str, g) -> MLP:
    model = MLP(N, N, L, activation=act, bias=sb2 > 0).double()
    for fc in model.fcs:
        _fill_linear(fc, sw2=sw2, sb2=sb2, weights=weights, g=g)
    return model


def _at_fixed_point(q_star: float, shape: tuple[int, ...], g) -> torch.Tensor:
    """§0: ``x^0 = φ(√q*·ζ)`` with ``ζ ~ N(0, I)`` (tanh), so that ``q^1 = q*``."""
    return torch.tanh(math.sqrt(q_star) * torch.randn(shape, generator=g, dtype=torch.float64))


def _probe(model, x, taps="last"):
    """Exact float64 spectra; ``taps="last"`` probes the deepest tap only."""
    if taps == "last":
        taps = [model.taps[-1]]
    return profile(model, x, method="exact", taps=taps, svd=SVD)


def _last(p, name: str) -> np.ndarray:
    """Statistic ``name`` of the deepest probed tap, one value per example."""
    return np.asarray(p.taps[-1].stats[name], dtype=np.float64)


def _note(what: str, measured: float, predicted: float) -> None:
    # Visible with ``pytest -s``: the numbers behind each assertion.
    print(
        f"\n{what}: measured {measured:.6g}, predicted {predicted:.6g}, "
        f"ratio {measured / predicted:.4f}"
    )


def _assert_rel(what: str, measured: float, predicted: float, tol: float) -> None:
    _note(what, measured, predicted)
    rel = measured / predicted - 1
    assert abs(rel) <= tol, (
        f"{what}: measured {measured:.6g} vs predicted {predicted:.6g}: "
        f"{100 * rel:+.2f} % exceeds ±{100 * tol:g} %"
    )


def _assert_log_m1(what: str, log_m1: np.ndarray, log_pred: np.ndarray, floor: float) -> None:
    """§6 rule 2 on ``[S, ...]`` draws: ``|mean_S(log m1 − log m1_pred)| ≤ 3·sd/√S + floor``.

    ``log_pred`` broadcasts against ``log_m1`` (one prediction, or one per draw when the input
    sets ``q^1``). The floor is the ``O(L/N)`` finite-width bias of §6 rule 3.
    """
    d = np.asarray(log_m1) - np.asarray(log_pred)
    S = d.shape[0]
    bound = 3 * d.std(axis=0, ddof=1) / math.sqrt(S) + floor
    mean = d.mean(axis=0)
    print(f"\n{what}: mean log(m1/m1_pred) {np.round(mean, 4)}, bound {np.round(bound, 4)}")
    assert np.all(np.abs(mean) <= bound), (
        f"{what}: mean_S log(m1/m1_pred) = {mean} exceeds 3·sd/√S + floor = {bound}"
    )


def _draws(S: int, seed: int, one: Callable[[torch.Generator], tuple]) -> list[tuple]:
    """``one(generator)`` for ``S`` independent draws (seeds ``seed … seed+S−1``)."""
    return [one(_gen(seed + s)) for s in range(S)]


# ------------------------------------------------------------- 1. deep linear Gaussian nets


def _linear_gaussian(N: int, L: int, S: int, seed: int):
    def one(g):
        model = _mlp("linear", N, L, sw2=1.0, sb2=0.0, weights="gaussian", g=g)
        p = _probe(model, torch.randn(1, N, generator=g, dtype=torch.float64))
        m1, m2, m3 = (_last(p, k)[0] for k in ("m1", "m2", "m3"))
        return m2 / m1**2 - 1, m3 / m1**3

    v, m3n = np.array(_draws(S, seed, one)).T
    return v.mean(), m3n.mean()


def test_linear_gaussian_fuss_catalan():
    # L/N = 0.008 ≤ 0.01: the infinite-width var = m2 − 1 = L applies (§6).
    N, L, S = 500, 4, 8
    v, m3n = _linear_gaussian(N, L, S, seed=100)
    # §6 table, "var, Gaussian weights": 3 % (the row is stated at L = 8; L = 4 is less noisy).
    _assert_rel("linear Gaussian var (N=500, L=4)", v, float(L), 0.03)
    # §6 table, "m3/m1³": 7 % Gaussian (L = 8 row; L = 4 is less noisy). FC_L(3), §3.5.
    _assert_rel(
        "linear Gaussian m3/m1³ (N=500, L=4)", m3n, float(th.fuss_catalan(depth=L, k=3).value), 0.07
    )


@pytest.mark.slow
def test_linear_gaussian_fuss_catalan_wide():
    N, L, S = 1000, 8, 6
    v, m3n = _linear_gaussian(N, L, S, seed=150)
    pred = th.predict_mlp(act="linear", sw2=1.0, sb2=0.0, depth=L, weights="gaussian", width=N)
    v_fin = float(pred.var_finite.value[-1])  # exact finite-N m2 (§6); L/N = 0.008
    assert v_fin == pytest.approx(float(th.linear_gaussian_m2_finite(depth=L, width=N).value) - 1)
    # §6 table, "var, Gaussian weights": 3 % at L = 8.
    _assert_rel("linear Gaussian var (N=1000, L=8)", v, v_fin, 0.03)
    # §6 table, "m3/m1³": 7 % Gaussian (L = 8).
    _assert_rel(
        "linear Gaussian m3/m1³ (N=1000, L=8)",
        m3n,
        float(th.fuss_catalan(depth=L, k=3).value),
        0.07,
    )


@pytest.mark.slow
def test_linear_gaussian_finite_width_m2():
    # L/N = 0.016 > 0.01: compare with the exact finite-N E m2 (§6), not L + 1.
    N, L, S = 500, 8, 16
    v, _ = _linear_gaussian(N, L, S, seed=170)
    v_fin = float(th.linear_gaussian_m2_finite(depth=L, width=N).value) - 1
    # §6 table, "var, Gaussian weights": 3 % at L = 8.
    _assert_rel("linear Gaussian var (N=500, L=8, finite-N m2)", v, v_fin, 0.03)


# ----------------------------------------------------------- 2. deep linear orthogonal nets


def test_linear_orthogonal_is_an_exact_isometry():
    N, L = 500, 8
    for s in range(2):
        model = MLP(N, N, L, activation="linear", bias=False).double()
        ii.apply(model, "orthogonal", seed=200 + s)
        x = torch.randn(1, N, generator=_gen(250 + s), dtype=torch.float64)
        p = _probe(model, x, taps="auto")
        dev = max(float(np.abs(t.singular_values - 1).max()) for t in p.taps)
        print(f"\nlinear orthogonal (N=500, L=8): max |s − 1| = {dev:.2e}")
        # §6 table, "exact isometries": 1e-10 absolute on s (§3.5: m_k = 1 for every k).
        assert dev <= 1e-10


# ------------------------------------------------------------------------------- 3. ReLU


def _relu(weights: str, N: int, L: int, S: int, seed: int):
    def one(g):
        model = MLP(N, N, L, activation="relu", bias=False).double()
        if weights == "gaussian":
            ii.apply(model, "kaiming-normal", generator=g)  # σ_w² = 2
        else:
            ii.apply(model, "orthogonal", generator=g, gain="relu")  # σ_w = √2
        p = _probe(model, torch.randn(1, N, generator=g, dtype=torch.float64))
        m1, m3 = _last(p, "m1")[0], _last(p, "m3")[0]
        return _last(p, "var")[0], m3 / m1**3

    v, m3n = np.array(_draws(S, seed, one)).T
    return v.mean(), m3n.mean()


def test_relu_kaiming_gaussian_variance_is_2L():
    N, L, S = 500, 8, 8
    v, m3n = _relu("gaussian", N, L, S, seed=300)
    # §3.3 special case: var = 2L. §6 table, "var, Gaussian weights": 3 % at L = 8.
    _assert_rel("ReLU Kaiming var (N=500, L=8)", v, 2.0 * L, 0.03)
    # §3.5: m3 = 6L² + 4L + 1 at m1 = 1. §6 table, "m3/m1³": 7 % Gaussian (L = 8).
    m3_pred = float(th.pl_moments(depth=L, p=0.5, k=3, weights="gaussian").value)
    assert m3_pred == 6 * L**2 + 4 * L + 1
    _assert_rel("ReLU Kaiming m3/m1³ (N=500, L=8)", m3n, m3_pred, 0.07)


def test_relu_orthogonal_variance_is_L():
    N, L, S = 500, 8, 12
    v, _ = _relu("orthogonal", N, L, S, seed=350)
    pred = th.jacobian_moments(act="relu", sw2=2.0, sb2=0.0, depth=L, weights="orthogonal")
    assert pred.var.value == pytest.approx(L)  # §3.3 special case
    # §6 table, "var, orthogonal weights, L ≤ 32": 3 %.
    _assert_rel("ReLU orthogonal var (N=500, L=8)", v, float(L), 0.03)


@pytest.mark.slow
def test_relu_orthogonal_m3():
    N, L, S = 1000, 8, 4
    _, m3n = _relu("orthogonal", N, L, S, seed=380)
    m3_pred = float(th.pl_moments(depth=L, p=0.5, k=3, weights="orthogonal").value)
    assert m3_pred == pytest.approx(1 + 3 * L * (L + 1) / 2)  # §3.5
    # §6 table, "m3/m1³": 3 % orthogonal.
    _assert_rel("ReLU orthogonal m3/m1³ (N=1000, L=8)", m3n, m3_pred, 0.03)


# ------------------------------------------------------------------ 4. tanh at criticality

Q_STAR = 1.0


def _tanh_critical(weights: str, N: int, L: int, S: int, seed: int):
    cp = th.critical_point(act="tanh", q_star=Q_STAR)
    sw2, sb2 = float(cp.sw2.value), float(cp.sb2.value)

    def one(g):
        model = _mlp("tanh", N, L, sw2=sw2, sb2=sb2, weights=weights, g=g)
        p = _probe(model, _at_fixed_point(Q_STAR, (1, N), g))
        m1, m3 = _last(p, "m1")[0], _last(p, "m3")[0]
        return _last(p, "var")[0], math.log(m1), m3 / m1**3

    v, log_m1, m3n = np.array(_draws(S, seed, one)).T
    pred = th.jacobian_moments(act="tanh", sw2=sw2, sb2=sb2, depth=L, weights=weights)
    assert pred.m1.value == pytest.approx(1.0, abs=1e-9)  # χ1 = 1 at the critical point
    # the per-layer prediction of predict_mlp is the same formula at the fixed point
    per_depth = th.predict_mlp(act="tanh", sw2=sw2, sb2=sb2, depth=L, weights=weights)
    assert per_depth.var.value[-1] == pytest.approx(pred.var.value, rel=1e-12)
    return v, log_m1, pred, m3n.mean(), float(per_depth.m3_norm.value[-1])


@pytest.mark.parametrize(
    ("weights", "N", "L", "S"),
    [("gaussian", 500, 4, 8), ("orthogonal", 500, 8, 8)],
)
def test_tanh_at_criticality(weights, N, L, S):
    v, log_m1, pred, m3n, m3_pred = _tanh_critical(weights, N, L, S, seed=400)
    # §6 table: "var, orthogonal weights, L ≤ 32": 3 %; "var, Gaussian weights": 3 % (at L = 8).
    _assert_rel(
        f"tanh critical q*={Q_STAR} {weights} var (N={N}, L={L})",
        v.mean(),
        float(pred.var.value),
        0.03,
    )
    # §3.4 series moments. §6 table, "m3/m1³": 3 % orthogonal; 7 % Gaussian (L = 8).
    _assert_rel(
        f"tanh critical {weights} m3/m1³ (N={N}, L={L})",
        m3n,
        m3_pred,
        0.03 if weights == "orthogonal" else 0.07,
    )
    # §6 table, "log m1": within 3·sd(log m1)/√S of L·log χ1 = 0 (+ the L/N floor).
    _assert_log_m1(f"tanh critical {weights} m1", log_m1, math.log(pred.m1.value), L / N)


@pytest.mark.slow
def test_tanh_at_criticality_gaussian_wide():
    N, L, S = 1000, 8, 4
    v, log_m1, pred, m3n, m3_pred = _tanh_critical("gaussian", N, L, S, seed=450)
    # §6 table, "var, Gaussian weights": 3 % at L = 8.
    _assert_rel(
        f"tanh critical q*={Q_STAR} gaussian var (N={N}, L={L})",
        v.mean(),
        float(pred.var.value),
        0.03,
    )
    _assert_log_m1("tanh critical gaussian m1 (N=1000)", log_m1, math.log(pred.m1.value), L / N)
    # §3.4 series moments. §6 table, "m3/m1³": 7 % Gaussian (L = 8).
    _assert_rel("tanh critical gaussian m3/m1³ (N=1000, L=8)", m3n, m3_pred, 0.07)


# ------------------------------------------------------------ 5. m1 off criticality


def _m1_profile(weights: str, sw2: float, sb2: float, N: int, L: int, S: int, seed: int):
    """Per-depth ``log m1`` of a tanh MLP from ``x ~ N(0, I)`` and its layer-dependent prediction.

    ``q^1 = σ_w²·‖x‖²/N + σ_b²`` (§0) is off the fixed point, so ``predict_mlp(q1=...)`` runs the
    length map layer by layer (§3.3).
    """

    def one(g):
        model = _mlp("tanh", N, L, sw2=sw2, sb2=sb2, weights=weights, g=g)
        x = torch.randn(1, N, generator=g, dtype=torch.float64)
        q1 = sw2 * float((x * x).mean()) + sb2
        pred = th.predict_mlp(act="tanh", sw2=sw2, sb2=sb2, depth=L, weights=weights, q1=q1)
        p = _probe(model, x, taps="auto")
        return np.log(p.stat("m1")), np.log(np.asarray(pred.m1.value))

    out = _draws(S, seed, one)
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


@pytest.mark.parametrize(
    ("sw2", "direction"),
    [(1.2, "decays"), (4.0, "grows")],
)
def test_tanh_m1_off_criticality(sw2, direction):
    N, L, S, sb2 = 500, 8, 6, 0.05
    log_m1, log_pred = _m1_profile("gaussian", sw2, sb2, N, L, S, seed=500)
    # the prediction really leaves m1 = 1: by a factor e^{1.5} or more over 8 layers
    sign = -1.0 if direction == "decays" else 1.0
    assert (sign * log_pred[:, -1] > 1.5).all()
    # §6 table, "log m1" (rule 2) at every depth, floor L/N (rule 3).
    _assert_log_m1(f"tanh Gaussian sw2={sw2} m1 profile ({direction})", log_m1, log_pred, L / N)


@pytest.mark.slow
@pytest.mark.parametrize("sw2", [1.2, 4.0])
def test_tanh_m1_off_criticality_orthogonal(sw2):
    N, L, S, sb2 = 1000, 8, 6, 0.05
    log_m1, log_pred = _m1_profile("orthogonal", sw2, sb2, N, L, S, seed=550)
    # §6 table, "log m1" (rule 2) at every depth, floor L/N (rule 3).
    _assert_log_m1(f"tanh orthogonal sw2={sw2} m1 profile", log_m1, log_pred, L / N)


def test_linear_m1_off_criticality():
    # Linear Gaussian: m1 = σ_w^{2L} (§3.5 "off criticality"), any input. (Any σ_w² is a
    # rescaling of σ_w² = 1 draw by draw, so one value suffices; tanh above covers both phases.)
    N, L, S, sw2 = 500, 8, 6, 0.8

    def one(g):
        model = _mlp("linear", N, L, sw2=sw2, sb2=0.0, weights="gaussian", g=g)
        p = _probe(model, torch.randn(1, N, generator=g, dtype=torch.float64), taps="auto")
        return (np.log(p.stat("m1")),)

    log_m1 = np.array([o[0] for o in _draws(S, 600, one)])
    pred = th.predict_mlp(act="linear", sw2=sw2, sb2=0.0, depth=L, weights="gaussian")
    np.testing.assert_allclose(pred.m1.value, sw2 ** np.arange(1, L + 1), rtol=1e-12)
    # §6 table, "log m1" (rule 2) at every depth, floor L/N (rule 3).
    _assert_log_m1(f"linear Gaussian sw2={sw2} m1 profile", log_m1, np.log(pred.m1.value), L / N)


# ------------------------------------------------------------- 6. delta-orthogonal CNNs


def test_linear_delta_orthogonal_cnn_is_an_exact_isometry():
    c, L, H = 16, 8, 6
    model = ConvNet(c, c, L, activation="linear", kernel_size=3, bias=False).double()
    ii.apply(model, "delta-orthogonal", seed=700)
    x = torch.randn(1, c, H, H, generator=_gen(701), dtype=torch.float64)
    p = _probe(model, x, taps="auto")
    assert p.taps[-1].r == c * H * H
    dev = max(float(np.abs(t.singular_values - 1).max()) for t in p.taps)
    print(f"\nlinear delta-orthogonal CNN (c=16, L=8, 6×6): max |s − 1| = {dev:.2e}")
    # §6 table, "exact isometries (linear delta-orthogonal CNN)": 1e-10 absolute on s (§5).
    assert dev <= 1e-10


def _delta_orthogonal_tanh(c: int, L: int, H: int, q_star: float, S: int, seed: int):
    """Per-position and pooled ``var`` of a critical tanh delta-orthogonal CNN.

    §5: J is block-diagonal over the ``P = H·H`` positions, block ``p`` being the width-``c``
    orthogonal FC Jacobian of the centre taps at that position's input. Probing the same model
    on the ``P`` one-pixel images ``x[:, :, i, j]`` measures those blocks one by one (the centre
    tap is all a delta kernel applies). Returns the mean over draws of the per-position ``var``
    (averaged over positions), of the pooled ``var`` of the whole ``J``, and the largest
    difference between the sorted whole spectrum and the union of the blocks' spectra.
    """
    cp = th.critical_point(act="tanh", q_star=q_star)
    sw2, sb2 = float(cp.sw2.value), float(cp.sb2.value)

    def one(g):
        model = ConvNet(c, c, L, activation="tanh", kernel_size=3, bias=True).double()
        ii.apply(model, "delta-orthogonal", generator=g, gain=math.sqrt(sw2))
        with torch.no_grad():
            for conv in model.convs:  # one bias per channel, b ~ N(0, σ_b²)
                conv.bias.normal_(0.0, math.sqrt(sb2), generator=g)
        x = _at_fixed_point(q_star, (1, c, H, H), g)
        whole = _probe(model, x)
        blocks = _probe(model, x[0].permute(1, 2, 0).reshape(H * H, c, 1, 1))
        s_whole = np.sort(whole.taps[-1].singular_values.ravel())
        s_union = np.sort(blocks.taps[-1].singular_values.ravel())
        return _last(blocks, "var").mean(), _last(whole, "var")[0], np.abs(s_whole - s_union).max()

    per_position, pooled, dev = np.array(_draws(S, seed, one)).T
    pred = th.jacobian_moments(act="tanh", sw2=sw2, sb2=sb2, depth=L, weights="orthogonal")
    return per_position.mean(), pooled.mean(), dev.max(), float(pred.var.value)


def test_delta_orthogonal_cnn_tanh_matches_orthogonal_fc():
    c, L, H, S = 64, 8, 3, 12  # L/c = 0.125
    per_position, pooled, dev, v_pred = _delta_orthogonal_tanh(c, L, H, 0.25, S, seed=750)
    print(
        f"\ndelta-orthogonal tanh CNN: spectrum vs union of blocks {dev:.2e}; pooled v "
        f"{pooled:.4g} (ratio {pooled / v_pred:.4f})"
    )
    # §5 [D]: the spectrum is exactly the union of the per-position blocks (an algebraic
    # identity, so the "exact isometries" row's 1e-10 absolute applies).
    assert dev <= 1e-10
    # §6 table, "delta-orthogonal CNN var": 3 % for L/c ≤ 0.15 — per block, i.e. the orthogonal
    # FC formula with N = c (§5).
    _assert_rel(
        "delta-orthogonal tanh CNN per-position var (c=64, L=8, q*=0.25)",
        per_position,
        v_pred,
        0.03,
    )


@pytest.mark.slow
def test_delta_orthogonal_cnn_tanh_deep():
    c, L, H, S = 32, 16, 3, 16  # L/c = 0.5
    per_position, _, dev, v_pred = _delta_orthogonal_tanh(c, L, H, 1.0, S, seed=780)
    assert dev <= 1e-10  # §5, exact identity
    # §6 table, "delta-orthogonal CNN var": 10 % for L/c ≈ 0.5.
    _assert_rel(
        "delta-orthogonal tanh CNN per-position var (c=32, L=16, q*=1)", per_position, v_pred, 0.10
    )


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="docs/theory.md §6 row 'delta-orthogonal CNN var' does not hold for the pooled spectrum "
    "of the whole CNN: pooling P blocks whose m1 differ by O(√(L/c)) adds ≈ (1+var)·Var_p(m1)/m1² "
    "to var (measured +30 to +51 % at c=32, L=16, q*=1), although each block agrees with theory; "
    "the report overlay draws no line at this L/c = 0.5 > 0.25",
)
def test_delta_orthogonal_cnn_tanh_pooled_v():
    c, L, H, S = 32, 16, 3, 8  # L/c = 0.5
    _, pooled, _, v_pred = _delta_orthogonal_tanh(c, L, H, 1.0, S, seed=790)
    # §6 table, "delta-orthogonal CNN var": 10 % for L/c ≈ 0.5.
    _assert_rel("delta-orthogonal tanh CNN pooled var (c=32, L=16, q*=1)", pooled, v_pred, 0.10)


# ---------------------------------------------------------------- 7. residual networks


def _resnet(
    act: str,
    weights: str,
    a: float,
    sw2: float,
    sb2: float,
    N: int,
    L: int,
    S: int,
    seed: int,
    drop_top: int = 0,
):
    """``x^l = x^{l−1} + a·φ(W x^{l−1} + b)`` (``ResidualMLP``, one-layer branches, §4).

    Returns the mean over draws of ``m1`` and ``var`` (after removing the ``drop_top`` largest
    eigenvalues of ``JJᵀ``) and the mean prediction (``P^0 = ‖x^0‖²/N`` of each draw's input).
    """

    def one(g):
        model = ResidualMLP(
            None, N, L, activation=act, branch_layers=1, scale=a, bias=sb2 > 0
        ).double()
        for block in model.blocks:
            _fill_linear(block.fc1, sw2=sw2, sb2=sb2, weights=weights, g=g)
        x = torch.randn(1, N, generator=g, dtype=torch.float64)
        with torch.no_grad():  # the model is exactly the §4 recursion
            ref = x.clone()
            for block in model.blocks:
                ref = ref + a * block.act(block.fc1(ref))
            assert torch.allclose(model(x), ref, rtol=1e-13, atol=1e-13)
        lam = _probe(model, x).taps[-1].singular_values[0] ** 2  # descending
        lam = lam[drop_top:]
        pred = th.resnet_moments(
            act=act, a=a, sw2=sw2, sb2=sb2, depth=L, weights=weights, x0_sq=float((x * x).mean())
        )
        m1 = lam.mean()
        return m1, (lam**2).mean() / m1**2 - 1, pred.m1.value, pred.var.value

    m1, v, m1_pred, v_pred = np.array(_draws(S, seed, one)).T
    return m1.mean(), v.mean(), m1_pred.mean(), v_pred.mean()


@pytest.mark.parametrize(
    ("act", "weights", "sb2"),
    [
        ("linear", "gaussian", 0.0),
        ("linear", "orthogonal", 0.0),
        ("tanh", "gaussian", 0.1),
        ("tanh", "orthogonal", 0.1),
    ],
)
def test_residual_mlp_moments(act, weights, sb2):
    N, L, S, a, sw2 = 500, 8, 4, 0.5, 1.0
    m1, v, m1_pred, v_pred = _resnet(act, weights, a, sw2, sb2, N, L, S, seed=800)
    name = f"residual {act} {weights} a={a}"
    # §6 table, "ResNet bulk m1 and var": 2–3 % (3 % used).
    _assert_rel(f"{name} m1 (N={N}, L={L})", m1, m1_pred, 0.03)
    _assert_rel(f"{name} var (N={N}, L={L})", v, v_pred, 0.03)


def test_residual_relu_bulk_after_removing_the_outlier():
    N, L, S, a = 500, 8, 4, 0.5
    # Kaiming σ_w² = 2, no biases: the top eigenvalue is the outlier along x^0 (§4 caveat);
    # with it the raw v is ~13 % above the formula, without it the bulk follows μ1 = μ2 = 1/2.
    m1, v, m1_pred, v_pred = _resnet("relu", "gaussian", a, 2.0, 0.0, N, L, S, seed=850, drop_top=1)
    # §6 table, "ResNet bulk m1 and var": 2–3 % (3 % used), after §6 rule 6 (remove the outlier).
    _assert_rel(f"residual ReLU bulk m1 (N={N}, L={L})", m1, m1_pred, 0.03)
    _assert_rel(f"residual ReLU bulk var (N={N}, L={L})", v, v_pred, 0.03)


# ---------------------------------------------------------------------- report overlay


def test_overlay_matches_a_kaiming_relu_profile():
    N, L, S = 500, 8, 10
    args = dict(in_features=N, width=N, depth=L, activation="relu")
    chain = th.Chain(
        layer="dense",
        activation="relu",
        width=N,
        in_width=N,
        depth=L,
        fan_in=N,
        bias=True,
        taps=tuple(f"acts.{i}" for i in range(L)),
    )
    # The law Kaiming-normal draws for ReLU: σ_w² = 2, biases zero.
    ov = th.overlay(chain, th.WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian"))
    assert ov is not None

    def one(g):
        model = ii.apply(MLP(**args).double(), "kaiming-normal", generator=g)
        p = _probe(model, torch.randn(1, N, generator=g, dtype=torch.float64), taps="auto")
        np.testing.assert_array_equal(p.depths, ov.depth)  # the line is drawn at the taps
        return p.stat("var"), np.log(p.stat("m1"))

    out = _draws(S, 900, one)
    v = np.array([o[0] for o in out]).mean(axis=0)
    log_m1 = np.array([o[1] for o in out])
    print(f"\noverlay v {np.round(ov.var, 3)}\nmeasured v {np.round(v, 3)}")
    # §6 table, "var, Gaussian weights": 3 % (at L = 8; shallower depths are less noisy), at
    # every depth of the drawn line.
    rel = v / ov.var - 1
    assert np.all(np.abs(rel) <= 0.03), f"overlay v off by {np.round(100 * rel, 2)} %"
    # §6 table, "log m1" (rule 2) at every depth, floor L/N (rule 3).
    _assert_log_m1("overlay m1 (Kaiming ReLU)", log_m1, np.log(ov.m1), L / N)
