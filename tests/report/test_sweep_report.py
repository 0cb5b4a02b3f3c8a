"""The sweep report: its numbers against the cells' own Profiles and TrainResults, its theory
against isokit.theory evaluated by hand, its page and files through `isokit report --from DIR`."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from isokit.cli import main
from isokit.report.io import ReportDir
from isokit.report.series import RANK_STATS
from isokit.report.sweep_page import SWEEP_CSV, publish_sweep
from isokit.report.sweep_series import axis_series, groups, map_axes, train_map
from isokit.sweep import load_sweep, parse_sweep, run_cell, run_sweep

PROBE_SWEEP = {
    "title": "probe sweep <b>",
    "inputs": {"examples": 2},
    "models": [{"kind": "mlp", "in_features": 16, "activation": "tanh"}],
    "sweep": {
        "depth": [2, 4],
        "width": [16, 32],
        "schemes": ["orthogonal", "kaiming-normal", "idinit"],
        "seeds": [0, 1],
    },
}
TRAIN_SWEEP = {
    "title": "train sweep",
    "inputs": {"examples": 2},
    "models": [
        {"kind": "mlp", "in_features": 64, "width": 16, "out_features": 10, "activation": "tanh"}
    ],
    "train": {
        "data": "digits",
        "optimizer": "sgd",
        "lr": 0.2,
        "batch_size": 64,
        "steps": 6,
        "eval_every": 2,
        "target_accuracy": 0.25,
        "probe_examples": 2,
    },
    "sweep": {
        "depth": [2, 4],
        "schemes": ["orthogonal", "idinit"],
        "option.gain": [0.5, 1.5],
        "seeds": [0, 1],
    },
}
#: The probe sweep's cell that fails (a device torch does not know) and the one left unrun.
FAILING = {"width": 32, "depth": 4, "scheme": "kaiming-normal", "seed": 1}
MISSING = {"width": 32, "depth": 2, "scheme": "idinit", "seed": 0}


def _is(axes: dict, want: dict) -> bool:
    return all(axes.get(k) == v for k, v in want.items())


def _task(cell):
    return run_cell(cell, device="no-such-device" if _is(cell.axes, FAILING) else None)


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "probe"
    grid = parse_sweep(PROBE_SWEEP)
    run_sweep(grid, out, serial=True, quiet=True, task=_task)
    (missing,) = [c for c in grid.cells if _is(c.axes, MISSING)]
    (out / "cells" / f"{missing.key}.json").unlink()
    return out


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "train"
    run_sweep(parse_sweep(TRAIN_SWEEP), out, serial=True, quiet=True)
    return out


@pytest.fixture(scope="module")
def probe_report(probe_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "rep"
    assert main(["report", "--from", str(probe_dir), "--out", str(out), "--quiet"]) == 0
    return out


def _narrow(sweep):
    """The sweep's width-16 cells only: one depth figure, a fast render."""
    return replace(
        sweep,
        cells=[c for c in sweep.cells if c["axes"]["width"] == 16],
        results=[r for r in sweep.results if r.axes["width"] == 16],
    )


def _quantile(values: np.ndarray, q: float) -> float:
    """The inverted-CDF quantile (the report's rule), written out: the ⌈q·n⌉-th smallest."""
    v = np.sort(values)
    return float(v[max(math.ceil(q * v.size), 1) - 1])


def _members(sweep, fixed: dict, **want):
    return [
        r
        for r in sweep.results
        if r.status == "ok"
        and all(r.axes.get(k, v) == v for k, v in fixed.items())
        and _is(r.axes, want)
    ]


@pytest.mark.parametrize("axis", ["depth", "width"])
def test_axis_data_are_medians_of_the_cells_last_taps(probe_dir, axis):
    sweep = load_sweep(probe_dir)
    found = [axis_series(g, axis) for g in groups(sweep, [axis])]
    other = "width" if axis == "depth" else "depth"
    assert sorted(s.group.fixed[other] for s in found) == ([2, 4] if axis == "width" else [16, 32])
    points, used = 0, 0
    for s in found:
        assert {c.scheme for c in s.curves} == {"orthogonal", "kaiming-normal", "idinit"}
        for curve in s.curves:
            for i, x in enumerate(curve.depth):
                cells = _members(sweep, s.group.fixed, scheme=curve.scheme, **{axis: int(x)})
                assert cells and all(c.record.profile.names[-1] == curve.names[i] for c in cells)
                points, used = points + 1, used + len(cells)
                for stat in RANK_STATS:
                    pooled = np.concatenate([c.record.profile.stat(stat, None)[-1] for c in cells])
                    assert curve.median(stat)[i] == _quantile(pooled, 0.5), (stat, x)
                    lo, hi = curve.band(stat)
                    assert (lo[i], hi[i]) == (_quantile(pooled, 0.1), _quantile(pooled, 0.9))
    # Every cell that ran is in one point; the failed and the missing one in none.
    assert points == 2 * 2 * 3
    assert used == sum(r.status == "ok" for r in sweep.results) == 2 * 2 * 3 * 2 - 2


def test_theory_line_is_the_theory_at_each_depth(probe_dir):
    from isokit.theory import Chain, WeightLaw, overlay

    sweep = load_sweep(probe_dir)
    (series,) = [
        axis_series(g, "depth") for g in groups(sweep, ["depth"]) if g.fixed["width"] == 16
    ]
    # Orthogonal weights have σ_w² = 1 by construction; kaiming-normal's default gain is √2.
    laws = {
        "orthogonal": WeightLaw(sigma_w2=1.0, sigma_b2=0.0, ensemble="orthogonal"),
        "kaiming-normal": WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian"),
    }
    for curve in series.curves:
        theory = series.theory[curve.scheme]
        for i, depth in enumerate(curve.depth.tolist()):
            if curve.scheme == "idinit":
                assert np.isnan(theory["m1"][i]) and np.isnan(theory["var"][i])
                continue
            taps = [f"acts.{k}" for k in range(depth)]
            chain = Chain(layer="dense", activation="tanh", width=16, in_width=16, depth=depth,
                          fan_in=16, bias=True, taps=taps)  # fmt: skip
            line = overlay(chain, laws[curve.scheme], taps=taps, input_second_moment=1.0)
            assert theory["m1"][i] == pytest.approx(line.m1[-1], rel=1e-12)
            assert theory["var"][i] == pytest.approx(line.var[-1], rel=1e-12)
    reasons = {(scheme, x) for scheme, x, _ in series.reasons}
    assert reasons == {("idinit", 2), ("idinit", 4)}
    # The input width differs from 32: the theory draws nothing there and says why.
    (wide,) = [axis_series(g, "depth") for g in groups(sweep, ["depth"]) if g.fixed["width"] == 32]
    assert all(np.isnan(t["m1"]).all() for t in wide.theory.values())
    assert any("differs from the width" in reason for _, _, reason in wide.reasons)


def test_map_values_are_the_cells_train_results(train_dir):
    sweep = load_sweep(train_dir)
    x, y = map_axes(sweep)
    assert (x, y) == ("depth", "option.gain")
    (group,) = groups(sweep, [x, y])
    seen = 0
    for scheme in ("orthogonal", "idinit"):
        m = train_map(group, scheme, x, y)
        assert m.xs == [2, 4]
        assert m.ys == ([0.5, 1.5] if scheme == "orthogonal" else [None])
        for i, gain in enumerate(m.ys):
            for j, depth in enumerate(m.xs):
                want = {"scheme": scheme, "depth": depth} | ({} if gain is None else {y: gain})
                runs = [c.record.train for c in _members(sweep, {}, **want)]
                assert len(runs) == 2 and m.runs[i, j] == 2
                steps = [math.inf if t.steps_to_target is None else t.steps_to_target for t in runs]
                assert m.steps[i, j] == np.median(steps)
                kept = [t.final_accuracy for t in runs if t.diverged_at is None]
                assert m.final[i, j] == (np.median(kept) if kept else pytest.approx(np.nan))
                assert m.diverged[i, j] == sum(t.diverged_at is not None for t in runs)
                seen += 1
    assert seen == 6


def test_xi_c_on_the_map_is_depth_scales(train_dir):
    from isokit.init import get_scheme
    from isokit.theory import depth_scales

    sweep = load_sweep(train_dir)
    (group,) = groups(sweep, ["depth", "option.gain"])
    m = train_map(group, "orthogonal", "depth", "option.gain")
    at_rows = [p for p in m.xi if p.row == int(p.row)]
    assert [p.y for p in at_rows] == [0.5, 1.5]
    assert len(m.xi) > len(at_rows)  # the curve also runs between the rows
    for p in m.xi:
        assert p.sigma_w2 == pytest.approx(p.y**2)  # orthogonal × gain: σ_w² = gain²
        law = get_scheme("orthogonal").weight_law({"gain": p.y}, fan_in=16, bias=True)
        want = depth_scales(act="tanh", sw2=law.sigma_w2, sb2=law.sigma_b2).xi_c.value
        assert p.xi_c == want
    assert train_map(group, "idinit", "depth", "option.gain").xi == []  # no i.i.d. law


def test_page_lists_failed_cells_and_missing_count(probe_dir, probe_report):
    sweep = load_sweep(probe_dir)
    assert sweep.missing == 1
    (failed,) = [r for r in sweep.results if r.status == "error"]
    page = (probe_report / "report.html").read_text()
    assert "<b>1 missing</b>" in page
    assert "Failed cells" in page and failed.error["type"] in page
    assert failed.error["message"][:40].replace("'", "&#x27;") in page
    assert "model = mlp, depth = 4, width = 32, scheme = kaiming-normal, seed = 1" in page
    assert "probe sweep &lt;b&gt;" in page  # the title is escaped


def _digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_cli_renders_the_depth_and_width_figures(probe_dir, probe_report):
    out = probe_report
    figures = sorted(p.name for p in (out / "figures").iterdir())
    want = [f"{a}_mlp-{b}.{f}" for a, b in (("depth", "width-16"), ("depth", "width-32"),
            ("width", "depth-2"), ("width", "depth-4")) for f in ("png", "svg")]  # fmt: skip
    assert figures == sorted(want)
    page = (out / "report.html").read_text()
    assert all(f"id='{name.split('.')[0]}'" in page for name in want)
    rows = (out / SWEEP_CSV).read_text().splitlines()
    head = ["key", "model", "depth", "width", "scheme", "seed", "status", "tap"]
    assert rows[0].split(",")[:8] == head
    ok = sum(r.status == "ok" for r in load_sweep(probe_dir).results)
    assert len(rows) == 1 + ok * 14 + 1  # 14 statistics per probed cell, one row for the failed


def test_cli_renders_the_trainability_map(train_dir, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", "--from", str(train_dir), "--out", str(out), "--quiet"]) == 0
    names = {p.name for p in (out / "figures").iterdir()}
    assert {"trainability_mlp.png", "trainability_mlp.svg"} <= names
    assert "Depth scales of the maps" in (out / "report.html").read_text()
    header, first, *_ = (out / SWEEP_CSV).read_text().splitlines()
    assert header.endswith("final_accuracy,final_loss,steps_to_target,diverged_at")
    key = first.split(",")[0]
    (cell,) = [r for r in load_sweep(train_dir).results if r.key == key]
    assert first.split(",")[-4:-2] == [repr(cell.record.train.final_accuracy),
                                       repr(cell.record.train.final_loss)]  # fmt: skip


def test_a_results_file_still_takes_the_normal_path(tmp_path):
    from isokit.report.config import parse_config
    from isokit.report.run import run_config

    model = {"kind": "mlp", "in_features": 4, "width": 4, "depth": 2}
    cfg = parse_config({"schemes": ["orthogonal"], "inputs": {"examples": 1}, "models": [model]})
    (tmp_path / "results.json").write_text(run_config(cfg, quiet=True).to_json())
    out = tmp_path / "rep"
    assert (
        main(["report", "--from", str(tmp_path / "results.json"), "--out", str(out), "--quiet"])
        == 0
    )
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "summary.csv", "ranking.csv", "report.html"} <= names
    assert SWEEP_CSV not in names


def test_a_failed_render_leaves_out_as_it_was(probe_dir, tmp_path, monkeypatch):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.html").write_text("the earlier report")
    (out / "figures").mkdir()
    (out / "figures" / "old.png").write_bytes(b"png")
    before = _digest(out)
    write, written = ReportDir.write, []

    def broken(self, name, data):  # the page fails after sweep.csv and the figures are staged
        if name == "report.html":
            raise OSError("disk full")
        written.append(name)
        return write(self, name, data)

    monkeypatch.setattr(ReportDir, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        publish_sweep(ReportDir(out), _narrow(load_sweep(probe_dir)), quiet=True)
    assert SWEEP_CSV in written and "figures/depth_mlp.png" in written
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no staging left behind


def test_a_sweep_report_can_be_rendered_again_into_the_same_out(probe_dir, tmp_path):
    sweep = _narrow(load_sweep(probe_dir))
    publish_sweep(ReportDir(tmp_path / "rep"), sweep, quiet=True)
    publish_sweep(ReportDir(tmp_path / "rep"), sweep, quiet=True)
    assert (tmp_path / "rep" / SWEEP_CSV).is_file()


def test_coincident_curves_stay_visible_the_earlier_scheme_drawn_wider():
    # IDInit and ZerO give the same spectra on square MLPs; drawn in config order, the later
    # line would hide the earlier one at equal width.
    from isokit.report.style import Palette

    palette = Palette(("idinit", "orthogonal", "zero"))
    widths = [palette.width(s) for s in palette.schemes]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 3
    assert widths[-1] >= 1.5 and palette.width("not-in-config") == 1.8
