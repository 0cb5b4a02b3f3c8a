"""Cell tasks for the distributed tests: the real cell runner, wrapped to fail or die on cue.

They live in a module (not a test function) so that Dask workers import them by reference.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

from isokit.sweep import Cell, run_cell

#: The [[models]] entry of the small grids: a probe of a few milliseconds per cell.
MLP = {"kind": "mlp", "in_features": 8, "width": 8}


def small_grid(**sweep) -> dict:
    base = {"depth": [2, 3, 4], "activation": ["tanh"], "schemes": ["orthogonal", "idinit"]}
    base["seeds"] = [0, 1]
    return {"inputs": {"examples": 2}, "models": [MLP], "sweep": base | sweep}


def failing_at(cell: Cell, *, depth: int) -> dict:
    """The real cell, except at ``depth``, where the probe is refused for want of memory."""
    if cell.axes["depth"] == depth:
        config = dict(cell.config, method="exact")
        config["method_options"] = {**config["method_options"], "max_memory": 1}
        cell = dataclasses.replace(cell, config=config)
    return run_cell(cell)


def dying_once_at(cell: Cell, *, depth: int, marker: str) -> dict:
    """The real cell; the first worker to reach ``depth`` is killed outright (SIGKILL)."""
    if cell.axes["depth"] == depth:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(cell)


def slow(cell: Cell, *, seconds: float, marker_dir: str) -> dict:
    """The real cell after a pause; a file in ``marker_dir`` says the cell has started."""
    import time

    Path(marker_dir, cell.key).touch()
    time.sleep(seconds)
    return run_cell(cell)
