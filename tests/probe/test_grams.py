"""Grams formed as their upper triangle in row strips (``docs/probes.md §3.3``)."""

from __future__ import annotations

import math

import pytest
import torch

from isokit.models import MLP
from isokit.probe.grams import _from_gram, _gram_of, _strips, _symmetric

from .conftest import dense_jacobians, rel_fro


@pytest.fixture
def one_thread():
    """One torch thread, where 256 × 256 Grams are formed in strips."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("r", [64, 256, 600])
@pytest.mark.parametrize("rows", [False, True])
def test_upper_triangle_and_its_accumulation_equal_the_full_product(r, rows, one_thread):
    gen = torch.Generator().manual_seed(r)
    C1, C2 = (torch.randn(2, r, r + 7, generator=gen, dtype=torch.float64) for _ in range(2))
    if not rows:
        C1, C2 = C1.transpose(1, 2).contiguous(), C2.transpose(1, 2).contiguous()

    def full(C):
        return C @ C.transpose(1, 2) if rows else C.transpose(1, 2) @ C

    G = _gram_of(C1, rows=rows)
    assert G.shape == (2, r, r)
    assert rel_fro(torch.triu(G), torch.triu(full(C1))) <= 1e-14
    G = _gram_of(C2, rows=rows, out=G)  # a second chunk, added in place
    assert rel_fro(_symmetric(G), full(C1) + full(C2)) <= 1e-14


def test_strips_pay_from_256_on_one_thread_and_from_512_on_more(one_thread):
    assert (_strips(128), _strips(256), _strips(1024)) == (1, 4, 4)
    torch.set_num_threads(2)
    assert (_strips(256), _strips(512)) == (1, 4)


def test_a_gram_with_nan_or_inf_in_its_factor_is_refused_by_its_diagonal():
    C = torch.randn(1, 300, 300, dtype=torch.float64)
    C[0, 5, 7] = math.inf
    with pytest.raises(ValueError, match="tap 'blocks.3' holds NaN or inf"):
        _from_gram(_gram_of(C, rows=False), "blocks.3")


def test_a_probe_whose_grams_are_formed_in_strips_matches_jacrev(one_thread):
    from isokit.probe.exact import tap_grams

    torch.manual_seed(0)
    model = MLP(256, 256, 3, activation="tanh")
    x = torch.randn(1, 256)
    res = tap_grams(model, x)
    for tap, J in zip(res.taps, dense_jacobians(model, x[0]), strict=True):
        assert rel_fro(tap.gram[0], J @ J.T) <= 1e-12
        s_ref = torch.linalg.svdvals(J)
        # Weyl: the Gram's eigenvalues σ² move by at most ‖ΔG‖ ≈ eps·σ_max², so a small σ
        # taken from the Gram is accurate to eps·σ_max²/σ only; compare the squares.
        err = (tap.singular_values[0] ** 2 - s_ref**2).abs().max()
        assert float(err) <= 1e-12 * float(s_ref[0]) ** 2
