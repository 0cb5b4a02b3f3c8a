"""The exact tier's time estimate and the automatic choice by time (``docs/probes.md §3.7``).

No assertion here reads the wall clock: the cost model is checked against hand-written formulas,
the calibration plumbing with a fake clock, and the choice with budgets far on either side of
any plausible estimate.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from isokit.models import MLP
from isokit.probe import calibration as cal
from isokit.probe import depth_profile, profile
from isokit.probe import timing as tm
from isokit.probe.options import ProbeOptions
from isokit.probe.prepare import prepare

RATES = tm.LinalgRates(macs_per_s=2e9, eigvalsh_s_per_r3=3e-9)


class FakeClock:
    """A timer that advances by ``step`` seconds per reading, counting its readings."""

    def __init__(self, step: float = 0.5) -> None:
        self.step, self.readings = step, 0

    def __call__(self) -> float:
        self.readings += 1
        return self.readings * self.step


# ------------------------------------------------------------------------------ the cost model


def _hand_cost(n_in, dims, n_examples, column_s, rates, rev=()):
    """The formula written out per tap: columns, max(D, n)·r² multiply-adds, r³."""
    cols = n_in + sum(dims[i] for i in rev)
    grams = eig = 0.0
    for d in dims:
        r = min(d, n_in)
        grams += (d if d > n_in else n_in) * r * r
        eig += r * r * r
    return (
        n_examples * cols * column_s,
        n_examples * grams / rates.macs_per_s,
        n_examples * eig * rates.eigvalsh_s_per_r3,
    )


@pytest.mark.parametrize(
    ("n_in", "dims", "rev"),
    [
        (64, [64, 64, 64], ()),  # square taps: n³ Grams
        (32, [512, 256, 128], ()),  # wide taps: A = JᵀJ, D·n² each
        (256, [128, 256, 40], (2,)),  # narrow first tap (B = JJᵀ), a reverse-mode logit tap
    ],
)
def test_exact_cost_matches_the_formula_tap_by_tap(n_in, dims, rev):
    got = tm.exact_cost(n_in, dims, n_examples=3, column_s=2e-4, rates=RATES)
    want = _hand_cost(n_in, dims, 3, 2e-4, RATES, rev)
    assert (got.tangents_s, got.grams_s, got.eigvalsh_s) == pytest.approx(want, rel=1e-12)
    assert got.seconds == pytest.approx(sum(want), rel=1e-12)


def test_exact_cost_scales_with_inputs_examples_and_ranks():
    dims = [4096, 4096, 2048]  # every tap wider than n_in, even doubled: r = n_in
    one = tm.exact_cost(256, dims, n_examples=1, column_s=1e-3, rates=RATES)
    two = tm.exact_cost(512, dims, n_examples=1, column_s=1e-3, rates=RATES)
    assert two.tangents_s == pytest.approx(2 * one.tangents_s)  # n_in tangent columns
    assert two.grams_s == pytest.approx(4 * one.grams_s)  # D·r², r = n_in
    assert two.eigvalsh_s == pytest.approx(8 * one.eigvalsh_s)  # r³
    four = tm.exact_cost(256, dims, n_examples=4, column_s=1e-3, rates=RATES)
    parts = ("tangents_s", "grams_s", "eigvalsh_s")
    assert [getattr(four, p) for p in parts] == pytest.approx([4 * getattr(one, p) for p in parts])
    # Output-side taps (D < n_in): the rank is D, so doubling n_in doubles the Gram and keeps
    # the eigvalsh part.
    small = tm.exact_cost(1024, [128, 256], n_examples=1, column_s=1e-3, rates=RATES)
    big = tm.exact_cost(2048, [128, 256], n_examples=1, column_s=1e-3, rates=RATES)
    assert big.grams_s == pytest.approx(2 * small.grams_s)
    assert big.eigvalsh_s == pytest.approx(small.eigvalsh_s)


def test_exact_cost_with_svd_counts_the_bidiagonalization_twice():
    gram = tm.exact_cost(64, [128, 64], n_examples=2, column_s=1e-4, rates=RATES)
    svd = tm.exact_cost(64, [128, 64], n_examples=2, column_s=1e-4, rates=RATES, svd=True)
    assert svd.grams_s == pytest.approx(2 * gram.grams_s)
    assert (svd.tangents_s, svd.eigvalsh_s) == (gram.tangents_s, gram.eigvalsh_s)


def test_describe_names_every_part():
    text = tm.ExactCost(tangents_s=12.0, grams_s=3.25, eigvalsh_s=0.5).describe()
    assert text == "~15.8 s (tangent pass 12 s, Grams 3.25 s, eigvalsh 0.5 s)"


# ------------------------------------------------------------------------------ calibration


def test_linalg_rates_divide_the_calibration_work_by_its_time():
    clock = FakeClock(step=0.25)  # every timed call lasts 0.25 s
    rates = cal.measure_linalg_rates("cpu", timer=clock)
    rows, cols = cal._MM_SHAPE
    assert rates.macs_per_s == pytest.approx(rows * cols * cols / 0.25)
    # The faster per r³ of the two sizes: the larger one, at equal times.
    assert rates.eigvalsh_s_per_r3 == pytest.approx(0.25 / max(cal._EIG_SIZES) ** 3)
    assert clock.readings == 2 * 3 * cal._REPEATS  # two readings per timing, 5 per kernel


def test_a_stalled_eigvalsh_size_does_not_set_the_rate():
    # The 128 × 128 solves all stall (1 s each); the 64 × 64 ones take 0.25 ms.
    durations = iter([1e-3] * 5 + [0.25e-3] * 5 + [1.0] * 5)
    now = [0.0]
    readings = itertools.count()

    def clock() -> float:
        if next(readings) % 2:  # the end of a timing
            now[0] += next(durations)
        return now[0]

    rates = cal.measure_linalg_rates("cpu", timer=clock)
    assert rates.eigvalsh_s_per_r3 == pytest.approx(0.25e-3 / 64**3)


def test_linalg_rates_are_measured_once_per_device():
    assert cal.linalg_rates("cpu") is cal.linalg_rates(torch.device("cpu"))
    rates = cal.linalg_rates("cpu")
    assert rates.macs_per_s > 0 and rates.eigvalsh_s_per_r3 > 0


class ScriptClock:
    """Readings of a timed call of k columns as given by ``calls`` (seconds per call, in the
    order of the calls), each tap's mark an equal share of the call; the untimed warm-up calls
    (one per size: 1 column, and k when k > 1) read 0."""

    def __init__(self, n_taps: int, calls: list[float]) -> None:
        self.values: list[float] = [0.0] * n_taps * len(calls)
        for c, seconds in enumerate(calls):
            start = 10.0 * (c + 1)
            marks = [start + seconds * (i + 1) / (n_taps + 1) for i in range(n_taps)]
            self.values += [start, *marks, start + seconds]
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return self.values[self.readings - 1]

    @property
    def done(self) -> bool:
        return self.readings == len(self.values)


def _column_time(n_in: int, depth: int, clock) -> cal.ColumnTime:
    model = MLP(n_in, 8, depth=depth).double()
    return cal.column_time(model, list(model.acts), torch.randn(n_in).double(), timer=clock)


def test_column_time_splits_the_time_into_calls_and_columns():
    # One column 0.4 s, eight columns 1.2 s: 0.8 s for 7 more columns, the rest per call.
    clock = ScriptClock(3, [0.4, 1.2])
    t = _column_time(32, 3, clock)
    assert clock.done
    assert t.seconds == pytest.approx(0.8 / 7) and t.call_s == pytest.approx(0.4 - 0.8 / 7)
    assert t.fractions == pytest.approx((1 / 3, 2 / 3, 1.0))  # marks at 1/4, 2/4, 3/4 of 4/4


def test_column_time_of_few_inputs_times_them_all():
    clock = ScriptClock(2, [0.4, 0.6])  # n_in = 5 < 8: one column, then all five
    t = _column_time(5, 2, clock)
    assert clock.done
    assert t.seconds == pytest.approx(0.2 / 4) and t.call_s == pytest.approx(0.4 - 0.2 / 4)


def test_column_time_of_contradicting_timings_charges_every_column():
    clock = ScriptClock(2, [0.5, 0.3])  # eight columns faster than one: a stall in the first
    t = _column_time(8, 2, clock)
    assert clock.done and t.seconds == pytest.approx(0.3 / 8) and t.call_s == 0
    one = _column_time(1, 2, ScriptClock(2, [0.5]))  # a single input: one call, one column
    assert one.seconds == pytest.approx(0.5) and one.call_s == 0


def test_the_estimate_of_a_prepared_probe_uses_its_sizes(monkeypatch):
    monkeypatch.setattr(tm, "linalg_rates", lambda device: RATES)
    column = cal.ColumnTime(seconds=0.01, fractions=(0.25, 0.5, 0.75, 1.0), call_s=0.3)
    seen = []
    monkeypatch.setattr(tm, "column_time", lambda *a, **k: seen.append(k) or column)
    model = MLP(16, 24, depth=3, out_features=2)
    with prepare(model, torch.randn(5, 16), ProbeOptions()) as prep:
        cost = tm.estimate_exact_cost(prep)
        dims = prep.dims
    assert dims == [24, 24, 24, 2] and len(seen) == 1  # far from any budget: timed once
    # The logit tap (4·2 ≤ 16) is done in reverse mode: 2 more columns, 5·18 in all, in one
    # call of at most 256.
    want = _hand_cost(16, dims, 5, 0.01, RATES, rev=(3,))
    assert cost.tangents_s == pytest.approx(want[0] + 0.3)
    assert (cost.grams_s, cost.eigvalsh_s) == pytest.approx(want[1:], rel=1e-12)
    assert cost.column is column


def test_the_call_overhead_is_paid_once_per_256_columns():
    col = dict(column_s=0.0, rates=RATES, call_s=1.0)
    assert tm.exact_cost(100, [400], n_examples=2, **col).tangents_s == 1.0  # 200 columns
    assert tm.exact_cost(100, [400], n_examples=3, **col).tangents_s == 2.0  # 300
    assert tm.exact_cost(3072, [16384], n_examples=1, **col).tangents_s == 12.0


def test_an_estimate_close_to_the_budget_is_timed_again(monkeypatch):
    monkeypatch.setattr(tm, "linalg_rates", lambda device: RATES)
    slow, fast = (cal.ColumnTime(seconds=s, fractions=(0.5, 1.0)) for s in (0.2, 0.1))
    timings = []

    def timed(*args, repeats=1, **kwargs):
        timings.append(repeats)
        return slow if len(timings) == 1 else fast

    monkeypatch.setattr(tm, "column_time", timed)
    with prepare(MLP(16, 16, depth=2), torch.randn(1, 16), ProbeOptions()) as prep:
        near = tm.estimate_exact_cost(prep, budget=16 * 0.2)  # the tangent pass alone: 3.2 s
        assert timings == [1, 2] and near.column is fast  # the fastest timing kept
        timings.clear()
        tm.estimate_exact_cost(prep, budget=1000.0)
        assert timings == [1]


def test_lanczos_cost_prices_moments_once_and_slq_by_prefix_and_steps():
    col = cal.ColumnTime(seconds=2e-3, fractions=(0.25, 0.5, 1.0), call_s=0.05)
    cost = tm.lanczos_cost(64, [128, 32, 10], n_examples=3, column=col, n_probes=8, steps=20)
    # One call of K tangents per example, all taps at once.
    assert cost.moments_s == pytest.approx(3 * (0.05 + 8 * 2e-3))
    # Steps capped by r = min(D, n_in): 20, 20, 10; per step a Jv and a Jᵀu call of K vectors.
    step = 2 * 0.05 + tm.SLQ_PASSES * 8 * 2e-3
    want = [3 * m * f * step for m, f in ((20, 0.25), (20, 0.5), (10, 1.0))]
    assert [cost.slq_s[i] for i in range(3)] == pytest.approx(want)


def test_slq_taps_within_a_budget_are_the_cheapest_that_fit():
    cost = tm.LanczosCost(moments_s=1.0, slq_s={0: 1.0, 1: 4.0, 2: 2.0, 3: 0.5})
    assert cost.within([0, 1, 2, 3], 100.0) == [0, 1, 2, 3]
    assert cost.within([0, 1, 2, 3], 4.6) == [0, 2, 3]  # 0.5 + 1 + 2 after the moments
    assert cost.within([1, 2], 4.6) == [2]
    assert cost.within([0, 1, 2, 3], 0.5) == []  # the moments alone are over


# ------------------------------------------------------------------------------ the choice


def _refuse(*args, **kwargs):
    raise AssertionError("must not be called here")


def test_auto_over_the_time_budget_uses_lanczos_and_says_why(monkeypatch):
    monkeypatch.setattr(depth_profile, "exact_spectra", _refuse)  # decided before any sweep
    model = MLP(12, 12, depth=3, activation="tanh")
    prof = profile(model, torch.randn(2, 12), max_seconds=1e-9, n_probes=4, lanczos_steps=4)
    meta = prof.meta
    assert meta["method"] == "lanczos" and {t.method for t in prof.taps} == {"lanczos"}
    est = meta["exact_estimate_s"]
    assert est > 1e-9
    reason = meta["method_reason"]
    assert reason.startswith("auto: exact would take") and "max_seconds=1e-09 s" in reason
    assert f"~{est:.3g} s" in reason and "tangent pass" in reason and "eigvalsh" in reason
    # No SLQ tap fits a nanosecond: the moments alone, at every tap, and the reason says so.
    assert meta["lanczos"]["slq_taps"] == [] and "SLQ at 0 of the 3 default" in reason
    assert all(t.density is None for t in prof.taps)


def test_auto_over_budget_keeps_the_default_slq_taps_that_fit(monkeypatch):
    # A fixed estimate: 1 ms per column, taps at 1/4, 2/4, 3/4 and all of the forward pass.
    column = cal.ColumnTime(seconds=1e-3, fractions=(0.25, 0.5, 0.75, 1.0))
    slow = tm.ExactCost(tangents_s=1.0, grams_s=0.0, eigvalsh_s=0.0, column=column)
    monkeypatch.setattr(depth_profile, "estimate_exact_cost", lambda prep, budget: slow)
    model = MLP(8, 8, depth=4, activation="tanh")
    opts = {"n_probes": 4, "lanczos_steps": 4}
    # Default SLQ taps of 4: depths 1, 2, 4 at 3·4·4·f ms each (12, 24, 48 ms) after 4 ms of
    # moments: 45 ms leave room for depths 1 and 2.
    prof = profile(model, torch.randn(1, 8), max_seconds=0.045, **opts)
    assert prof.meta["lanczos"]["slq_taps"] == ["acts.0", "acts.1"]
    assert "SLQ at 2 of the 3 default SLQ taps" in prof.meta["method_reason"]
    assert [t.density is not None for t in prof.taps] == [True, True, False, False]
    roomy = profile(model, torch.randn(1, 8), max_seconds=0.5, **opts)
    assert roomy.meta["lanczos"]["slq_taps"] == ["acts.0", "acts.1", "acts.3"]
    assert "SLQ at" not in roomy.meta["method_reason"]
    chosen = profile(model, torch.randn(1, 8), max_seconds=0.045, slq_taps=[4], **opts)
    assert chosen.meta["lanczos"]["slq_taps"] == ["acts.3"]  # the caller's choice is kept
    assert "SLQ at" not in chosen.meta["method_reason"]


def test_auto_within_the_time_budget_stays_exact():
    prof = profile(MLP(8, 8, depth=2, activation="tanh"), torch.randn(2, 8), max_seconds=1e6)
    assert prof.meta["method"] == "exact" and "exact_estimate_s" not in prof.meta
    assert prof.meta["method_reason"].startswith("auto: fits max_seconds=1e+06 s; ")


def test_without_a_time_budget_auto_chooses_by_memory_alone(monkeypatch):
    monkeypatch.setattr(depth_profile, "estimate_exact_cost", _refuse)  # no timing at all
    model = MLP(10, 12, depth=3)
    x = torch.randn(2, 10)
    fits = profile(model, x, max_seconds=None)
    assert fits.meta["method"] == "exact" and "exact_estimate_s" not in fits.meta
    assert fits.meta["method_reason"].startswith("auto: ") and "max_seconds" not in str(fits.meta)
    tight = profile(model, x, max_seconds=None, max_memory=1000, n_probes=4, lanczos_steps=4)
    assert tight.meta["method"] == "lanczos" and "does not fit" in tight.meta["method_reason"]


def test_exact_is_never_switched_by_the_time_budget(monkeypatch):
    monkeypatch.setattr(depth_profile, "estimate_exact_cost", _refuse)
    prof = profile(MLP(8, 8, depth=2), torch.randn(1, 8), method="exact", max_seconds=1e-9)
    assert prof.meta["method"] == "exact" and prof.meta["method_reason"].startswith("requested")


def test_lanczos_requested_runs_no_estimate(monkeypatch):
    monkeypatch.setattr(depth_profile, "estimate_exact_cost", _refuse)
    opts = {"n_probes": 4, "lanczos_steps": 4, "max_seconds": 1e-9}
    prof = profile(MLP(8, 8, depth=2), torch.randn(1, 8), method="lanczos", **opts)
    assert prof.meta["method_reason"] == "requested"


def test_the_time_budget_is_checked_before_the_memory_plan(monkeypatch):
    # Both budgets exceeded: the reason is the time, which costs no sweep to find out.
    monkeypatch.setattr(depth_profile, "exact_spectra", _refuse)
    opts = {"max_seconds": 1e-9, "max_memory": 1000, "n_probes": 4, "lanczos_steps": 4}
    prof = profile(MLP(8, 8, depth=2), torch.randn(1, 8), **opts)
    assert "max_seconds" in prof.meta["method_reason"]


def test_with_start_the_estimate_counts_the_start_outputs_as_inputs(monkeypatch):
    monkeypatch.setattr(tm, "linalg_rates", lambda device: RATES)
    model = MLP(6, 10, depth=3, activation="tanh")
    x = torch.randn(2, 6)
    clock = ScriptClock(2, [0.4, 1.2])  # the two taps after acts.0 are timed, on its outputs
    with prepare(model, x, ProbeOptions(start="acts.0")) as prep:
        cost = tm.estimate_exact_cost(prep, timer=clock)
        assert prep.dims == [10, 10]
    assert clock.done
    # n_in = 10 (the output of acts.0): 2·10 columns at 0.8/7 s, in one call.
    want = _hand_cost(10, [10, 10], 2, 0.8 / 7, RATES)
    assert cost.tangents_s == pytest.approx(want[0] + 0.4 - 0.8 / 7)
    assert (cost.grams_s, cost.eigvalsh_s) == pytest.approx(want[1:])
    lanczos = profile(model, x, start="acts.0", max_seconds=1e-9, n_probes=4, lanczos_steps=4)
    exact = profile(model, x, start="acts.0", max_seconds=1e6)
    assert (lanczos.meta["method"], exact.meta["method"]) == ("lanczos", "exact")
    assert lanczos.meta["n_in"] == 10 and lanczos.names == exact.names == ["acts.1", "acts.2"]


def test_over_the_memory_budget_the_slq_taps_still_fit_the_time_budget(monkeypatch):
    column = cal.ColumnTime(seconds=1e-3, fractions=(0.25, 0.5, 0.75, 1.0))
    fast = tm.ExactCost(tangents_s=1e-3, grams_s=0.0, eigvalsh_s=0.0, column=column)
    monkeypatch.setattr(depth_profile, "estimate_exact_cost", lambda prep, budget: fast)
    model = MLP(8, 8, depth=4, activation="tanh")
    opts = {"n_probes": 4, "lanczos_steps": 4, "max_memory": 1000}
    prof = profile(model, torch.randn(1, 8), max_seconds=0.045, **opts)  # as above: 2 fit
    reason = prof.meta["method_reason"]
    assert reason.startswith("auto: exact does not fit") and "SLQ at 2 of the 3" in reason
    assert prof.meta["lanczos"]["slq_taps"] == ["acts.0", "acts.1"]
    assert "exact_estimate_s" not in prof.meta  # the memory decided, not the time
