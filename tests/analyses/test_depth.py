"""analyses/depth.py (claim A): the verdict rule on hand-made series, and the quick run's numbers
against independent recomputations from its sweep directories."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from isokit.sweep import load_sweep
from tests.analyses.conftest import ANALYSES

sys.path.insert(0, str(ANALYSES))
from lib_depth import grids, summary  # noqa: E402


def test_growth_is_the_ratio_of_second_normalized_moments_deepest_over_shallowest():
    series = {"depth": [16, 4, 64], "var_nonzero": [1.0, 0.5, 3.0]}
    assert summary.growth(series) == pytest.approx((1 + 3.0) / (1 + 0.5))
    assert math.isnan(summary.growth({"depth": [4], "var_nonzero": [0.1]}))
    assert math.isnan(summary.growth({"depth": [4, 8], "var_nonzero": [0.1, math.inf]}))


def test_failures_list_raised_cells_and_failed_checkpoints_of_finished_runs():
    from types import SimpleNamespace as NS

    train = NS(checkpoint_errors={100: "the Jacobian at tap 'head' holds NaN or inf\nmore"})
    results = NS(
        results=[
            NS(axes={"seed": 0}, status="error", error={"message": "boom\ntrace"}, record=None),
            NS(axes={"seed": 1}, status="ok", error=None, record=NS(train=train)),
            NS(axes={"seed": 2}, status="ok", error=None, record=NS(train=None)),
        ]
    )
    assert summary.failures(results) == [
        {"seed": 0, "error": "boom"},
        {"seed": 1, "step": 100, "error": "the Jacobian at tap 'head' holds NaN or inf"},
    ]


@pytest.mark.parametrize(
    ("g_idinit", "g_kaiming", "expected"),
    [
        (1.0, 3.0, "confirmed"),
        (1.5, 2.0, "confirmed"),
        (1.6, 3.0, "unclear"),
        (1.0, 1.9, "unclear"),
        (2.0, 5.0, "contradicted"),
        (math.nan, 5.0, "unclear"),
        (1.0, math.nan, "unclear"),
    ],
)
def test_family_verdict_follows_the_stated_thresholds(g_idinit, g_kaiming, expected):
    assert summary.family_verdict(g_idinit, g_kaiming) == expected


def test_claim_verdict_needs_every_family():
    assert summary.claim_verdict(["confirmed", "confirmed"]) == "confirmed"
    assert summary.claim_verdict(["confirmed", "unclear"]) == "unclear"
    assert summary.claim_verdict(["confirmed", "contradicted"]) == "contradicted"
    assert summary.claim_verdict([]) == "unclear"


def test_full_budget_covers_the_issue():
    b = grids.budget(False)
    fams = {f.label: f for f in grids.families(b)}
    assert set(fams) == {"mlp-relu", "mlp-tanh", "residual-mlp", "resnet", "transformer"}
    assert fams["resnet"].depths == (20, 56, 110)
    labels = {grids.scheme_label(s) for s in fams["resnet"].schemes}
    assert set(grids.DEFAULT_SCHEMES) | {"idinit-zero-last", "idinit-channel"} == labels
    steps = {(p.family.label, p.steps, p.depths) for p in grids.train_plans(b)}
    assert ("resnet", 1000, (20,)) in steps and ("residual-mlp", 1000, (16,)) in steps


# ----------------------------------------------------------------------------- the quick run


def _work(run):
    return run.out.parent / "work"


def _var_nonzero_from_singular_values(s: np.ndarray, D: int, n_in: int) -> float:
    """docs/probes.md §5: m2'/m1'² − 1 over the singular values above τ = max(D, n)·ε·s_1."""
    lam = s[s > max(D, n_in) * np.finfo(np.float64).eps * s[0]] ** 2
    return float(np.mean(lam**2) / np.mean(lam) ** 2 - 1)


@pytest.mark.slow
def test_init_series_equal_a_recomputation_from_the_stored_singular_values(quick_run):
    run = quick_run("depth")
    series = run.record["numbers"]["init"]["series"]
    checked = 0
    for family, by_scheme in series.items():
        results = load_sweep(_work(run) / f"init-{family}")
        values: dict[tuple[str, int], list[float]] = {}
        for cell in results.results:
            tap = cell.record.profile.taps[-1] if cell.status == "ok" else None
            if tap is None or tap.degenerate.any():  # J = 0 (Fixup's zero logits): var is +inf
                continue
            per_example = [
                _var_nonzero_from_singular_values(s, tap.D, tap.n_in) for s in tap.singular_values
            ]
            values.setdefault((cell.axes["scheme"], cell.axes["depth"]), []).append(
                float(np.mean(per_example))
            )
        for (scheme, depth), v in values.items():
            s = by_scheme[scheme]
            got = float(s["var_nonzero"][s["depth"].index(depth)])
            assert got == pytest.approx(np.mean(v), rel=1e-6, abs=1e-12), (family, scheme, depth)
            checked += 1
    assert checked >= 20


@pytest.mark.slow
def test_reported_growth_and_verdicts_follow_the_rule(quick_run):
    record = quick_run("depth").record
    init = record["numbers"]["init"]
    per_variant: dict[str, list[str]] = {}
    for family, info in init["families"].items():
        for scheme, s in init["series"][family].items():
            g = float(info["growth"][scheme])  # NaN is written as "nan"
            want = summary.growth(
                {"depth": s["depth"], "var_nonzero": [float(x) for x in s["var_nonzero"]]}
            )
            assert (math.isnan(g) and math.isnan(want)) or g == pytest.approx(want)
        for variant, v in info["verdict"].items():
            k = float(info["growth"].get("kaiming-normal", math.nan))
            assert v == summary.family_verdict(float(info["growth"][variant]), k)
            per_variant.setdefault(variant, []).append(v)
    claim = record["verdict"]["claim A at initialization"]
    assert claim == {v: summary.claim_verdict(found) for v, found in per_variant.items()}
    assert "growth" in record["verdict"]["rule"] and str(summary.FLAT) in record["verdict"]["rule"]


@pytest.mark.slow
def test_identity_controlled_residual_mlp_is_an_isometry_and_kaiming_is_not(quick_run):
    # IDInit's blocks are I + IDIZ_ε branches (ε = 1e-6): the Jacobian is I up to O(ε·depth);
    # Kaiming's unscaled branches multiply spectra that spread with every block.
    series = quick_run("depth").record["numbers"]["init"]["series"]["residual-mlp"]
    idinit, kaiming = series["idinit"], series["kaiming-normal"]
    for i in range(len(idinit["depth"])):
        assert abs(idinit["sigma_max"][i] - 1) < 1e-3 and abs(idinit["sigma_min"][i] - 1) < 1e-3
        assert idinit["var_nonzero"][i] < 1e-6 and idinit["rank_fraction"][i] == 1.0
        assert kaiming["var_nonzero"][i] > 0.5
    assert kaiming["var_nonzero"][-1] > kaiming["var_nonzero"][0]


@pytest.mark.slow
def test_training_checkpoints_and_curves(quick_run):
    run = quick_run("depth")
    record, settings = run.record, run.record["settings"]
    short, long = settings["short_steps"], settings["long_steps"]
    train = record["numbers"]["train"]
    # Every training cell either contributed or is listed with its error.
    n_cells = sum(len(load_sweep(d).results) for d in _work(run).glob("train*"))
    n_rows = sum(len(c) for c in train["curves"].values())
    assert n_cells >= n_rows and all("error" in f for f in train["failed"])
    for name, by_scheme in train["long"].items():
        for scheme, s in by_scheme.items():
            diverged = train["curves"][name][scheme]["diverged_at"]
            want = [t for t in (0, short, long) if diverged is None or t < diverged]
            assert s["step"] == want, (name, scheme)
            drift = float(train["drift"][name][scheme])
            ends = [float(s["var_nonzero"][0]), float(s["var_nonzero"][-1])]
            undefined = diverged is not None or not all(map(math.isfinite, ends))
            assert math.isnan(drift) == undefined, (name, scheme)
    for name, curves in train["curves"].items():
        for scheme, c in curves.items():
            if c["diverged_at"] is None:
                assert c["step"][-1] == long - 1, (name, scheme)
            assert c["effective_lr"] == pytest.approx(c["lr"] / (1 - settings["momentum"]))
    # The trained models are probed at their logits: 10 rows of the Jacobian.
    results = load_sweep(_work(run) / f"train{long}-resnet")
    for cell in results.results:
        for profile in cell.record.train.checkpoints.values():
            assert profile.names == ["fc"] and profile.taps[-1].r == 10
    assert run.wall_s < 300


@pytest.mark.slow
def test_figures_are_written(quick_run):
    run = quick_run("depth")
    for stem in ("init_var_nonzero", "init_rank_fraction", "init_gap_nonzero", "train_loss"):
        assert run.figure(stem).stat().st_size > 10_000, stem
