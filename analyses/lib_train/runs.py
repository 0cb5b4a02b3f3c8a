"""The Fashion-MNIST ResNet runs of the training analyses: one sweep config per model, run
through :func:`isokit.sweep.run_sweep` (resumable), read back into one :class:`Run` per cell."""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isokit.report.training_series import isometry_statistic, lr_label
from isokit.sweep import load_sweep, parse_sweep, run_cell, run_sweep

__all__ = [
    "CHANCE",
    "Budget",
    "Run",
    "add_budget_flags",
    "budget_from_flags",
    "collect_runs",
    "resnet_sweep",
    "run_grid",
]

#: Held-out accuracy of a diverged run: its weights are no longer finite, so it is counted as
#: guessing among the 10 classes.
CHANCE = 0.1
STATS = ("gap_nonzero", "var", "rank_fraction")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What every run of one model gets: the model, data and SGD-with-momentum schedule."""

    depth: int = 20
    width: int = 8
    steps: int = 469
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    warmup_steps: int = 20
    target: float = 0.75
    evals: int = 10  # held-out evaluations after step 0 (eval_every = steps // evals)
    eval_examples: int = 1000
    train_limit: int | None = None  # None: all 60 000 training images
    threads: int = 1
    n_probes: int = 8
    lanczos_steps: int = 32

    @property
    def effective_lr(self) -> float:
        return self.lr / (1.0 - self.momentum)


def add_budget_flags(p: argparse.ArgumentParser, *, width_help: str, steps_help: str) -> None:
    """The budget flags the training analyses share (each defaults to the quick or full budget)."""
    p.add_argument("--width", type=int, default=None, help=width_help)
    p.add_argument("--steps", type=int, default=None, help=steps_help)
    p.add_argument("--batch-size", type=int, default=None, help="full: 128, quick: 32")
    p.add_argument("--lr", type=float, default=0.02, help="peak lr η (momentum 0.9)")
    p.add_argument("--target", type=float, default=None, help="target held-out accuracy")
    p.add_argument("--threads", type=int, default=None, help="torch threads per cell")


def budget_from_flags(
    args: argparse.Namespace, *, quick: bool, width: tuple[int, int], target: tuple[float, float]
) -> Budget:
    """The ResNet-20 budget of :func:`add_budget_flags`' flags; ``width`` and ``target`` are the
    (quick, full) defaults of the flags left unset."""
    pick = 0 if quick else 1
    return Budget(
        width=args.width or width[pick],
        steps=args.steps or (60 if quick else 469),
        batch_size=args.batch_size or (32 if quick else 128),
        lr=args.lr,
        target=args.target or target[pick],
        eval_examples=500 if quick else 1000,
        evals=6 if quick else 10,
        train_limit=6400 if quick else None,
        threads=args.threads or 1,
        n_probes=4 if quick else 8,
        lanczos_steps=16 if quick else 32,
    )


def resnet_sweep(budget: Budget, sweep: dict[str, Any]) -> dict[str, Any]:
    """The sweep config of ``budget``'s ResNet (no normalization) on Fashion-MNIST padded to
    32×32, probed at initialization (SLQ at the last tap, moments at every tap) and trained;
    ``sweep`` is its ``[sweep]`` table (schemes, seeds, options)."""
    data_options: dict[str, Any] = {"pad_to": 32, "channels": 1}
    if budget.train_limit is not None:
        data_options["limit"] = budget.train_limit
    return {
        "title": f"ResNet-{budget.depth} w{budget.width} on Fashion-MNIST, {budget.steps} steps",
        "method": "lanczos",
        "dtype": "float64",
        "threads": budget.threads,
        "method_options": {
            "slq_taps": ["fc"],
            "n_probes": budget.n_probes,
            "lanczos_steps": budget.lanczos_steps,
        },
        "inputs": {"examples": 2, "image_size": 32},
        "models": [
            {
                "kind": "resnet",
                "depth": budget.depth,
                "width": budget.width,
                "norm": "none",
                "in_channels": 1,
                "num_classes": 10,
            }
        ],
        "train": {
            "data": "fashion-mnist",
            "data_options": data_options,
            "optimizer": "sgd-momentum",
            "lr": budget.lr,
            "momentum": budget.momentum,
            "batch_size": budget.batch_size,
            "steps": budget.steps,
            "warmup_steps": min(budget.warmup_steps, budget.steps),
            "target_accuracy": budget.target,
            "eval_every": max(1, budget.steps // budget.evals),
            "eval_examples": budget.eval_examples,
            "probe_examples": 2,
        },
        "sweep": sweep,
    }


def run_grid(config: dict[str, Any], out: Path, *, quick: bool, device: str) -> float:
    """Run the missing cells of ``config`` into ``out`` (serially in quick mode, else on a
    2-worker LocalCluster); the wall time of this call in seconds."""
    grid = parse_sweep(config, source=str(out))
    task = functools.partial(run_cell, device=device)
    options = {"serial": True} if quick else {"workers": 2}
    summary = run_sweep(grid, out, resume=True, quiet=quick, task=task, **options)
    print(summary.describe(), flush=True)
    return summary.elapsed_s


@dataclass(frozen=True, kw_only=True)
class Run:
    """One trained cell: its isometry at initialization (the last tap) and how it trained."""

    model: str
    scheme: str
    axes: dict[str, Any]
    seed: int
    iso: dict[str, float]  # gap_nonzero, var, rank_fraction at the last tap, at init
    steps: int  # the planned length
    diverged_at: int | None
    steps_to_target: int | None
    final_accuracy: float | None  # the last held-out accuracy; None when it diverged
    step: list[int]
    loss: list[float]
    eval_step: list[int]
    eval_accuracy: list[float]
    lr_label: str
    wall_time_s: float

    @property
    def accuracy_outcome(self) -> float:
        """The final held-out accuracy, :data:`CHANCE` for a diverged run."""
        return CHANCE if self.final_accuracy is None else self.final_accuracy

    @property
    def steps_outcome(self) -> float:
        """Steps to the target accuracy, ``inf`` if never reached (diverged runs included)."""
        return math.inf if self.steps_to_target is None else float(self.steps_to_target)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scheme": self.scheme,
            "seed": self.seed,
            **{f"init_{k}": v for k, v in self.iso.items()},
            "steps": self.steps,
            "diverged_at": self.diverged_at,
            "steps_to_target": self.steps_to_target,
            "final_accuracy": self.final_accuracy,
            "accuracy_outcome": self.accuracy_outcome,
            "final_train_loss": next((v for v in reversed(self.loss) if v == v), None),
            "eval_step": self.eval_step,
            "eval_accuracy": self.eval_accuracy,
            "wall_time_s": round(self.wall_time_s, 2),
        }


def _finite(values: np.ndarray) -> list[float]:
    return [float(v) if np.isfinite(v) else math.nan for v in values]


def collect_runs(out: Path) -> tuple[list[Run], list[dict[str, Any]]]:
    """The trained cells of the sweep in ``out`` as :class:`Run` objects, and the cells that
    did not train (not applicable, or an error) with their reason."""
    runs, skipped = [], []
    for cell in load_sweep(out).results:
        record = cell.record
        if cell.status != "ok" or record is None or record.train is None:
            reason = cell.error["message"] if cell.error else (record.message if record else "")
            skipped.append({**cell.axes, "status": cell.status, "reason": reason})
            continue
        t = record.train
        runs.append(
            Run(
                model=record.model,
                scheme=str(cell.axes["scheme"]),
                axes=dict(cell.axes),
                seed=record.seed,
                iso={s: isometry_statistic(record.profile, s) for s in STATS},
                steps=t.options.total_steps(int(t.data["n_train"])),
                diverged_at=t.diverged_at,
                steps_to_target=t.steps_to_target,
                final_accuracy=None if t.diverged else t.final_accuracy,
                step=[int(s) for s in t.step],
                loss=_finite(t.loss),
                eval_step=[int(s) for s in t.eval_step],
                eval_accuracy=_finite(t.eval_accuracy),
                lr_label=lr_label(t.options),
                wall_time_s=t.wall_time_s,
            )
        )
    return runs, skipped


def by_key(runs: Sequence[Run], key) -> dict[Any, list[Run]]:
    """``runs`` grouped by ``key(run)``, in first-seen order."""
    out: dict[Any, list[Run]] = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return out
