"""analyses/theory_map.py: the σ_w² × depth trainability map of a tanh MLP against ξ_c."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from isokit.theory import depth_scales
from tests.analyses.conftest import ANALYSES

sys.path.insert(0, str(ANALYSES))
from lib_theory_map.rule import agreement, best_multiples, boundary, sides, verdict  # noqa: E402


def _script():
    spec = importlib.util.spec_from_file_location("theory_map_script", ANALYSES / "theory_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_boundary_is_the_last_trained_depth_and_the_next_failure():
    assert boundary([2, 4, 8, 16], [True, True, False, False]).depth == pytest.approx(math.sqrt(32))
    # A failure below a trained depth is not the boundary: the deepest trained depth is.
    b = boundary([2, 4, 8, 16], [True, False, True, False])
    assert (b.last_ok, b.first_fail) == (8, 16)
    assert boundary([2, 4], [True, True]).first_fail is None


def test_the_best_multiple_recovers_a_planted_boundary():
    # Cells train exactly when depth ≤ 4·ξ_c: the best band must contain 4 and be tight.
    xi = np.repeat([1.5, 3.0, 10.0, np.inf], 6)
    depth = np.tile([2.0, 4, 8, 16, 32, 64], 4)
    trained = depth <= 4 * xi
    lo, hi, best = best_multiples(depth, xi, trained)
    assert best == 1.0 and lo <= 4 <= hi and hi / lo < 2
    assert agreement(depth, xi, trained, 64.0) < 1.0
    s = sides(depth, xi, trained, 6.0)
    assert s["beyond_failed"] == 1.0 and s["within_trained"] < 1.0  # 4 < 6: some within fail
    assert verdict(s, (lo, hi)) == "confirmed"
    # The same grid if failures began only at 40·ξ_c: contradicted.
    late = depth <= 40 * xi
    s_late = sides(depth, xi, late, 6.0)
    assert verdict(s_late, best_multiples(depth, xi, late)[:2]) == "contradicted"


def test_the_law_is_the_schemes_and_xi_c_the_theorys():
    script = _script()
    sw2, sb2, xi = script.law_xi(script.gain_of(2.0), 64)
    assert sw2 == pytest.approx(2.0, rel=1e-5) and sb2 == 0.0
    assert xi == pytest.approx(depth_scales(act="tanh", sw2=2.0, sb2=0.0).xi_c.value, rel=1e-4)
    assert math.isinf(script.law_xi(1.0, 64)[2])  # σ_w² = 1, σ_b² = 0: the critical point


@pytest.mark.slow
def test_the_map_agrees_with_the_sweep_reports_and_with_its_cells(quick_run, tmp_path):
    from isokit.report.sweep_series import groups, train_map
    from isokit.sweep import load_sweep

    run = quick_run("theory_map")
    m = run.record["numbers"]["map"]
    sweep = load_sweep(run.out.parent / "work" / "map")
    assert sweep.missing == 0 and all(c.status == "ok" for c in sweep.results)
    (group,) = groups(sweep, ("depth", "option.gain"))
    tm = train_map(group, "xavier-normal", "depth", "option.gain")
    assert tm.xs == m["depths"]
    # ξ_c per row: the sweep report's own (from the scheme's law) equals the analysis'.
    report_xi = {p.y: p.xi_c for p in tm.xi if float(p.row).is_integer()}
    for row in m["rows"]:
        assert report_xi[row["gain"]] == pytest.approx(float(row["xi_c"]), rel=1e-9)
    # The accuracies: one seed in quick mode, none diverged, so the report's medians agree.
    for row in m["rows"]:
        j = tm.ys.index(row["gain"])
        assert np.array_equal(tm.diverged[j], row["diverged"])
        np.testing.assert_allclose(tm.final[j], row["accuracy"], rtol=0, atol=1e-12)


@pytest.mark.slow
def test_the_quick_map_shows_the_expected_outcome(quick_run):
    rec = quick_run("theory_map").record
    rows = {round(r["sigma_w2"], 3): r for r in rec["numbers"]["map"]["rows"]}
    # Shallow networks train at every σ_w²; in the ordered phase (σ_w² = 0.5, ξ_c ≈ 1.4) the
    # signal dies within a few ξ_c and depth 128 is at chance.
    assert all(r["accuracy"][0] > 0.7 for r in rows.values())
    assert rows[0.5]["accuracy"][-1] < 0.15 and rows[0.5]["first_fail"] <= 32
    # At the critical point (ξ_c = ∞) the network trains deeper than in the ordered phase.
    assert rows[1.0]["last_ok"] > rows[0.5]["last_ok"]
    claim = rec["numbers"]["claim"]
    assert rec["verdict"]["training fails beyond about 6·ξ_c"] in ("confirmed", "unclear")
    assert claim["beyond_failed"] >= 0.85
    for r in rows.values():  # the JSON's boundary is the trained flags' boundary
        assert r["trained"] == [a >= rec["settings"]["fail_below"] for a in r["accuracy"]]
    assert set(rec["figures"]) >= {f"theory_map_{s}.png" for s in ("accuracy", "boundary")}
