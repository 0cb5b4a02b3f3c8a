"""What every analysis shares: its command line, where it writes, and what it records.

An analysis is ``python analyses/NAME.py [--quick] [--out DIR] [--work DIR] [--device D]``. It
writes its figures as ``DIR/NAME_*.png`` and ``.svg`` (default ``figures/``) and its numbers as
``DIR/NAME.json``, each file atomically, the JSON last: a run that stops early leaves the previous
JSON in place. The JSON records the isokit and library versions, the device, the seeds, the mode
and the wall time. ``--work`` (default ``out/analyses/NAME``, or ``.../NAME-quick``) holds the
sweep directories of the heavy grids, so that an interrupted full run resumes where it stopped.

Example::

    from common import start  # analyses/ is the script's own directory

    run = start("momentum_toy", __doc__, seeds=(0, 1, 2), quick_seeds=(0,))
    fig = run.new_figure(6, 4)
    ...
    run.save_figure(fig, "loss")
    run.finish({"gd": {"final_loss": 4.96}}, verdict={"claim C": "confirmed"})
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

import isokit
from isokit.environment import environment
from isokit.probe import encode
from isokit.report import style

__all__ = ["ROOT", "Analysis", "start"]

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "isokit.analysis/1"


@dataclass(kw_only=True)
class Analysis:
    """One run of an analysis: its options and where its files go."""

    name: str
    quick: bool
    out: Path
    work: Path
    device: str
    seeds: tuple[int, ...]
    args: argparse.Namespace
    started: float = field(default_factory=time.perf_counter)
    files: list[str] = field(default_factory=list)

    def new_figure(self, width: float, height: float):
        """A figure in the report's style (seaborn whitegrid, the report's palette and fonts)."""
        with matplotlib.rc_context(style.style()):
            return style.new_figure(width, height)

    def save_figure(self, fig, stem: str) -> list[Path]:
        """Write ``fig`` as ``OUT/NAME_STEM.png`` and ``.svg``, atomically; the paths."""
        paths = []
        with matplotlib.rc_context(style.style()):
            blobs = style.encode_figure(fig, ("png", "svg"))
        for fmt, data in blobs.items():
            path = self.out / f"{self.name}_{stem}.{fmt}"
            isokit.write_atomic(path, data)
            self.files.append(path.name)
            paths.append(path)
        return paths

    def sweep_dir(self, label: str) -> Path:
        """The directory of the sweep ``label`` under ``--work`` (kept between runs)."""
        return self.work / label

    def finish(self, numbers: dict[str, Any], **sections: Any) -> Path:
        """Write ``OUT/NAME.json``: ``numbers`` and any named ``sections`` (a verdict, the
        settings), with the versions, device, seeds, mode and wall time; returns its path."""
        record = {
            "schema": SCHEMA,
            "analysis": self.name,
            "mode": "quick" if self.quick else "full",
            "seeds": list(self.seeds),
            "device": self.device,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "run_time_s": round(time.perf_counter() - self.started, 1),
            "environment": environment(device=self.device),
            "figures": sorted(self.files),
            **sections,
            "numbers": numbers,
        }
        text = json.dumps(encode(record), indent=1, allow_nan=False) + "\n"
        path = isokit.write_atomic(self.out / f"{self.name}.json", text)
        print(
            f"{self.name}: wrote {path} and {len(self.files)} figure files "
            f"in {record['run_time_s']} s"
        )
        return path


def start(
    name: str,
    description: str | None,
    *,
    seeds: Sequence[int],
    quick_seeds: Sequence[int],
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> Analysis:
    """Parse the command line of analysis ``name`` and make its output directories.

    ``options`` adds the analysis' own flags (step budgets, grid sizes a GPU user scales up).
    """
    parser = argparse.ArgumentParser(
        prog=f"python analyses/{name}.py",
        description=(description or "").strip().splitlines()[0] if description else None,
    )
    parser.add_argument("--quick", action="store_true", help="a small version (≤ 2 min, 2 cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "figures", help="figures and JSON")
    parser.add_argument("--work", type=Path, default=None, help="sweep directories (resumable)")
    parser.add_argument("--device", default="cpu", help="torch device for probes and training")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the seeds")
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    chosen = tuple(args.seeds) if args.seeds else tuple(quick_seeds if args.quick else seeds)
    work = args.work or ROOT / "out" / "analyses" / (f"{name}-quick" if args.quick else name)
    args.out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return Analysis(
        name=name,
        quick=args.quick,
        out=args.out,
        work=work,
        device=args.device,
        seeds=chosen,
        args=args,
    )
