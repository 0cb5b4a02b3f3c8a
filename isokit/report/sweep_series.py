"""What the sweep report plots, read out of a sweep's cells and aggregated over seeds.

A sweep's figures are about the *last tap* of each cell, its end-to-end Jacobian. The cells are
first cut into :class:`Group` objects, those that share every axis but the ones a figure spans
(:func:`groups`); within a group, :func:`axis_series` gives per scheme a
:class:`~isokit.report.series.Curve` whose ``depth`` is the swept axis (``depth`` or ``width``)
and whose values at each point are the last-tap values of every seed and example of that cell,
so its median and band are the report's own (:data:`~isokit.report.series.BAND`). Each cell is
read through :func:`~isokit.report.series.collect_curves`, and the theory's prediction for the
same tap through :func:`~isokit.report.theory_lines.theory_for` and
:func:`~isokit.report.figures.theory_values`: nothing here restates a statistic or a formula.

:func:`train_map` is the trainability map of a group: per scheme, over two axes, the training
table's numbers (:func:`~isokit.report.training_series.training_rows`) of the seeds of each cell,
and where the theory gives one, the correlation depth scale ξ_c of each row's weight law
(:func:`isokit.theory.depth_scales`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from isokit.report.figures import theory_values
from isokit.report.results import Results
from isokit.report.series import RANK_STATS, STATS, Curve, collect_curves
from isokit.report.theory_lines import theory_for
from isokit.report.training_series import training_rows

if TYPE_CHECKING:
    from isokit.sweep import CellResult, SweepResults

__all__ = [
    "AXIS_STATS",
    "AxisSeries",
    "Group",
    "TrainMap",
    "XI_SAMPLES",
    "XiPoint",
    "axis_series",
    "cell_results",
    "groups",
    "map_axes",
    "train_map",
    "value_label",
]

#: The statistics of the sweep's axis figures: the ranking's, then the bulk moments a
#: residual chain's theory predicts (drawn only where some line does).
AXIS_STATS = (*RANK_STATS, "m1_bulk", "var_bulk")
#: Axes that never define a group: what a line, a seed or a row is.
LINE_AXES = ("scheme", "seed")
OPTION = "option."
_MISSING = object()


def value_label(value: Any) -> str:
    """An axis value as the page and the file names write it.

    Example:
        >>> value_label(0.5), value_label("tanh"), value_label(None)
        ('0.5', 'tanh', '–')
    """
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(kw_only=True, eq=False)
class Group:
    """Cells that share the values ``fixed`` of every axis a figure does not span (a cell
    without one of those axes, a scheme that does not take a swept option, joins every group
    it agrees with); ``label`` names the group on the page."""

    fixed: dict[str, Any]
    label: str
    cells: list[CellResult] = field(default_factory=list)


def _varying(sweep: SweepResults) -> dict[str, list[Any]]:
    """Every axis of the manifest with its distinct values, in grid order."""
    values: dict[str, list[Any]] = {}
    for cell in sweep.cells:
        for k, v in cell["axes"].items():
            if v not in values.setdefault(k, []):
                values[k].append(v)
    return values


def _agrees(axes: dict[str, Any], fixed: dict[str, Any]) -> bool:
    return all(axes.get(k, v) == v for k, v in fixed.items())


def groups(sweep: SweepResults, spans: Sequence[str]) -> list[Group]:
    """The finished cells cut into groups that share everything but ``spans`` (and the scheme
    and seed), in grid order (module docstring).

    A combination of the other axes that a more complete one refines (the cells of a scheme
    without the swept option) is no group of its own: its cells join each refining group.
    """
    values = _varying(sweep)
    names = [k for k in values if k not in spans and k not in LINE_AXES]
    combos: list[tuple] = []
    for cell in sweep.cells:
        combo = tuple(cell["axes"].get(k, _MISSING) for k in names)
        if combo not in combos:
            combos.append(combo)

    def refines(a: tuple, b: tuple) -> bool:  # a says all b says, and more
        return a != b and all(y is _MISSING or x == y for x, y in zip(a, b, strict=True))

    kept = [c for c in combos if not any(refines(o, c) for o in combos)]
    shown = [k for k in names if k == "model" or len(values[k]) > 1]
    out = []
    for combo in kept:
        fixed = {k: v for k, v in zip(names, combo, strict=True) if v is not _MISSING}
        label = " · ".join(
            fixed[k] if k == "model" else f"{k}={value_label(fixed[k])}"
            for k in shown
            if k in fixed
        )
        mine = [r for r in sweep.results if _agrees(r.axes, fixed)]
        out.append(Group(fixed=fixed, label=label or "all cells", cells=mine))
    return [g for g in out if g.cells]


def cell_results(cells: Sequence[CellResult]) -> Results | None:
    """The cells that ran (one model × scheme, any seeds) as the report's :class:`Results`."""
    ran = [c for c in cells if c.record is not None and c.config is not None]
    if not ran:
        return None
    return Results(config=ran[0].config, records=[c.record for c in ran], environment={})


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of unequal length (points with fewer seeds) stacked, NaN-padded."""
    width = max((r.size for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


@dataclass(kw_only=True, eq=False)
class AxisSeries:
    """One group's statistics at the last tap against ``axis``.

    ``curves`` holds one :class:`~isokit.report.series.Curve` per scheme whose ``depth`` is the
    values of ``axis`` (``values[stat]`` is ``[points, seeds × examples]``, ``names`` the last
    tap of each point); ``theory[scheme][stat]`` the theory's prediction at those points (NaN
    where it gives none) and ``reasons`` ``(scheme, value, reason)`` where it gives none.
    """

    axis: str
    group: Group
    curves: list[Curve]
    theory: dict[str, dict[str, np.ndarray]]
    reasons: list[tuple[str, Any, str]]


def _last_tap(one: Results) -> tuple[Curve | None, Any]:
    """The cell's curve (all its seeds pooled) and its theory at the same taps."""
    curves = collect_curves(one)
    if not curves:
        return None, None
    curve = curves[0]
    return curve, theory_for(one, curves).get((curve.model, curve.scheme))


def _predicted(line, depth: int) -> dict[str, float]:
    """The theory line's value of every statistic at tap ``depth`` (NaN where none)."""
    out = {}
    for stat in AXIS_STATS:
        values = theory_values(line, stat)
        at = np.flatnonzero(np.asarray(line.depth) == depth) if values is not None else []
        out[stat] = float(values[at[0]]) if len(at) else math.nan
    return out


def axis_series(group: Group, axis: str) -> AxisSeries:
    """The last-tap statistics of ``group`` against ``axis`` (module docstring)."""
    curves, theory, reasons = [], {}, []
    for scheme in dict.fromkeys(c.axes["scheme"] for c in group.cells):
        mine = [c for c in group.cells if c.axes["scheme"] == scheme and axis in c.axes]
        xs = sorted({c.axes[axis] for c in mine})
        points, names, predicted = [], [], []
        for x in xs:
            one = cell_results([c for c in mine if c.axes[axis] == x])
            curve, line = _last_tap(one) if one is not None else (None, None)
            if curve is None:
                continue
            points.append((x, {s: curve.values[s][-1] for s in STATS}))
            names.append(curve.names[-1])
            last = int(curve.depth[-1])
            if line is not None and not isinstance(line, str) and last not in line.depth:
                line = (
                    f"its theory line ends at depth {int(max(line.depth))}, before the last tap "
                    f"{curve.names[-1]} (depth {last})"
                )
            if isinstance(line, str):
                reasons.append((scheme, x, line))
            predicted.append(_predicted(line, last) if line and not isinstance(line, str) else {})
        if not points:
            continue
        seeds = max(len({c.axes.get("seed") for c in mine if c.axes[axis] == x}) for x, _ in points)
        curves.append(
            Curve(
                model=group.label,
                scheme=scheme,
                depth=np.array([x for x, _ in points]),
                names=names,
                values={s: _padded([v[s] for _, v in points]) for s in STATS},
                sigma=[None] * len(points),
                seeds=seeds,
            )
        )
        theory[scheme] = {s: np.array([p.get(s, math.nan) for p in predicted]) for s in AXIS_STATS}
    return AxisSeries(axis=axis, group=group, curves=curves, theory=theory, reasons=reasons)


# ------------------------------------------------------------------------------ trainability


def map_axes(sweep: SweepResults) -> tuple[str, str | None]:
    """The map's ``(x, y)``: depth, and the other swept axis with the most values (``None``
    when depth is the only one)."""
    values = _varying(sweep)
    others = [
        k for k, v in values.items() if len(v) > 1 and k not in ("model", "depth", *LINE_AXES)
    ]
    y = max(others, key=lambda k: len(values[k]), default=None)  # ties: the first in grid order
    return "depth", y


@dataclass(frozen=True, kw_only=True)
class XiPoint:
    """The correlation depth scale ξ_c of the weight law at ``y`` on a map: ``row`` is where
    ``y`` lies among the map's rows (an integer at a row, fractional between two rows of a
    swept scheme option), ``sigma_w2`` and ``sigma_b2`` the law's variances."""

    y: Any
    row: float
    activation: str
    sigma_w2: float
    sigma_b2: float
    xi_c: float


#: Points of the ξ_c curve per interval between two rows of a swept scheme option.
XI_SAMPLES = 12


def _xi(cell: CellResult, option: str | None, y: Any, row: float) -> XiPoint | None:
    """ξ_c of the cell's law, with the scheme option ``option`` set to ``y``: the scheme's own
    σ_w² on the model kind's chain, as :mod:`.theory_lines` gets them."""
    from isokit.init import get_scheme
    from isokit.theory import depth_scales

    model, scheme = cell.config.models[0], cell.config.schemes[0]
    chain = model.chain()
    if chain is None or chain.residual_scale is not None:
        return None
    options = dict(scheme.options) if option is None else {**scheme.options, option: y}
    try:
        law = get_scheme(scheme.name).weight_law(options, fan_in=chain.fan_in, bias=chain.bias)
        if law is None:
            return None
        scales = depth_scales(act=chain.activation, sw2=law.sigma_w2, sb2=law.sigma_b2)
    except (ValueError, TypeError, ArithmeticError):
        return None
    return XiPoint(
        y=y,
        row=row,
        activation=chain.activation,
        sigma_w2=law.sigma_w2,
        sigma_b2=law.sigma_b2,
        xi_c=float(scales.xi_c.value),
    )


def _xi_curve(rows: list[list[CellResult]], y: str | None, ys: list[Any]) -> list[XiPoint]:
    """ξ_c at every row, and between the rows of a swept numeric scheme option (whose law
    changes continuously with it)."""
    option = y[len(OPTION) :] if y is not None and y.startswith(OPTION) else None
    numeric = option is not None and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in ys
    )
    out = []
    for i, (cells, value) in enumerate(zip(rows, ys, strict=True)):
        steps = [0.0]
        if numeric and i + 1 < len(ys):
            steps = list(np.linspace(0.0, 1.0, XI_SAMPLES, endpoint=False))
        for t in steps:
            v = value if t == 0 else value + t * (ys[i + 1] - value)
            point = _xi(cells[0], option if numeric else None, v, i + t)
            if point is not None:
                out.append(point)
    return out


@dataclass(kw_only=True, eq=False)
class TrainMap:
    """One scheme of a group over ``xs`` × ``ys`` (``ys == [None]`` when the scheme's cells do
    not have the ``y`` axis). Arrays are ``[len(ys), len(xs)]``: ``steps`` the median steps to
    the target (``inf``: not reached by half the seeds or more; NaN: no cell or no target),
    ``final`` the median final held-out ``metric`` over the seeds that did not diverge (NaN
    when all did), ``diverged`` and ``runs`` counts; ``xi`` the theory's ξ_c per row."""

    group: Group
    scheme: str
    x: str
    y: str | None
    xs: list[Any]
    ys: list[Any]
    steps: np.ndarray
    final: np.ndarray
    diverged: np.ndarray
    runs: np.ndarray
    metric: str
    target: float | None
    xi: list[XiPoint]


def train_map(group: Group, scheme: str, x: str, y: str | None) -> TrainMap | None:
    """The trainability map of one scheme of ``group`` (module docstring); ``None`` when none
    of its cells trained."""
    mine = [
        c
        for c in group.cells
        if c.axes["scheme"] == scheme and c.record is not None and c.record.train is not None
    ]
    if not mine:
        return None
    xs = sorted({c.axes[x] for c in mine})
    has_y = y is not None and any(y in c.axes for c in mine)
    ys = sorted({c.axes[y] for c in mine}) if has_y else [None]
    shape = (len(ys), len(xs))
    steps, final = np.full(shape, np.nan), np.full(shape, np.nan)
    diverged, runs = np.zeros(shape, int), np.zeros(shape, int)
    metric, target, by_row = "accuracy", None, []
    for i, yv in enumerate(ys):
        row = [c for c in mine if not has_y or c.axes[y] == yv]
        by_row.append(row)
        for j, xv in enumerate(xs):
            one = cell_results([c for c in row if c.axes[x] == xv])
            rows = training_rows(one) if one is not None else []
            if not rows:
                continue
            r = rows[0]
            steps[i, j] = math.nan if r.median_steps is None else r.median_steps
            final[i, j] = math.nan if r.final is None else r.final
            diverged[i, j], runs[i, j], metric = r.diverged, r.runs, r.metric
            target = r.target if r.target is not None else target
    return TrainMap(
        group=group,
        scheme=scheme,
        x=x,
        y=y if has_y else None,
        xs=xs,
        ys=ys,
        steps=steps,
        final=final,
        diverged=diverged,
        runs=runs,
        metric=metric,
        target=target,
        xi=_xi_curve(by_row, y if has_y else None, ys),
    )
