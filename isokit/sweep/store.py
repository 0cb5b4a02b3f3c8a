"""A sweep directory: the grid's manifest and one result file per finished cell.

Layout of ``DIR``::

    sweep.json          the manifest: schema, the sweep config, the grid's key, every cell's
                        key and axes (written before the first cell runs)
    cells/KEY.json      one finished cell: its payload (isokit.sweep.cell), written atomically

A cell's file appears complete or not at all (:func:`isokit._atomic.write_atomic`), so a killed
sweep leaves only finished cells, and a rerun computes the cells without a file. A directory
holding another grid is refused, unless the caller asks to take it over (``--resume``), which
keeps the finished cells the two grids share.

Example:
    >>> import tempfile
    >>> from isokit.sweep.grid import parse_sweep
    >>> grid = parse_sweep({"models": [{"kind": "mlp", "in_features": 4, "width": 4}],
    ...     "sweep": {"depth": [2, 3], "schemes": ["orthogonal"]}})
    >>> store = SweepDir(tempfile.mkdtemp())
    >>> store.open(grid)
    >>> [c.axes["depth"] for c in store.missing(grid)]
    [2, 3]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isokit._atomic import write_atomic
from isokit.report.checks import ConfigError
from isokit.report.config import Config
from isokit.report.results import RunRecord, now_utc
from isokit.sweep.cell import CELL_SCHEMA
from isokit.sweep.grid import Cell, Grid

__all__ = [
    "CellResult",
    "EncodedCell",
    "SweepDir",
    "SweepDirError",
    "SweepResults",
    "encode_cell",
    "load_sweep",
]

MANIFEST = "sweep.json"
CELLS = "cells"
SCHEMA = "isokit.sweep/1"


@dataclass(frozen=True)
class EncodedCell:
    """A cell's payload as the JSON text of its file, with the two fields the sweep reads."""

    key: str
    status: str
    text: str


def encode_cell(payload: dict[str, Any]) -> EncodedCell:
    """``payload`` as its file's text: compact JSON, encoded where the cell ran.

    A deep probe's payload is megabytes of spectra; encoding it on the worker (in C, without
    indentation) keeps the process that writes the files, which shares the cores with the
    workers on a local cluster, from becoming the bottleneck.

    Example:
        >>> encode_cell({"key": "k", "status": "ok", "x": [1.0]}).text
        '{"key": "k", "status": "ok", "x": [1.0]}\\n'
    """
    text = json.dumps(payload, allow_nan=False) + "\n"
    return EncodedCell(key=payload["key"], status=payload["status"], text=text)


class SweepDirError(ConfigError):
    """A sweep directory that cannot be used as asked (another grid, a damaged file, ...)."""


@dataclass(frozen=True, kw_only=True)
class CellResult:
    """A finished cell read back: its ``key``, ``axes``, ``status`` (``ok``, ``not applicable``
    or ``error``), its one-run ``config`` and
    :class:`~isokit.report.results.RunRecord` when it ran, or the
    ``error`` (type, message, traceback) it raised."""

    key: str
    axes: dict[str, Any]
    status: str
    config: Config | None
    record: RunRecord | None
    error: dict[str, str] | None
    elapsed_s: float
    environment: dict[str, Any]
    worker: str


@dataclass(frozen=True, kw_only=True)
class SweepResults:
    """A sweep directory read back: the manifest's grid and the finished cells, in grid order."""

    config: dict[str, Any]
    source: str
    grid_key: str
    cells: list[dict[str, Any]]  # the manifest's {"key", "axes"} of every cell
    results: list[CellResult]

    @property
    def missing(self) -> int:
        return len(self.cells) - len(self.results)


class SweepDir:
    """The directory ``path`` of a sweep (module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        if str(path).strip() == "":
            raise SweepDirError("--out", "is empty; pass a directory, e.g. --out out/sweep")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise SweepDirError("--out", f"{self.path} is a file; pass a directory")

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    def cell_path(self, key: str) -> Path:
        return self.path / CELLS / f"{key}.json"

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or ``None`` for a directory without one."""
        if not self.manifest.exists():
            return None
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SweepDirError(
                str(self.manifest), f"cannot be read as a sweep manifest ({exc}); pass a new --out"
            ) from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise SweepDirError(
                str(self.manifest), f"is not a manifest of {SCHEMA}; pass a new --out"
            )
        return data

    def open(self, grid: Grid, *, resume: bool = False) -> None:
        """Claim the directory for ``grid``: write its manifest, or check the one there.

        A directory with files but no manifest, or the manifest of another grid (unless
        ``resume``), is refused before anything is written.
        """
        old = self.read_manifest()
        if old is None and self.path.exists() and any(self.path.iterdir()):
            raise SweepDirError(
                "--out", f"{self.path} holds files but no {MANIFEST}; pass an empty or new --out"
            )
        if old is not None and old["grid"] != grid.key and not resume:
            shared = len({c["key"] for c in old["cells"]} & {c.key for c in grid.cells})
            raise SweepDirError(
                "--out",
                f"{self.path} holds another grid ({len(old['cells'])} cells, from "
                f"{old.get('source')}; {shared} in common with this one); pass a new --out, or "
                "add --resume to make this grid the directory's (its finished cells are kept)",
            )
        if old is not None and old["grid"] == grid.key:
            return
        (self.path / CELLS).mkdir(parents=True, exist_ok=True)
        manifest = {
            "schema": SCHEMA,
            "created": now_utc(),
            "source": grid.source,
            "grid": grid.key,
            "axes": list(grid.axes),
            "config": grid.config,
            "cells": [{"key": c.key, "axes": c.axes} for c in grid.cells],
        }
        write_atomic(self.manifest, json.dumps(manifest, indent=1, default=str) + "\n")

    def done(self) -> set[str]:
        """The keys of the cells with a result file."""
        folder = self.path / CELLS
        if not folder.is_dir():
            return set()
        return {p.stem for p in folder.glob("*.json")}

    def missing(self, grid: Grid) -> list[Cell]:
        """The cells of ``grid`` without a result file, in grid order."""
        done = self.done()
        return [c for c in grid.cells if c.key not in done]

    def write(self, cell: EncodedCell) -> Path:
        """Write an encoded cell atomically under its key."""
        return write_atomic(self.cell_path(cell.key), cell.text)

    def read(self, key: str) -> CellResult:
        """The finished cell ``key``, checked as a one-run ``results.json`` (a damaged file
        names itself and its bad field)."""
        from isokit.report.results import Results
        from isokit.report.results_check import SCHEMA as RESULTS_SCHEMA

        path = self.cell_path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SweepDirError(
                str(path), f"cannot be read ({exc}); delete it and rerun the sweep to recompute it"
            ) from None
        if not isinstance(data, dict) or data.get("schema") != CELL_SCHEMA:
            raise SweepDirError(str(path), "is not a sweep cell file; delete it and rerun")
        config, record = None, None
        if data.get("run") is not None:
            one = {"schema": RESULTS_SCHEMA, "config": data["config"], "runs": [data["run"]]}
            results = Results.from_dict(one, source=str(path))
            config, record = results.config, results.records[0]
        return CellResult(
            key=key,
            axes=data["axes"],
            status=data["status"],
            config=config,
            record=record,
            error=data.get("error"),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            environment=data.get("environment", {}),
            worker=str(data.get("worker", "")),
        )


def load_sweep(path: str | os.PathLike) -> SweepResults:
    """Read a sweep directory: its manifest and every finished cell of its grid.

    Raises :class:`SweepDirError` for a directory without a manifest, naming the fix.
    """
    store = SweepDir(path)
    manifest = store.read_manifest()
    if manifest is None:
        raise SweepDirError(
            str(path), f"has no {MANIFEST}; pass a directory written by `isokit sweep`"
        )
    done = store.done()
    results = [store.read(c["key"]) for c in manifest["cells"] if c["key"] in done]
    return SweepResults(
        config=manifest["config"],
        source=str(manifest.get("source")),
        grid_key=manifest["grid"],
        cells=manifest["cells"],
        results=results,
    )
