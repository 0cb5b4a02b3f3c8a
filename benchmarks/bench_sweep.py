"""Benchmark of ``isokit.sweep.run_sweep``: a grid serially against a LocalCluster of 2 workers.

Run ``python benchmarks/bench_sweep.py [--quick] [--cells 24] [--depth 256] [--rounds 3]
[--noop-cells 200] [--json out.json]``.

Cases, each in fresh sweep directories, rounds interleaved (serial, cluster, serial, ...) so that
a change of load on a shared machine hits both:

- **real cells**: ``--cells`` cells of a tanh MLP (width 64, ``--depth`` layers, 4 examples,
  exact probes), about a second each on this machine: once with ``serial=True`` (one process,
  the reference) and once on a ``LocalCluster`` of 2 single-threaded worker processes. The
  cluster is started once per round and warmed up on 4 cells (new processes import isokit and
  run a first probe slowly, which the serial path paid in its own warm-up), both timed apart:
  the throughput is cells per second of ``run_sweep`` on a running cluster (what a long sweep
  sees), and the end-to-end ratio with the start and warm-up is printed too. Target: cluster
  ≥ 1.7× serial.
- **no-op cells**: ``--noop-cells`` cells whose task returns a finished payload at once, so that
  the time per cell is the sweep machinery alone: expansion into cells, the directory check,
  submission and scheduling, the transfer of the payload, its atomic write and the progress
  bookkeeping. Target: under 50 ms per cell.

It prints medians over the rounds and the ratios. This is a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import isokit
from isokit.sweep import local_cluster, parse_sweep, run_sweep


def grid_of(cells: int, depth: int):
    """A grid of ``cells`` exact probes of a tanh MLP: seeds × two schemes."""
    seeds = list(range(max(1, cells // 2)))
    return parse_sweep(
        {
            "method": "exact",
            "inputs": {"examples": 4},
            "models": [{"kind": "mlp", "in_features": 64, "width": 64, "activation": "tanh"}],
            "sweep": {"depth": [depth], "schemes": ["orthogonal", "idinit"], "seeds": seeds},
        }
    )


def noop(cell) -> dict:
    """A finished payload of ``cell`` with nothing computed (pickled by value into workers)."""
    return {
        "schema": "isokit.sweep.cell/1",
        "key": cell.key,
        "axes": dict(cell.axes),
        "config": cell.config,
        "status": "error",
        "run": None,
        "error": {"type": "Noop", "message": "benchmark", "traceback": ""},
        "elapsed_s": 0.0,
        "environment": {},
        "worker": "",
    }


def timed_sweep(grid, *, task=None, scheduler=None, serial=False) -> float:
    kwargs = {} if task is None else {"task": task}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = run_sweep(grid, out, scheduler=scheduler, serial=serial, quiet=True, **kwargs)
        elapsed = time.perf_counter() - start
    assert summary.computed == len(grid.cells), summary
    return elapsed


def one_round(grid, noop_grid, warm_grid) -> dict[str, float]:
    times = {"serial": timed_sweep(grid, serial=True)}
    times["noop_serial"] = timed_sweep(noop_grid, task=noop, serial=True)
    start = time.perf_counter()
    with local_cluster(2) as client:
        times["cluster_start"] = time.perf_counter() - start
        address = client.scheduler.address
        # New worker processes import isokit and run their first probe slowly; the serial
        # path paid that in its warm-up, so the cluster's workers get theirs too (timed).
        times["cluster_warmup"] = timed_sweep(warm_grid, scheduler=address)
        times["cluster"] = timed_sweep(grid, scheduler=address)
        times["noop_cluster"] = timed_sweep(noop_grid, task=noop, scheduler=address)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (small grids, 1 round)")
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--depth", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--noop-cells", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.cells, args.depth, args.rounds, args.noop_cells = 6, 8, 1, 40
    torch.set_num_threads(1)
    grid = grid_of(args.cells, args.depth)
    noop_grid = grid_of(args.noop_cells, 2)
    start = time.perf_counter()
    per_cell = timed_sweep(grid_of(2, args.depth), serial=True) / 2
    print(f"one cell (serial, warm-up): {per_cell:.2f} s; {len(grid.cells)} cells per sweep")
    warm_grid = grid_of(4, args.depth)
    rounds = [one_round(grid, noop_grid, warm_grid) for _ in range(args.rounds)]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    n, m = len(grid.cells), len(noop_grid.cells)
    result = {
        "cells": n,
        "depth": args.depth,
        "rounds": args.rounds,
        "medians_s": med,
        "serial_cells_per_s": n / med["serial"],
        "cluster_cells_per_s": n / med["cluster"],
        "throughput_ratio": med["serial"] / med["cluster"],
        "end_to_end_ratio": med["serial"]
        / (med["cluster"] + med["cluster_start"] + med["cluster_warmup"]),
        "noop_cells": m,
        "overhead_ms_serial": 1e3 * med["noop_serial"] / m,
        "overhead_ms_cluster": 1e3 * med["noop_cluster"] / m,
        "rounds_s": rounds,
        "environment": {
            "isokit": isokit.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        },
        "wall_s": time.perf_counter() - start,
    }
    print(
        f"real cells: serial {med['serial']:.1f} s ({result['serial_cells_per_s']:.2f} cells/s), "
        f"2 workers {med['cluster']:.1f} s ({result['cluster_cells_per_s']:.2f} cells/s): "
        f"{result['throughput_ratio']:.2f}x (target >= 1.7); cluster start "
        f"{med['cluster_start']:.1f} s and warm-up {med['cluster_warmup']:.1f} s, end to end "
        f"{result['end_to_end_ratio']:.2f}x"
    )
    print(
        f"overhead per no-op cell: serial {result['overhead_ms_serial']:.1f} ms, "
        f"cluster {result['overhead_ms_cluster']:.1f} ms (target < 50 ms)"
    )
    print(f"load average {os.getloadavg()}; {result['wall_s']:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
