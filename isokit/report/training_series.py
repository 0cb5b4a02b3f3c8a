"""What the training figures, table and CSV show, read out of each record's :class:`TrainResult`.

Per model × scheme a :class:`TrainCurve` holds every seed's training loss on the union of their
logged steps and their held-out evaluations, NaN where a seed has no value (it diverged before, or
the value was NaN or inf). Its median and band are taken over the seeds that did not diverge (over
all of them when every seed did), so one run whose loss exploded does not drag the median along;
the figures draw a diverged seed on its own, up to its divergence step. :class:`TrainPoint` is one
run's outcome beside its isometry at initialization (its record's Profile at the last tap), and
:class:`TrainRow` one line of the training table. The checkpoint spectra reuse
:func:`isokit.report.series.collect_curves` on the checkpoint Profiles, so the statistics are the
ones the rest of the report draws.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from isokit.report.formatting import format_number
from isokit.report.io import TRAINING
from isokit.report.results import Results, RunRecord
from isokit.report.series import Curve, collect_curves, group_records
from isokit.train import TrainOptions, TrainResult

__all__ = [
    "TRAINING_COLUMNS",
    "TRAINING_CSV",
    "TrainCurve",
    "TrainPoint",
    "TrainRow",
    "checkpoint_curves",
    "collect_train_curves",
    "isometry_statistic",
    "lr_label",
    "median_steps",
    "train_points",
    "training_csv",
    "training_rows",
]

#: The report's file of training curves (beside summary.csv).
TRAINING_CSV = TRAINING
#: Columns of training.csv: one row per run × logged step (``split="train"``, the batch's loss)
#: and per run × evaluation (``split="test"``, the held-out loss).
TRAINING_COLUMNS = ("model", "scheme", "seed", "step", "split", "loss", "accuracy")


def lr_label(options: TrainOptions) -> str:
    """The step size of a run as the figures and table show it: η, and for ``sgd-momentum`` β
    and the effective step η/(1−β).

    Example:
        >>> lr_label(TrainOptions(optimizer="sgd-momentum", lr=0.05, momentum=0.9))
        'sgd-momentum η = 0.05, β = 0.9, η/(1−β) = 0.5'
        >>> lr_label(TrainOptions(optimizer="sgd", lr=0.1))
        'sgd η = 0.1'
    """
    text = f"{options.optimizer} η = {options.lr:g}"
    if options.optimizer == "sgd-momentum":
        text += f", β = {options.momentum:g}, η/(1−β) = {options.effective_lr:g}"
    return text


def _labels(results: Sequence[TrainResult]) -> str:
    return "; ".join(dict.fromkeys(lr_label(r.options) for r in results))


def _spread(values: np.ndarray, q: float) -> np.ndarray:
    """The ``q``-th percentile over seeds (axis 1), NaN where no seed has a value."""
    if values.size == 0:
        return np.full(values.shape[0], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanpercentile(values, q, axis=1)


def _on_grid(grid: np.ndarray, step: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """``values`` (at ``step``) placed on ``grid``; NaN where missing or not finite."""
    out = np.full(grid.size, np.nan)
    if values is None:
        return out
    v = np.where(np.isfinite(values), values, np.nan)
    out[np.searchsorted(grid, step)] = v
    return out


@dataclass(kw_only=True, eq=False)
class TrainCurve:
    """Training of one model × scheme over its seeds (module docstring).

    ``loss`` is ``[len(step), seeds]``, ``eval_loss`` and ``eval_accuracy`` are
    ``[len(eval_step), seeds]`` (``eval_accuracy`` is ``None`` for regression);
    ``diverged`` holds ``(seed, step, last finite training loss or NaN)`` per diverged seed.
    """

    model: str
    scheme: str
    task: str
    seeds: list[int]
    results: list[TrainResult]
    step: np.ndarray
    loss: np.ndarray
    eval_step: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray | None
    diverged: list[tuple[int, int, float]]

    @property
    def label(self) -> str:
        """The scheme with its step size (:func:`lr_label`)."""
        return f"{self.scheme} ({_labels(self.results)})"

    def column(self, name: str, seed: int) -> np.ndarray:
        """One seed's values of ``name`` (``"loss"``, ``"eval_loss"``, ``"eval_accuracy"``)."""
        return getattr(self, name)[:, self.seeds.index(seed)]

    def _pooled(self, name: str) -> np.ndarray:
        """``name`` over the seeds that did not diverge (all of them if every seed did)."""
        gone = {seed for seed, _, _ in self.diverged}
        keep = [i for i, seed in enumerate(self.seeds) if seed not in gone]
        values = getattr(self, name)
        return values[:, keep] if keep else values

    def median(self, name: str) -> np.ndarray:
        return _spread(self._pooled(name), 50.0)

    def band(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Minimum and maximum over the seeds (few seeds make quartiles meaningless)."""
        values = self._pooled(name)
        return _spread(values, 0.0), _spread(values, 100.0)


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def _train_curve(model: str, scheme: str, records: list[RunRecord]) -> TrainCurve:
    runs = [r.train for r in records if r.train is not None]
    step = np.unique(np.concatenate([r.step for r in runs]))
    eval_step = np.unique(np.concatenate([r.eval_step for r in runs]))
    classification = any(r.eval_accuracy is not None for r in runs)
    return TrainCurve(
        model=model,
        scheme=scheme,
        task="classification" if classification else "regression",
        seeds=[r.seed for r in records if r.train is not None],
        results=runs,
        step=step,
        loss=np.stack([_on_grid(step, r.step, r.loss) for r in runs], axis=1),
        eval_step=eval_step,
        eval_loss=np.stack([_on_grid(eval_step, r.eval_step, r.eval_loss) for r in runs], axis=1),
        eval_accuracy=np.stack(
            [_on_grid(eval_step, r.eval_step, r.eval_accuracy) for r in runs], axis=1
        )
        if classification
        else None,
        diverged=[
            (rec.seed, rec.train.diverged_at, _last_finite(rec.train.loss))
            for rec in records
            if rec.train is not None and rec.train.diverged
        ],
    )


def collect_train_curves(results: Results) -> list[TrainCurve]:
    """One :class:`TrainCurve` per model × scheme with a training result, in config order.

    Example:
        >>> from isokit.report.config import load_config
        >>> collect_train_curves(Results(config=load_config(), records=[], environment={}))
        []
    """
    out = []
    for (model, scheme), records in group_records(results).items():
        if any(r.train is not None for r in records):
            out.append(_train_curve(model, scheme, records))
    return out


# ------------------------------------------------------------------------------ outcomes


def isometry_statistic(profile, stat: str) -> float:
    """``stat`` at the profile's last tap, the median over its examples (NaN if not measured).

    Example:
        >>> isometry_statistic(None, "gap_nonzero")
        nan
    """
    if profile is None or not len(profile):
        return math.nan
    try:
        values = profile.stat(stat, None)[-1]
    except KeyError:
        return math.nan
    values = values[~np.isnan(values)]
    # "inverted_cdf" keeps an infinite gap infinite instead of inf − inf = NaN.
    return float(np.percentile(values, 50.0, method="inverted_cdf")) if values.size else math.nan


@dataclass(frozen=True, kw_only=True)
class TrainPoint:
    """One run: its isometry at initialization and how it trained.

    ``steps_to_target`` is ``None`` when the run never reached the target (or had none);
    ``final`` is the last held-out accuracy (classification) or loss (regression), and
    ``steps`` the run's planned length (a diverged run stopped before it).
    """

    model: str
    scheme: str
    seed: int
    task: str
    gap_nonzero: float
    var: float
    rank_fraction: float
    target: float | None
    steps_to_target: int | None
    diverged_at: int | None
    final: float
    steps: int

    @property
    def reached(self) -> bool:
        return self.steps_to_target is not None


def train_points(results: Results) -> list[TrainPoint]:
    """One :class:`TrainPoint` per record with a training result, in run order."""
    points = []
    for r in results.trained:
        t = r.train
        acc = t.final_accuracy
        points.append(
            TrainPoint(
                model=r.model,
                scheme=r.scheme,
                seed=r.seed,
                task="regression" if acc is None else "classification",
                **{
                    stat: isometry_statistic(r.profile, stat)
                    for stat in ("gap_nonzero", "var", "rank_fraction")
                },
                target=t.options.target_accuracy if acc is not None else None,
                steps_to_target=t.steps_to_target,
                diverged_at=t.diverged_at,
                final=t.final_loss if acc is None else acc,
                steps=t.options.total_steps(int(t.data["n_train"])),
            )
        )
    return points


def median_steps(points: Sequence[TrainPoint]) -> float | None:
    """The median over runs of the steps to the target, a run that never reached it counting
    as infinitely many (so the median is ``inf`` when half the runs or more never did);
    ``None`` when no run had a target.

    Example:
        >>> from dataclasses import replace
        >>> p = TrainPoint(model="m", scheme="s", seed=0, task="classification",
        ...     gap_nonzero=0.0, var=0.0, rank_fraction=1.0, target=0.8, steps_to_target=10,
        ...     diverged_at=None, final=0.9, steps=100)
        >>> median_steps([p, replace(p, steps_to_target=30), replace(p, steps_to_target=None)])
        30.0
    """
    with_target = [p for p in points if p.target is not None]
    if not with_target:
        return None
    steps = [math.inf if p.steps_to_target is None else p.steps_to_target for p in with_target]
    return float(np.median(steps))


# ------------------------------------------------------------------------------ table, CSV


@dataclass(frozen=True, kw_only=True)
class TrainRow:
    """One line of the training table: a scheme on a model over its seeds.

    ``median_steps`` follows :func:`median_steps` (``inf``: not reached by half the runs or
    more); ``final`` is the median over the runs that did not diverge of the last held-out
    accuracy (``metric="accuracy"``) or loss (``metric="loss"``), ``None`` if every run diverged.
    """

    model: str
    scheme: str
    runs: int
    target: float | None
    median_steps: float | None
    reached: int
    metric: str
    final: float | None
    diverged: int
    step_size: str
    wall_time_s: float


def training_rows(results: Results) -> list[TrainRow]:
    """The training table: one :class:`TrainRow` per model × scheme that trained."""
    points = train_points(results)
    rows = []
    for curve in collect_train_curves(results):
        mine = [p for p in points if (p.model, p.scheme) == (curve.model, curve.scheme)]
        kept = [p.final for p in mine if p.diverged_at is None]
        targets = {p.target for p in mine if p.target is not None}
        rows.append(
            TrainRow(
                model=curve.model,
                scheme=curve.scheme,
                runs=len(mine),
                target=min(targets) if len(targets) == 1 else None,
                median_steps=median_steps(mine),
                reached=sum(p.reached for p in mine),
                metric="accuracy" if curve.task == "classification" else "loss",
                final=float(np.median(kept)) if kept else None,
                diverged=sum(p.diverged_at is not None for p in mine),
                step_size=_labels(curve.results),
                wall_time_s=float(sum(r.wall_time_s for r in curve.results)),
            )
        )
    return rows


def _csv_rows(record: RunRecord):
    t = record.train
    base = (record.model, record.scheme, record.seed)
    for split, steps, loss, acc in (
        ("train", t.step, t.loss, t.accuracy),
        ("test", t.eval_step, t.eval_loss, t.eval_accuracy),
    ):
        for i, step in enumerate(steps):
            accuracy = "" if acc is None else format_number(float(acc[i]), exact=True)
            yield (*base, int(step), split, format_number(float(loss[i]), exact=True), accuracy)


def training_csv(results: Results) -> str:
    """training.csv as text (:data:`TRAINING_COLUMNS`): every logged training step and every
    held-out evaluation of every run, numbers written exactly (``format_number(exact=True)``);
    accuracy is empty for regression."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TRAINING_COLUMNS)
    for record in results.trained:
        writer.writerows(_csv_rows(record))
    return buf.getvalue()


# ------------------------------------------------------------------------------ checkpoints


def checkpoint_curves(results: Results) -> dict[tuple[str, str], dict[int, Curve]]:
    """Per model × scheme, per checkpoint step, the :class:`~isokit.report.series.Curve` of the
    checkpoint Profiles of its seeds (pooled like the report's initialization curves)."""
    steps = sorted({s for r in results.trained for s in r.train.checkpoints})
    out: dict[tuple[str, str], dict[int, Curve]] = {}
    for step in steps:
        view = Results(
            config=results.config,
            records=[
                RunRecord(
                    model=r.model,
                    scheme=r.scheme,
                    seed=r.seed,
                    status="ok",
                    profile=r.train.checkpoints[step],
                )
                for r in results.trained
                if step in r.train.checkpoints
            ],
            environment={},
        )
        for curve in collect_curves(view):
            out.setdefault((curve.model, curve.scheme), {})[step] = curve
    return out
