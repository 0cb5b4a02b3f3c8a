"""Statistics of rank-deficient spectra: rank, the non-zero part, the bulk and the raw variance.

Each is checked against an independent computation on the dense float64 Jacobian
(``torch.func.jacrev`` + ``numpy.linalg``), not against the probe's own singular values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev

import isokit
from isokit.models import MLP
from isokit.probe import profile, stats


def _dense_jacobians(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """``∂h_l/∂x`` of every activation of an isokit MLP (``acts.i``) for one example."""
    model = model.double().eval()
    acts = list(model.acts)

    def taps(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        hooks = [a.register_forward_hook(lambda m, i, o: out.append(o)) for a in acts]
        try:
            model(v[None])
        finally:
            for h in hooks:
                h.remove()
        return tuple(o[0] for o in out)

    return [j.detach().numpy() for j in jacrev(taps)(x.double())]


def _reference(J: np.ndarray) -> dict[str, float]:
    """The documented formulas, from numpy's SVD and ``matrix_rank`` of ``J`` itself."""
    s = np.linalg.svd(J, compute_uv=False)
    r = min(J.shape)
    k = int(np.linalg.matrix_rank(J))
    lam = s**2
    nz = lam[:k]
    bulk = np.sort(lam)[::-1][1:]
    return {
        "rank": k,
        "rank_fraction": k / r,
        "zero_fraction": (r - k) / r,
        "m1_nonzero": float(np.linalg.norm(J, "fro") ** 2 / k),
        "var_nonzero": float(nz.var() / nz.mean() ** 2),
        "gap_nonzero": float(np.log(nz.mean()) - np.log(nz).mean()),
        "cond_nonzero": float(s[0] / s[k - 1]),
        "m1_bulk": float((np.linalg.norm(J, "fro") ** 2 - np.linalg.norm(J, 2) ** 2) / (r - 1)),
        "var_bulk": float(bulk.var() / bulk.mean() ** 2),
        "var_raw": float(lam.var()),
    }


@pytest.fixture(scope="module")
def relu_case():
    torch.manual_seed(0)
    model = isokit.init.apply(MLP(12, 16, depth=4, activation="relu"), "kaiming-normal", seed=1)
    x = torch.randn(2, 12, dtype=torch.float64)
    return model, x, profile(model, x, method="exact")


def test_relu_mlp_statistics_match_dense_jacobian(relu_case):
    model, x, prof = relu_case
    for b in range(x.shape[0]):
        for tap, J in zip(prof.taps, _dense_jacobians(model, x[b]), strict=True):
            ref = _reference(J)
            assert ref["rank"] < tap.r  # ReLU masks: rank deficient, so the test is not vacuous
            assert tap.stats["cond"][b] == math.inf and tap.stats["gap"][b] == math.inf
            for name, value in ref.items():
                assert tap.stats[name][b] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_rank_fraction_and_zero_fraction_add_up(relu_case):
    _, _, prof = relu_case
    total = prof.stat("rank_fraction", None) + prof.stat("zero_fraction", None)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-15)
    r = np.array([[t.r] for t in prof.taps])
    np.testing.assert_array_equal(prof.stat("rank", None), prof.stat("rank_fraction", None) * r)


def test_full_rank_nonzero_part_is_the_whole_spectrum():
    s = np.array([[2.0, 1.5, 1.0, 0.5]])
    st = stats(s)
    for name in ("m1", "var", "gap", "cond"):
        np.testing.assert_allclose(st[f"{name}_nonzero"], st[name], rtol=1e-14)
    assert st["rank"].tolist() == [4.0] and st["zero_fraction"].tolist() == [0.0]


def test_nonzero_statistics_ignore_planted_zeros():
    kept = np.array([3.0, 2.0, 1.0])
    with_zeros = stats(np.concatenate([kept, np.zeros(5)]))
    alone = stats(kept)
    for name in ("m1", "var", "gap", "cond"):
        assert with_zeros[f"{name}_nonzero"] == pytest.approx(alone[name], rel=1e-14), name
    assert with_zeros["rank"] == 3 and with_zeros["rank_fraction"] == pytest.approx(3 / 8)


def test_bulk_drops_only_the_largest_eigenvalue():
    s = np.array([10.0, 1.0, 1.0, 1.0])
    st = stats(s)
    assert st["m1_bulk"] == pytest.approx(1.0) and st["var_bulk"] == pytest.approx(0.0, abs=1e-15)
    assert st["var"] > 1  # the outlier dominates the whole spectrum's variance
    assert "m1_bulk" not in stats([2.0])  # no bulk without a second value


def test_degenerate_spectrum_values():
    st = stats(np.zeros(3), degenerate_var=math.inf)
    assert st["rank"] == 0 and st["rank_fraction"] == 0 and st["zero_fraction"] == 1
    assert st["gap_nonzero"] == st["cond_nonzero"] == st["var_nonzero"] == math.inf
    assert st["m1_nonzero"] == 0 and st["m1_bulk"] == 0 and st["var_bulk"] == math.inf


def _low_rank_linear(n: int, k: int, seed: int) -> nn.Module:
    """One linear layer of rank ``k`` with one large singular value (an outlier)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = torch.zeros(n, dtype=torch.float64)
    s[:k] = torch.linspace(1.2, 0.6, k, dtype=torch.float64)
    s[0] = 4.0
    layer = nn.Linear(n, n, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(U @ torch.diag(s) @ V.T)
    return nn.Sequential(layer)


def test_lanczos_tier_estimates_agree_with_exact():
    model = _low_rank_linear(48, 30, seed=3)
    x = torch.zeros(1, 48, dtype=torch.float64)
    exact = profile(model, x, method="exact").taps[0]
    approx = profile(model, x, method="lanczos", n_probes=32, slq_taps="all").taps[0]
    # The zero atom's mass per probe is the probe's squared component on the null space.
    for name in ("rank", "rank_fraction", "zero_fraction", "gap_nonzero"):
        err = abs(approx.stats[name][0] - exact.stats[name][0])
        assert err <= 3 * approx.se[name][0] + 1e-9, (name, err, approx.se[name][0])
    for name, rel in (
        ("m1_nonzero", 0.15),
        ("m1_bulk", 0.1),
        ("var_raw", 0.3),
        ("cond_nonzero", 0.1),
    ):
        assert approx.stats[name][0] == pytest.approx(exact.stats[name][0], rel=rel), name


def test_a_profile_written_with_the_old_zero_frac_name_reads_back(relu_case):
    _, _, prof = relu_case
    d = prof.to_dict()
    for tap in d["taps"]:
        tap["stats"]["zero_frac"] = tap["stats"].pop("zero_fraction")
    back = isokit.probe.Profile.from_dict(d)
    np.testing.assert_array_equal(
        back.stat("zero_fraction", None), prof.stat("zero_fraction", None)
    )
