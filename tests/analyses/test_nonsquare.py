"""analyses/nonsquare.py (claim B): its helpers against hand-made matrices, its quick run's
numbers against independent recomputations from isokit.init and torch.linalg, and the
qualitative outcome on fixed seeds (zero padding bounded by D_0, the padded identity above it)."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

import isokit
from tests.analyses.conftest import ANALYSES

D0, DH, OUT = 16, 48, 10


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(ANALYSES))
    try:
        spec = importlib.util.spec_from_file_location("nonsquare", ANALYSES / "nonsquare.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["nonsquare"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ANALYSES))
    return module


def test_residual_ranks_counts_singular_values_above_each_relative_tolerance(script):
    s = [2.0, 1.0, 1e-3, 1e-5, 1e-8, 0.0]  # thresholds 2e-3 and 2e-6
    r = script.residual_ranks(s)
    assert r["rank@0.001"] == 2 and r["rank@1e-06"] == 4
    p = np.array(s[:5]) / sum(s)
    assert r["erank"] == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-12)
    assert script.residual_ranks([0.0, 0.0]) == {"rank@0.001": 0, "rank@1e-06": 0, "erank": 0.0}


def test_measure_finds_the_rank_of_a_built_low_rank_residual(script):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(DH, 7, generator=g, dtype=torch.float64)
    w = torch.eye(DH, dtype=torch.float64) + u @ u.T * 1e-2
    m = script.measure([w], [torch.eye(DH, dtype=torch.float64)])
    assert m["rank@0.001"] == [7] and m["rank@1e-06"] == [7]


def test_build_gives_zero_padding_or_the_padded_identity(script):
    settings = script.Settings(D0, DH, 3, 10, (0, 10), 0.02, 64, 128, 4)
    eye = script.build(script.Variant("relu", "eye", "strict", "truncate"), settings, 0)
    idi = script.build(script.Variant("relu", "idi", "strict", "tile"), settings, 0)
    w_eye, w_idi = eye.fcs[0].weight.detach(), idi.fcs[0].weight.detach()
    assert torch.equal(w_eye, torch.eye(DH, D0)) and (w_eye[D0:] == 0).all()
    assert torch.equal(w_idi, torch.eye(D0).repeat(3, 1))  # rows m copy input m mod 16
    for fc in idi.fcs[1:]:
        assert torch.equal(fc.weight.detach(), torch.eye(DH))
    tile = torch.zeros(OUT, DH)
    tile[torch.arange(DH) % OUT, torch.arange(DH)] = 1.0
    assert torch.equal(idi.head.weight.detach(), tile)
    assert torch.equal(eye.head.weight.detach(), torch.eye(OUT, DH))


@pytest.mark.slow
def test_init_spectrum_matches_the_closed_forms(quick_run):
    spectrum = quick_run("nonsquare").record["numbers"]["init_spectrum"]
    # IDI(48, 16) stacks three copies of I: every singular value √3; eye_ is a partial isometry.
    np.testing.assert_allclose(spectrum["idi/truncate"]["acts.0"], [math.sqrt(3)] * D0)
    np.testing.assert_allclose(spectrum["eye/truncate"]["acts.0"], [1.0] * D0)
    # The truncated head reads the first 10 hidden units, copies of inputs 0..9 either way.
    for first in ("eye", "idi"):
        np.testing.assert_allclose(spectrum[f"{first}/truncate"]["head"], [1.0] * OUT)
    # The tiled head: the product of the layers, built here with isokit.init and torch.
    for first in ("eye", "idi"):
        w1 = torch.empty(DH, D0, dtype=torch.float64)
        if first == "eye":
            isokit.init.eye_(w1)
        else:
            isokit.init.idi_(w1)
        head = isokit.init.idi_(torch.empty(OUT, DH, dtype=torch.float64), contract="tile")
        expected = torch.linalg.svdvals(head @ w1).numpy()
        np.testing.assert_allclose(spectrum[f"{first}/tile"]["head"], expected, rtol=1e-10)


@pytest.mark.slow
def test_zero_padding_stays_at_d0_and_the_padded_identity_exceeds_it(quick_run):
    summary = quick_run("nonsquare").record["numbers"]["summary"]
    for act in ("linear", "relu"):
        zero = summary[f"{act}/eye/strict/truncate"]["minus_identity/rank@0.001"]
        idi = summary[f"{act}/idi/strict/truncate"]["minus_identity/rank@0.001"]
        assert max(zero) <= D0 < min(idi)
        # Strict inits start exactly at I: θ − I is 0 at step 0.
        assert summary[f"{act}/idi/strict/truncate"]["minus_identity/rank@0.001/curve"][0][0] == 0
    # With ReLU the τ-only loosening lifts the rank above the strict padded identity.
    loose = summary["relu/idi/tau/truncate"]["minus_identity/rank@0.001"]
    strict = summary["relu/idi/strict/truncate"]["minus_identity/rank@0.001"]
    assert min(loose) > max(strict)


@pytest.mark.slow
def test_reported_ranks_agree_with_the_stored_singular_values(quick_run, script):
    numbers = quick_run("nonsquare").record["numbers"]
    for key, svals in numbers["final_singular_values"].items():
        entry = numbers["summary"][key]
        for which in ("minus_identity", "minus_init"):
            ranks = [script.residual_ranks(s) for s in svals[which]]
            for stat in ("rank@0.001", "rank@1e-06", "erank"):
                assert entry[f"{which}/{stat}"][0] == max(r[stat] for r in ranks), (key, stat)
                assert entry[f"{which}/{stat}/curve"][0][-1] == entry[f"{which}/{stat}"][0]
        # A looser tolerance never counts fewer singular values.
        coarse, fine = entry["minus_identity/rank@0.001"], entry["minus_identity/rank@1e-06"]
        assert all(a <= b for a, b in zip(coarse, fine, strict=True)), key


@pytest.mark.slow
def test_the_verdict_follows_its_rule(quick_run, script):
    record = quick_run("nonsquare").record
    expected = script.verdicts(record["numbers"]["summary"], D0)
    assert record["verdict"] == expected
    assert record["verdict"]["claim B, contract=truncate"] == "confirmed"
    assert record["settings"]["effective_lr"] == pytest.approx(0.02 / (1 - 0.9))
