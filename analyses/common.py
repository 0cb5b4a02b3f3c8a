"""What every analysis shares: its command line, where it writes, and what it records.

An analysis is ``python analyses/NAME.py [--quick] [--out DIR] [--work DIR] [--device D]``. It
writes its figures as ``DIR/NAME_*.png`` and ``.svg`` (default ``figures/``) and its numbers as
``DIR/NAME.json``, each file atomically, the JSON last: a run that stops early leaves the previous
JSON in place. The JSON records the isokit and library versions, the device, the seeds, the mode
and the wall time. ``--work`` (default ``out/analyses/NAME``, or ``.../NAME-quick``) holds the
sweep directories of the heavy grids, so that an interrupted full run resumes where it stopped;
its ``invocations.json`` keeps the wall time of every invocation that worked there (interrupted
ones included), so the record of a resumed run states the whole time it took, not only its last
part (delete the work directory to start the count, and the cells, afresh).

Example::

    from common import main_guarded, start  # analyses/ is the script's own directory

    def main():
        run = start("momentum_toy", __doc__, seeds=(0, 1, 2), quick_seeds=(0,))
        fig = run.new_figure(6, 4)
        ...
        run.save_figure(fig, "loss")
        run.finish({"gd": {"final_loss": 4.96}}, verdict={"claim C": "confirmed"})

    if __name__ == "__main__":
        main_guarded(main)  # Ctrl-C: one line, exit 130, the finished cells kept
"""

from __future__ import annotations

import argparse
import atexit
import datetime
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
    logged: bool = False

    @property
    def ledger(self) -> Path:
        """``WORK/invocations.json``: one entry per invocation that used this work directory."""
        return self.work / "invocations.json"

    def previous_invocations(self) -> list[dict[str, Any]]:
        """The ledger's entries so far (none if it is missing or unreadable)."""
        try:
            entries = json.loads(self.ledger.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return entries if isinstance(entries, list) else []

    def log_invocation(self, *, finished: bool) -> list[dict[str, Any]]:
        """Append this invocation's wall time to the ledger (once); every entry, this one last.
        Called by :meth:`finish`, and at exit for a run that stops before it (Ctrl-C, an error)."""
        entries = self.previous_invocations()
        if self.logged:  # finish() logged it; the exit hook then has nothing to add
            return entries
        self.logged = True
        entries.append(
            {
                "ended": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "run_time_s": round(time.perf_counter() - self.started, 1),
                "finished": finished,
                "command": _command(),
            }
        )
        isokit.write_atomic(self.ledger, json.dumps(entries, indent=1) + "\n")
        return entries

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
        settings), with the versions, device, seeds, mode and wall time; returns its path.

        ``run_time_s`` is this invocation's wall time; ``total_run_time_s`` sums every invocation
        in the work directory's ledger: the time that went into its cached cells, so a resumed
        run states its whole time and a re-render keeps the time of the run it renders.
        """
        entries = self.log_invocation(finished=True)
        record = {
            "schema": SCHEMA,
            "analysis": self.name,
            "mode": "quick" if self.quick else "full",
            "seeds": list(self.seeds),
            "device": self.device,
            "command": _command(),
            "run_time_s": entries[-1]["run_time_s"],
            "total_run_time_s": round(sum(e["run_time_s"] for e in entries), 1),
            "invocations": len(entries),
            "environment": environment(device=self.device),
            "figures": sorted(self.files),
            **sections,
            "numbers": numbers,
        }
        text = json.dumps(encode(record), indent=1, allow_nan=False) + "\n"
        path = isokit.write_atomic(self.out / f"{self.name}.json", text)
        print(
            f"{self.name}: wrote {path} and {len(self.files)} figure files "
            f"in {record['run_time_s']} s ({record['total_run_time_s']} s over "
            f"{record['invocations']} invocation(s))"
        )
        return path


def _command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


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
    run = Analysis(
        name=name,
        quick=args.quick,
        out=args.out,
        work=work,
        device=args.device,
        seeds=chosen,
        args=args,
    )
    atexit.register(run.log_invocation, finished=False)
    return run


def main_guarded(main: Callable[[], None]) -> None:
    """Run an analysis' ``main``; Ctrl-C ends it with one line and exit status 130.

    A traceback after Ctrl-C would read as a failure, but an interrupted full run is expected
    and safe to resume: its finished cells are on disk and the invocation is logged (``start``'s
    exit hook).
    """
    try:
        main()
    except KeyboardInterrupt:
        print(
            f"{_command()}: interrupted; finished cells are kept, "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
