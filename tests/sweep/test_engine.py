"""Sweeps on a real dask.distributed cluster against the serial path, and their failures."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from isokit.sweep import SweepDirError, load_sweep, parse_sweep, run_sweep
from tests.sweep.tasks import dying_once_at, failing_at, small_grid

#: Whether the user exported glibc's trim threshold (the workers then inherit it, rightly).
TRIM_EXPORTED = "MALLOC_TRIM_THRESHOLD_" in os.environ


@pytest.fixture(scope="module")
def cluster():
    """isokit's LocalCluster of 2 single-threaded worker processes, for the module's sweeps."""
    from isokit.sweep import local_cluster

    with local_cluster(2) as client:
        yield client.scheduler.address


def _runs(out) -> dict[str, dict]:
    """Every cell's run, without the timestamps that are the only thing two runs may differ in."""
    runs = {}
    for path in sorted(Path(out, "cells").glob("*.json")):
        data = json.loads(path.read_text())
        if data["run"] is not None and data["run"]["profile"] is not None:
            data["run"]["profile"]["meta"].pop("created")
        runs[data["key"]] = {"status": data["status"], "run": data["run"]}
    return runs


@pytest.mark.skipif(TRIM_EXPORTED, reason="MALLOC_TRIM_THRESHOLD_ is exported by the user")
def test_workers_start_without_dasks_malloc_trim_threshold(cluster):
    """Dask's nanny would start them with MALLOC_TRIM_THRESHOLD_=65536, which makes every
    reallocation of a training step page-fault (benchmarks/bench_worker_memory.py)."""
    from dask.distributed import Client

    with Client(cluster) as client:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert len(seen) == 2 and set(seen.values()) == {None}
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # nor exported into this process


def test_two_workers_give_exactly_the_serial_numbers(tmp_path, cluster):
    grid = parse_sweep(small_grid(schemes=["orthogonal", "idinit", "fixup"]))
    serial = run_sweep(grid, tmp_path / "serial", serial=True, quiet=True)
    dist = run_sweep(grid, tmp_path / "dask", scheduler=cluster, quiet=True)
    assert serial.computed == dist.computed == len(grid.cells) == 18
    a, b = _runs(tmp_path / "serial"), _runs(tmp_path / "dask")
    assert a == b and set(a) == {c.key for c in grid.cells}
    statuses = {r["status"] for r in a.values()}
    assert statuses == {"ok", "not applicable"}  # fixup needs residual branches
    workers = {json.loads(p.read_text())["worker"] for p in (tmp_path / "dask/cells").glob("*")}
    assert len(workers) == 2  # both processes took cells


def test_a_cell_that_raises_is_recorded_and_the_others_finish(tmp_path, cluster):
    grid = parse_sweep(small_grid())
    task = functools.partial(failing_at, depth=3)
    summary = run_sweep(grid, tmp_path, scheduler=cluster, quiet=True, task=task)
    assert summary.computed == len(grid.cells) and summary.failed == 4
    sweep = load_sweep(tmp_path)
    failed = [r for r in sweep.results if r.status == "error"]
    assert {r.axes["depth"] for r in failed} == {3}
    assert all(
        r.error["type"] == "ConfigError"
        and "max_memory" in r.error["traceback"] + r.error["message"]
        for r in failed
    )
    assert all(
        r.record is not None and r.record.profile is not None
        for r in sweep.results
        if r.status == "ok"
    )
    # a rerun retries nothing: failed cells are finished cells, with their error on record
    assert run_sweep(grid, tmp_path, scheduler=cluster, quiet=True).computed == 0


def test_a_killed_worker_loses_no_cell(tmp_path, cluster):
    grid = parse_sweep(small_grid())
    task = functools.partial(dying_once_at, depth=4, marker=str(tmp_path / "killed"))
    summary = run_sweep(grid, tmp_path / "out", scheduler=cluster, quiet=True, task=task)
    assert (tmp_path / "killed").exists()  # a worker did die mid-run
    assert summary.computed == len(grid.cells) and summary.failed == 0  # Dask reran its cell
    reference = run_sweep(grid, tmp_path / "serial", serial=True, quiet=True)
    assert reference.computed == len(grid.cells)
    assert _runs(tmp_path / "out") == _runs(tmp_path / "serial")


def test_a_rerun_computes_only_the_missing_cells(tmp_path):
    grid = parse_sweep(small_grid())
    run_sweep(grid, tmp_path, serial=True, quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json")}
    lost = sorted(before)[:5]
    for name in lost:
        (tmp_path / "cells" / name).unlink()
    again = run_sweep(grid, tmp_path, serial=True, quiet=True)
    assert (again.computed, again.skipped) == (5, len(grid.cells) - 5)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json")}
    assert {n for n in after if after[n] != before.get(n)} == set(lost)


def test_another_grid_in_the_same_directory_is_refused_unless_resumed(tmp_path):
    first = parse_sweep(small_grid())
    run_sweep(first, tmp_path, serial=True, quiet=True)
    second = parse_sweep(small_grid(depth=[3, 4, 5]))
    with pytest.raises(SweepDirError, match="holds another grid .12 cells.*8 in common"):
        run_sweep(second, tmp_path, serial=True, quiet=True)
    assert json.loads((tmp_path / "sweep.json").read_text())["grid"] == first.key  # untouched
    resumed = run_sweep(second, tmp_path, serial=True, quiet=True, resume=True)
    assert (resumed.computed, resumed.skipped) == (4, 8)  # only depth 5 is new
    assert load_sweep(tmp_path).grid_key == second.key


def test_a_directory_of_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepDirError, match="holds files but no sweep.json"):
        run_sweep(parse_sweep(small_grid()), tmp_path, serial=True, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
