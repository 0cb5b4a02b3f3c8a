"""Running one grid cell, on a Dask worker or in this process, into a JSON-ready payload.

A cell is one ``isokit report`` run (:func:`isokit.report.run.run_one`): build, initialize and
probe one model × scheme × seed, then train it when the config has a ``[train]`` section. The
payload holds the :class:`~isokit.report.results.RunRecord` (its Profile and TrainResult) and
what describes the run (environment, device, worker, wall time); a cell that raises records its
error and traceback instead, so a sweep goes on past it. The torch thread count is the config's
``threads``, set around the run, so that one-thread workers never oversubscribe the cores and the
numbers are those of the serial path. On a worker with a GPU the cell probes and trains there.

Example:
    >>> from isokit.sweep.grid import parse_sweep
    >>> grid = parse_sweep({"models": [{"kind": "mlp", "in_features": 4, "width": 4}],
    ...     "inputs": {"examples": 1}, "sweep": {"depth": [2], "schemes": ["orthogonal"]}})
    >>> payload = run_cell(grid.cells[0])
    >>> payload["status"], payload["run"]["profile"]["taps"][0]["name"]
    ('ok', 'acts.0')
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from isokit.sweep.grid import Cell
    from isokit.train import TrainData

__all__ = ["CELL_SCHEMA", "run_cell", "worker_device"]

CELL_SCHEMA = "isokit.sweep.cell/1"


def worker_device() -> str:
    """Where this process probes and trains: ``cuda`` when it has a GPU, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=4)
def _data(spec_json: str) -> TrainData:
    """The training data of a ``[train]`` section, loaded once per worker process."""
    import json

    from isokit.report.train_spec import parse_train

    return parse_train(json.loads(spec_json)).load()


def _run(cell: Cell, device: str) -> dict[str, Any]:
    import json

    from isokit.report.run import run_one

    config = cell.parsed()
    data = None
    if config.train is not None:
        data = _data(json.dumps(config.train.to_dict(), sort_keys=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        record = run_one(
            config, config.models[0], config.schemes[0], config.seeds[0], data=data, device=device
        )
    return record.to_dict()


def run_cell(cell: Cell, *, device: str | None = None) -> dict[str, Any]:
    """Run ``cell`` and return its payload (module docstring); never raises for the cell's own
    errors, which are recorded with their traceback (``KeyboardInterrupt`` still stops it)."""
    from isokit.environment import environment
    from isokit.probe.serialization import encode

    device = worker_device() if device is None else device
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cell.config.get("threads", 1)))
    start = time.perf_counter()
    payload: dict[str, Any] = {
        "schema": CELL_SCHEMA,
        "key": cell.key,
        "axes": dict(cell.axes),
        "config": cell.config,
    }
    try:
        run = _run(cell, device)
        payload.update(status="ok" if run["status"] == "ok" else run["status"], run=run, error=None)
    except Exception as exc:
        payload.update(
            status="error",
            run=None,
            error={
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            },
        )
    finally:
        torch.set_num_threads(threads)
    payload["elapsed_s"] = round(time.perf_counter() - start, 4)
    payload["environment"] = {**environment(), "device": device}
    payload["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return encode(payload)
