"""Running a grid's missing cells on ``dask.distributed`` (or serially) into a sweep directory.

Every cell is one Dask task (:func:`isokit.sweep.cell.run_cell`); Dask schedules them, moves them
to workers and reschedules the running ones of a worker that dies. isokit only submits the
missing cells and, as each finishes, writes its payload (encoded to JSON text on the worker)
atomically into the sweep directory from this process, so the workers need no shared
filesystem and a finished cell is on disk before the next one is awaited. A cell that raises
is recorded with its traceback and the sweep goes on; Ctrl-C cancels the tasks still pending
and leaves only complete files.

By default the cells run on a :class:`dask.distributed.LocalCluster` of worker processes with one
thread each (``workers`` of them, default: the CPU count), each running torch on the config's
``threads``; ``scheduler`` connects to an existing cluster instead (``tcp://host:port``).
``serial`` runs them one after the other in this process, without Dask: the reference the
distributed path must equal.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isokit.sweep.cell import run_cell
from isokit.sweep.grid import Cell, Grid
from isokit.sweep.store import EncodedCell, SweepDir, encode_cell

__all__ = ["SweepSummary", "execute", "local_cluster", "run_sweep"]

Task = Callable[[Cell], dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class SweepSummary:
    """What one ``isokit sweep`` did: cells in the grid, already done before, computed now,
    failed now, and the wall time."""

    out: Path
    cells: int
    skipped: int
    computed: int
    failed: int
    elapsed_s: float

    def describe(self) -> str:
        """One line for the command line.

        Example:
            >>> done = SweepSummary(out=Path("d"), cells=4, skipped=1, computed=3, failed=0,
            ...     elapsed_s=2.0)
            >>> done.describe()
            'isokit sweep: 4 cells in d: 3 computed, 1 already done, 2.0 s'
        """
        failed = f" ({self.failed} failed: see their files)" if self.failed else ""
        return (
            f"isokit sweep: {self.cells} cells in {self.out}: {self.computed} computed{failed}, "
            f"{self.skipped} already done, {self.elapsed_s:.1f} s"
        )


#: Dask's nanny starts each worker with this glibc setting, which hands freed memory back to the
#: kernel past 64 KiB; torch frees and reallocates its activations every step, and each
#: reallocation then page-faults: a ResNet-20 step took 0.47 s of system time beside 0.55 s of
#: user time in a worker, against 0.04 s without it (``benchmarks/bench_worker_memory.py``).
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"


def _pre_spawn_env() -> dict[str, Any]:
    """Dask's environment for new worker processes with :data:`MALLOC_TRIM` unset (``None``:
    Dask leaves it alone, so a value the user exported still reaches the workers)."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    return {**env, MALLOC_TRIM: None}


def _worker_env() -> dict[str, str]:
    # Thread pools of BLAS and OpenMP sized to one core per worker: torch's own count is set
    # per cell, but a pool started before that would oversubscribe the cores.
    return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@contextmanager
def local_cluster(workers: int | None = None) -> Iterator[Any]:
    """A client of a fresh :class:`~dask.distributed.LocalCluster`: ``workers`` processes with
    one thread each (default: one per CPU), no dashboard; closed on exit."""
    import dask
    from dask.distributed import Client, LocalCluster

    n = workers if workers is not None else os.cpu_count() or 1
    # The workers' statistical profiler samples the task's stack every 10 ms under the GIL,
    # which slowed a probe cell by a fifth; the workers take this config from here.
    settings = {
        "distributed.worker.profile.enabled": False,
        "distributed.nanny.pre-spawn-environ": _pre_spawn_env(),
    }
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            # None still serves the scheduler's HTTP endpoints on port 8787, and a second
            # cluster on the machine then warns; a free port on loopback only.
            dashboard_address="127.0.0.1:0",
            env=_worker_env(),
            silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    if scheduler is None:
        with local_cluster(workers) as client:
            yield client
        return
    from dask.distributed import Client

    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        from isokit.sweep.store import SweepDirError

        raise SweepDirError(
            "--scheduler",
            f"cannot connect to {scheduler} ({exc}); start one with `dask scheduler` and "
            "workers with `dask worker ADDRESS`, or drop --scheduler for a local cluster",
        ) from None
    try:
        yield client
    finally:
        client.close()


def _failed(cell: Cell, exc: BaseException) -> dict[str, Any]:
    """The payload of a cell whose task itself failed (its worker was killed too often)."""
    return {
        "schema": "isokit.sweep.cell/1",
        "key": cell.key,
        "axes": dict(cell.axes),
        "config": cell.config,
        "status": "error",
        "run": None,
        "error": {"type": type(exc).__name__, "message": str(exc), "traceback": ""},
        "elapsed_s": 0.0,
        "environment": {},
        "worker": "",
    }


def _run_encoded(cell: Cell, task: Task) -> EncodedCell:
    return encode_cell(task(cell))


def execute(
    cells: list[Cell],
    task: Task,
    on_done: Callable[[EncodedCell], None],
    *,
    client: Any = None,
) -> None:
    """Run ``task`` on every cell (on ``client``'s cluster, or here when it is ``None``) and
    hand each payload, encoded where it ran, to ``on_done`` as it finishes; pending tasks are
    cancelled on any exit that is not a normal one (Ctrl-C included)."""
    if client is None:
        for cell in cells:
            on_done(_run_encoded(cell, task))
        return
    from dask.distributed import as_completed

    # pure=False: a rerun must recompute, never reuse a result Dask remembers for the key.
    futures = client.map(
        _run_encoded, cells, task=task, key=[f"isokit-cell-{c.key}" for c in cells], pure=False
    )
    by_key = {f.key: cell for f, cell in zip(futures, cells, strict=True)}
    try:
        for future in as_completed(futures):
            try:
                encoded = future.result()
            except Exception as exc:  # KilledWorker, a payload that cannot be unpickled, ...
                encoded = encode_cell(_failed(by_key[future.key], exc))
            future.release()
            on_done(encoded)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending, force=True)


def _bar(total: int, initial: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=quiet,
        unit="cell",
        file=sys.stderr,
        dynamic_ncols=True,
    )


def run_sweep(
    grid: Grid,
    out: str | os.PathLike,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    serial: bool = False,
    resume: bool = False,
    quiet: bool = False,
    task: Task = run_cell,
) -> SweepSummary:
    """``isokit sweep``: run ``grid``'s missing cells into ``out`` (module docstring).

    Example:
        >>> import tempfile
        >>> from isokit.sweep.grid import parse_sweep
        >>> grid = parse_sweep({"models": [{"kind": "mlp", "in_features": 4, "width": 4}],
        ...     "inputs": {"examples": 1}, "sweep": {"depth": [2, 3], "schemes": ["orthogonal"]}})
        >>> out = tempfile.mkdtemp()
        >>> run_sweep(grid, out, serial=True, quiet=True).computed
        2
        >>> run_sweep(grid, out, serial=True, quiet=True).skipped  # a rerun computes nothing
        2
    """
    if serial and (scheduler is not None or workers is not None):
        from isokit.sweep.store import SweepDirError

        raise SweepDirError("--serial", "runs in this process; drop --scheduler and --workers")
    start = time.perf_counter()
    store = SweepDir(out)
    store.open(grid, resume=resume)
    todo = store.missing(grid)
    skipped = len(grid.cells) - len(todo)
    counts = {"computed": 0, "failed": 0}
    with _bar(len(grid.cells), skipped, quiet) as bar:

        def done(cell: EncodedCell) -> None:
            store.write(cell)
            counts["computed"] += 1
            counts["failed"] += cell.status == "error"
            bar.set_postfix_str(f"failed {counts['failed']}, left {len(todo) - counts['computed']}")
            bar.update()

        if serial or not todo:
            execute(todo, task, done)
        else:
            with _client(scheduler, workers) as client:
                execute(todo, task, done, client=client)
    return SweepSummary(
        out=store.path,
        cells=len(grid.cells),
        skipped=skipped,
        computed=counts["computed"],
        failed=counts["failed"],
        elapsed_s=round(time.perf_counter() - start, 3),
    )
