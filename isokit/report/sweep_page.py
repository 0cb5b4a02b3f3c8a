"""The report of a sweep directory (``isokit report --from SWEEP_DIR --out DIR``).

Layout of ``DIR``::

    sweep.csv              tidy: one row per cell × statistic at the cell's last tap, every
                           axis a column, the cell's status and, when it trained, its outcomes
    figures/NAME.{png,svg,pdf}
    report.html            one self-contained page (figures embedded)

Figures (:mod:`.sweep_figures`): per group of cells that share everything but depth, scheme and
seed, the statistics at the last tap against depth (``depth_*``); the same against width when
width is swept (``width_*``); and where cells trained, the trainability maps (``trainability_*``).
The page also lists the cells that failed (their axes, error type and message), the cells whose
scheme did not apply, the cells not yet run, and why a theory line is missing where it is.

Files are written through :class:`~isokit.report.io.ReportDir` like every report
(:func:`isokit.report.publish.publish`): ``DIR`` holds the complete old report or the complete
new one.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib import rc_context

from isokit.report import style as S
from isokit.report.formatting import format_number
from isokit.report.html import PAGE_CSS, figure_html, kv_table
from isokit.report.io import FIGURES, PAGE, SWEEP, ReportDir
from isokit.report.publish import FigureImage, FigureSet
from isokit.report.results import now_utc
from isokit.report.series import STATS
from isokit.report.sweep_figures import XI_FACTOR, axis_figure, map_figure
from isokit.report.sweep_series import (
    AxisSeries,
    TrainMap,
    axis_series,
    groups,
    map_axes,
    train_map,
    value_label,
)
from isokit.report.training_series import isometry_statistic

if TYPE_CHECKING:
    from isokit.sweep import CellResult, SweepResults

__all__ = ["SWEEP_CSV", "SweepFigures", "build_sweep_figures", "publish_sweep", "sweep_csv"]

#: The sweep report's tidy table.
SWEEP_CSV = SWEEP
#: The training outcomes of a cell in sweep.csv (empty for a cell that did not train).
TRAIN_COLUMNS = ("final_accuracy", "final_loss", "steps_to_target", "diverged_at")

_AXIS_CAPTION = (
    "Each panel is one statistic of the end-to-end Jacobian (the last tap of every cell) "
    "against {axis} on a log₂ axis, one line per scheme: the median over seeds and inputs, the "
    "band their 10–90 % range. Dashed lines in a scheme's colour are the theory's prediction for "
    "the same tap where it has one (the reasons where it has none are listed below)."
)
_MAP_CAPTION = (
    "Per scheme, the median over seeds of the steps until the held-out accuracy first reached "
    "the target (hatched grey: not reached by half the seeds or more) and the median final "
    "held-out value over the seeds that did not diverge; × k/n: k of the n seeds diverged. "
    "Red lines: depth = ξ_c, the theory's correlation depth scale of the row's weight law, and "
    "depth = 6·ξ_c, beyond which Schoenholz et al. found such networks untrainable."
)


def _schemes(sweep: SweepResults) -> list[str]:
    return list(dict.fromkeys(c["axes"]["scheme"] for c in sweep.cells))


def _axis_values(sweep: SweepResults, axis: str) -> list[Any]:
    return list(dict.fromkeys(c["axes"][axis] for c in sweep.cells if axis in c["axes"]))


class SweepFigures:
    """Every figure of a sweep report in page order, with what the page says beside them:
    ``series`` (the axis figures' data), ``maps`` (the trainability maps' data)."""

    def __init__(self, sweep: SweepResults, formats: Sequence[str]) -> None:
        self.out = FigureSet(formats)
        self.series: list[AxisSeries] = []
        self.maps: list[list[TrainMap]] = []
        self.palette = S.Palette(tuple(_schemes(sweep)))
        with rc_context(S.style()):
            for axis in ("depth", "width"):
                if len(_axis_values(sweep, axis)) > 1:
                    self._axis(sweep, axis)
            if any(r.record is not None and r.record.train is not None for r in sweep.results):
                self._maps(sweep)

    @property
    def images(self) -> list[tuple[FigureImage, dict[str, bytes]]]:
        return self.out.images

    def _axis(self, sweep: SweepResults, axis: str) -> None:
        found = [axis_series(g, axis) for g in groups(sweep, [axis])]
        found = [s for s in found if s.curves]
        slugs = S.unique_slugs([s.group.label for s in found])
        for s in found:
            fig = axis_figure(s, self.palette)
            title = f"Statistics at the last tap against {axis}: {s.group.label}"
            self.out.add(
                fig, f"{axis}_{slugs[s.group.label]}", title, _AXIS_CAPTION.format(axis=axis)
            )
            self.series.append(s)

    def _maps(self, sweep: SweepResults) -> None:
        x, y = map_axes(sweep)
        spans = [x] if y is None else [x, y]
        found = []
        for g in groups(sweep, spans):
            maps = [train_map(g, s, x, y) for s in _schemes(sweep)]
            maps = [m for m in maps if m is not None]
            if maps:
                found.append(maps)
        slugs = S.unique_slugs([maps[0].group.label for maps in found])
        for maps in found:
            label = maps[0].group.label
            fig = map_figure(maps, self.palette)
            self.out.add(
                fig, f"trainability_{slugs[label]}", f"Trainability: {label}", _MAP_CAPTION
            )
            self.maps.append(maps)


def build_sweep_figures(sweep: SweepResults, formats: Sequence[str] = ("png",)) -> SweepFigures:
    """Every figure of the sweep report, rendered in memory (module docstring)."""
    return SweepFigures(sweep, formats)


# ------------------------------------------------------------------------------ sweep.csv


def _axis_names(sweep: SweepResults) -> list[str]:
    return list(dict.fromkeys(k for c in sweep.cells for k in c["axes"]))


def _train_values(cell: CellResult) -> list[str]:
    t = cell.record.train if cell.record is not None else None
    if t is None:
        return [""] * len(TRAIN_COLUMNS)
    steps = (t.steps_to_target, t.diverged_at)
    return [
        *(
            "" if v is None else format_number(v, exact=True)
            for v in (t.final_accuracy, t.final_loss)
        ),
        *("" if v is None else str(int(v)) for v in steps),
    ]


def sweep_csv(sweep: SweepResults) -> str:
    """sweep.csv as text: per finished cell one row per statistic of
    :data:`~isokit.report.series.STATS` at its last tap (the median over its examples, written
    exactly), every axis a column (empty where the cell has none); a cell without a profile
    (not applicable, failed) has one row with an empty statistic. The training outcomes are
    columns when some cell trained."""
    names = _axis_names(sweep)
    trained = any(r.record is not None and r.record.train is not None for r in sweep.results)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["key", *names, "status", "tap", "statistic", "value", *(TRAIN_COLUMNS if trained else ())]
    )
    for cell in sweep.results:
        axes = ["" if cell.axes.get(k) is None else str(cell.axes[k]) for k in names]
        extra = _train_values(cell) if trained else []
        profile = cell.record.profile if cell.record is not None else None
        if profile is None or not len(profile):
            writer.writerow([cell.key, *axes, cell.status, "", "", "", *extra])
            continue
        for stat in STATS:
            value = format_number(isometry_statistic(profile, stat), exact=True)
            writer.writerow([cell.key, *axes, cell.status, profile.names[-1], stat, value, *extra])
    return buf.getvalue()


# ------------------------------------------------------------------------------ the page


def _axes_text(axes: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {value_label(v)}" for k, v in axes.items())


def _failed(sweep: SweepResults) -> str:
    failed = [r for r in sweep.results if r.status == "error"]
    if not failed:
        return "<p>No cell failed.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(_axes_text(r.axes))}</td>"
        f"<td>{html.escape(str((r.error or {}).get('type', '')))}</td>"
        f"<td>{html.escape(str((r.error or {}).get('message', '')))}</td>"
        f"<td>{html.escape(r.key)}</td></tr>"
        for r in failed
    )
    return (
        f"<p>{len(failed)} cells raised an error; their files in <code>cells/</code> hold the "
        "traceback. Delete a file and rerun <code>isokit sweep</code> to recompute it.</p>"
        "<table class='failed'><thead><tr><th>axes</th><th>error</th><th>message</th>"
        f"<th>key</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _not_applicable(sweep: SweepResults) -> str:
    seen: dict[tuple[str, str], int] = {}
    for r in sweep.results:
        if r.status == "not applicable":
            message = r.record.message if r.record is not None else ""
            key = (str(r.axes.get("scheme")), message)
            seen[key] = seen.get(key, 0) + 1
    if not seen:
        return ""
    items = "".join(
        f"<li><b>{html.escape(s)}</b> ({n} cells): {html.escape(msg)}</li>"
        for (s, msg), n in seen.items()
    )
    return f"<h2>Not applicable</h2><ul>{items}</ul>"


def _theory_reasons(series: Sequence[AxisSeries]) -> str:
    merged: dict[tuple[str, str, str, str], list[Any]] = {}
    for s in series:
        for scheme, x, reason in s.reasons:
            merged.setdefault((s.axis, s.group.label, scheme, reason), []).append(x)
    if not merged:
        return ""
    items = "".join(
        f"<li><b>{html.escape(scheme)}</b> on {html.escape(group)} at {html.escape(axis)} "
        f"{html.escape(', '.join(value_label(x) for x in xs))}: <i>no line</i>, because "
        f"{html.escape(reason)}.</li>"
        for (axis, group, scheme, reason), xs in merged.items()
    )
    return (
        "<h2>Where the theory draws no line</h2><p>Per scheme and point, why the figures have no "
        f"dashed theory line there (docs/theory.md §7).</p><ul class='theory'>{items}</ul>"
    )


def _depth_scales(maps: Sequence[Sequence[TrainMap]]) -> str:
    rows = []
    for group in maps:
        for m in group:
            for p in m.xi:
                rows.append(
                    f"<tr><td>{html.escape(m.group.label)}</td><td>{html.escape(m.scheme)}</td>"
                    f"<td>{html.escape(value_label(p.y))}</td><td>{html.escape(p.activation)}</td>"
                    + "".join(
                        f"<td class='num'>{format_number(v, html=True)}</td>"
                        for v in (p.sigma_w2, p.sigma_b2, p.xi_c, XI_FACTOR * p.xi_c)
                    )
                    + "</tr>"
                )
    if not rows:
        return ""
    y = next((m.y for group in maps for m in group if m.y), "row")
    return (
        "<h2>Depth scales of the maps</h2><p>The theory's correlation depth scale ξ_c = "
        "−1/log χ_c of each row's weight law (isokit.theory.depth_scales, docs/theory.md §1.3), "
        "drawn on the maps.</p><table><thead><tr><th>group</th><th>scheme</th>"
        f"<th>{html.escape(y)}</th><th>φ</th><th>σ_w²</th><th>σ_b²</th><th>ξ_c</th>"
        f"<th>6·ξ_c</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


_HOW_TO_READ = """
<p>Every cell of the grid is one model × scheme × seed, probed (and trained, with a
<code>[train]</code> section) exactly as <code>isokit report</code> runs it. The figures look at
the last tap of each cell, its input–output Jacobian end to end, and follow each statistic
across the grid: a scheme that keeps a network dynamically isometric keeps the isometry gap and
the scale-free variance near 0, m1 near 1 and the rank fraction near 1 at every depth, while
under the others they grow (or m1 drifts) with depth. The trainability maps set the same grid
against how the cells trained; where the theory has a correlation depth scale ξ_c, networks
deeper than a few ξ_c are expected not to train.</p>
"""


def _summary(sweep: SweepResults) -> str:
    counts: dict[str, int] = {}
    for r in sweep.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = [f"{n} {status}" for status, n in counts.items()]
    missing = (
        f"; <b>{sweep.missing} missing</b> (not yet run: rerun <code>isokit sweep</code> with "
        "the same config and directory to compute them)"
        if sweep.missing
        else "; 0 missing"
    )
    return (
        f"<p>{len(sweep.cells)} cells in the grid: {html.escape(', '.join(parts) or 'none run')}"
        f"{missing}.</p>"
    )


def render_sweep_html(sweep: SweepResults, figures: SweepFigures, created: str) -> str:
    """The whole page as a string; every text from the sweep goes through :func:`html.escape`."""
    title = str(sweep.config.get("title", "isokit sweep"))
    images = [img for img, _ in figures.images]
    toc = "".join(
        f"<li><a href='#{html.escape(f.name, quote=True)}'>{html.escape(f.title)}</a></li>"
        for f in images
    )
    env = next((r.environment for r in sweep.results if r.environment), {})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">Sweep of {html.escape(sweep.source)} (grid {html.escape(sweep.grid_key)}).
Generated {html.escape(created)} by isokit {html.escape(str(env.get("isokit", "")))}.</p>
{_summary(sweep)}
<h2>Failed cells</h2>
{_failed(sweep)}
<h2>How to read this report</h2>
{_HOW_TO_READ}
<h2>Figures</h2>
<ol>{toc or "<li>No cell has a profile to plot yet.</li>"}</ol>
{"".join(figure_html(f) for f in images)}
{_depth_scales(figures.maps)}
{_theory_reasons(figures.series)}
{_not_applicable(sweep)}
<h2>Environment (first cell)</h2>
{kv_table(env)}
<h2>Sweep configuration</h2>
<pre>{html.escape(json.dumps(sweep.config, indent=2, default=str))}</pre>
</body></html>
"""


def _formats(sweep: SweepResults) -> tuple[str, ...]:
    from isokit.report.config import load_config

    config = next((r.config for r in sweep.results if r.config is not None), None)
    return (config or load_config()).formats


def publish_sweep(target: ReportDir, sweep: SweepResults, *, quiet: bool = False) -> Path:
    """Lock ``target``, write the sweep report (module docstring), swap it in, say so; return
    the page's path. Every payload is built before the first file is written."""
    with target:
        formats = _formats(sweep)
        figures = build_sweep_figures(sweep, formats)
        files: dict[str, str | bytes] = {
            SWEEP_CSV: sweep_csv(sweep),
            **{
                f"{FIGURES}/{img.name}.{fmt}": blobs[fmt]
                for img, blobs in figures.images
                for fmt in formats
            },
            PAGE: render_sweep_html(sweep, figures, now_utc()),
        }
        for name, data in files.items():
            target.write(name, data)
        target.commit()
    page = target.path / PAGE
    if not quiet:
        print(f"isokit: wrote {page}", file=sys.stderr)
    return page
