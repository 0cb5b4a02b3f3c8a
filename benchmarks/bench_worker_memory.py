"""Benchmark of a training step inside a Dask worker: Dask's default worker environment against
``isokit.sweep.local_cluster``'s, with the same step in this process as the reference.

Run ``python benchmarks/bench_worker_memory.py [--steps 12] [--rounds 3] [--json out.json]``.

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``, so glibc hands freed
memory back to the kernel past 64 KiB. torch frees and reallocates a network's activations every
step, and in such a worker each reallocation page-faults. The task: ``--steps`` SGD steps of
``ResNet(depth=20, width=16, norm="none")`` on a batch of 128 one-channel 32×32 images, one
thread, after 3 warm-up steps; it reports wall, user and system seconds per step from
``os.times()``. Cases, interleaved per round so that a change of load hits all three: this
process, a one-worker LocalCluster with Dask's default environment, and ``local_cluster(1)``
(the same, without ``MALLOC_TRIM_THRESHOLD_``). It prints medians over the rounds and the ratios
to this process. This is a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from isokit.sweep import local_cluster


def steps_task(steps: int) -> dict[str, float]:
    """Seconds per SGD step of a norm-free ResNet-20 (wall, user, system) in this process."""
    import torch

    from isokit.models import ResNet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ResNet(depth=20, width=16, norm="none", in_channels=1, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 1, 32, 32), torch.randint(10, (128,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    t0, c0 = time.perf_counter(), os.times()
    for _ in range(steps):
        step()
    t1, c1 = time.perf_counter(), os.times()
    return {
        "wall": (t1 - t0) / steps,
        "user": (c1.user - c0.user) / steps,
        "system": (c1.system - c0.system) / steps,
        "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    }


def dask_default(steps: int) -> dict[str, float]:
    from dask.distributed import Client, LocalCluster

    before = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    try:
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as c,
            Client(c) as client,
        ):
            return client.submit(steps_task, steps, pure=False).result()
    finally:
        # The nanny exports its environment into this process before it spawns a worker, and
        # leaves it there; the next case must not inherit it.
        if before is None:
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)


def isokit_cluster(steps: int) -> dict[str, float]:
    with local_cluster(1) as client:
        return client.submit(steps_task, steps, pure=False).result()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None, help="write the medians here")
    args = p.parse_args(argv)
    cases = {"this process": steps_task, "dask default": dask_default, "isokit": isokit_cluster}
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, case in cases.items():
            runs[name].append(case(args.steps))
    out = {}
    for name, rs in runs.items():
        out[name] = {k: statistics.median(r[k] for r in rs) for k in ("wall", "user", "system")}
        out[name]["MALLOC_TRIM_THRESHOLD_"] = rs[0]["trim"]
    base = out["this process"]["wall"]
    for name, m in out.items():
        print(
            f"{name:>13}: wall {m['wall']:.3f} s/step (×{m['wall'] / base:.2f}), user "
            f"{m['user']:.3f}, system {m['system']:.3f}; MALLOC_TRIM_THRESHOLD_="
            f"{m['MALLOC_TRIM_THRESHOLD_']}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
