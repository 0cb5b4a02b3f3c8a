"""Sweeps: grids of model × scheme × seed × values, run cell by cell on ``dask.distributed``.

- :mod:`~isokit.sweep.grid`: a config's ``[sweep]`` table expanded into :class:`Cell` objects,
  each a one-run config with a stable key (:func:`parse_sweep`, :func:`load_sweep_config`).
- :mod:`~isokit.sweep.cell`: one cell run into a JSON payload (:func:`run_cell`).
- :mod:`~isokit.sweep.store`: the sweep directory, one atomic file per finished cell
  (:class:`SweepDir`, :func:`load_sweep`).
- :mod:`~isokit.sweep.engine`: the missing cells on a Dask cluster or serially
  (:func:`run_sweep`).
"""

from isokit.sweep.cell import run_cell
from isokit.sweep.engine import SweepSummary, execute, local_cluster, run_sweep
from isokit.sweep.grid import Cell, Grid, SweepError, cell_key, load_sweep_config, parse_sweep
from isokit.sweep.store import CellResult, SweepDir, SweepDirError, SweepResults, load_sweep

__all__ = [
    "Cell",
    "CellResult",
    "Grid",
    "SweepDir",
    "SweepDirError",
    "SweepError",
    "SweepResults",
    "SweepSummary",
    "cell_key",
    "execute",
    "load_sweep",
    "load_sweep_config",
    "local_cluster",
    "parse_sweep",
    "run_cell",
    "run_sweep",
]
