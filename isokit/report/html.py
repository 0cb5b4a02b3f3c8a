"""``report.html``: one self-contained page (figures inlined as base64 PNG, no external assets).

The page opens offline in any browser and can be mailed as one file. Every piece of text that comes
from a config or a results file goes through :func:`html.escape`, so a model label such as
``<script>`` shows up as text.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from isokit.report.formatting import format_number
from isokit.report.series import RANK_STATS

if TYPE_CHECKING:  # the view reads these; the code that computes them owns them
    from isokit.report.publish import FigureImage
    from isokit.report.series import RankRow
    from isokit.report.training_series import TrainRow

__all__ = ["PAGE_CSS", "figure_html", "kv_table", "render_html"]


def _fmt(value: float | None) -> str:
    return format_number(value, html=True)


PAGE_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1b1b1b;background:#fff;max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin-top:1.8em;
 border-bottom:1px solid #ccc;padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .3em}
.meta{color:#555;font-size:.92em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d0d0;padding:3px 9px;text-align:left}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.na td{color:#777;font-style:italic}
figure{margin:1.2em 0 2em}figure img{max-width:100%;height:auto;border:1px solid #e3e3e3}
figcaption{color:#333;font-size:.93em;margin-top:.3em}
pre{background:#f6f6f6;padding:10px;overflow-x:auto;font-size:.85em}
.files{color:#666;font-size:.85em}
"""

_HOW_TO_READ = """
<p>Each probe measures the input–output Jacobian <i>J<sub>l</sub> = ∂h<sub>l</sub>/∂x</i> of the
model at every <em>tap</em> (a block output) for a few random inputs, at initialization. A network
is <em>dynamically isometric</em> when all singular values σ of <i>J<sub>l</sub></i> are close to 1
at every depth: signals and gradients then pass through without being amplified, shrunk or
distorted.</p>
<ul>
<li><b>m1</b> = mean σ²: the average gain. It should stay near 1 across depth; exponential growth
or decay means exploding or vanishing signals.</li>
<li><b>Scale-free variance</b> = m2/m1² − 1: the spread of σ² around its mean, independent of
scale. 0 means every direction is scaled alike.</li>
<li><b>Isometry gap</b> = log m1 − mean log σ² (log of the arithmetic over the geometric mean
of σ²): 0 exactly when all σ are equal, ∞ when some σ is 0 (the Jacobian has lost rank).</li>
<li><b>Rank fraction</b> = the share of singular values that are not zero. ReLU masks and a
stem that reads only part of its input make Jacobians rank-deficient, which makes the gap and
the condition number of the whole spectrum infinite. The statistics marked <i>non-zero σ</i>
measure the same things on the non-zero singular values only, so they stay informative. The
ranking orders schemes at the last tap by rank fraction (higher is better), then by the
isometry gap of the non-zero part (lower is better).</li>
<li><b>Condition number</b> σ<sub>max</sub>/σ<sub>min</sub>: 1 is ideal; ∞ marks a
rank-deficient Jacobian. Infinite values are drawn at the top edge of the plots with a ▲.</li>
<li><b>Forward signal</b>: q<sub>l</sub> is the mean squared activation at tap l, c<sub>l</sub>
the mean cosine similarity between the activations of different inputs. c<sub>l</sub> → 1 means
all inputs collapse onto one direction.</li>
</ul>
<p>Lines are medians over seeds and inputs; bands span the spread across them. Dashed lines in
a scheme's colour are theory predictions where isokit has one for that model and scheme (listed
under "Theory lines" with their sources). A scheme marked
<i>not applicable</i> could not be applied to that model (for example Fixup needs residual
branches), and the message says why.</p>
"""


#: Column headers of the ranking table (``docs/probes.md §5`` defines the statistics).
_RANK_HEADERS = {
    "rank_fraction": "rank fraction",
    "gap_nonzero": "isometry gap (non-zero σ)",
    "var_nonzero": "scale-free var. (non-zero σ)",
    "cond_nonzero": "cond (non-zero σ)",
    "gap": "isometry gap (all σ)",
    "var": "scale-free var. (all σ)",
    "m1": "m1",
}


def _ranking_table(rows: Sequence[RankRow]) -> str:
    if not rows:
        return "<p>No Jacobian profiles were computed, so there is no ranking.</p>"
    out: list[str] = []
    for model in dict.fromkeys(r.model for r in rows):
        out.append(f"<h3>{html.escape(model)}</h3>")
        head = "".join(f"<th>{html.escape(_RANK_HEADERS[stat])}</th>" for stat in RANK_STATS)
        out.append(
            "<table class='ranking'><thead><tr><th>#</th><th>scheme</th>"
            f"{head}<th>seeds</th><th>note</th></tr></thead><tbody>"
        )
        for r in (r for r in rows if r.model == model):
            cls = " class='na'" if r.status != "ok" else ""
            place = "–" if r.place is None else str(r.place)
            cells = "".join(f"<td class='num'>{_fmt(getattr(r, stat))}</td>" for stat in RANK_STATS)
            out.append(
                f"<tr{cls}><td class='num'>{place}</td><td>{html.escape(r.scheme)}</td>{cells}"
                f"<td class='num'>{r.seeds}</td><td>{html.escape(r.note or r.status)}</td></tr>"
            )
        out.append("</tbody></table>")
    return "\n".join(out)


def _steps_cell(row: TrainRow) -> str:
    if row.median_steps is None:
        return "–"
    reached = f" ({row.reached}/{row.runs} reached)"
    if row.median_steps == float("inf"):
        return "not reached" + reached
    return _fmt(row.median_steps) + reached


def _training_table(rows: Sequence[TrainRow]) -> str:
    """Per model, one line per scheme: steps to the target, the final value, divergences."""
    if not rows:
        return ""
    out = [
        "<h2>Training</h2><p>Every model × scheme × seed trained after its probes. Steps to the "
        "target: the median over seeds of the first evaluated step whose held-out accuracy "
        "reached it (a run that never did counts as infinitely many). Final: the median over "
        "the runs that did not diverge of the last held-out value.</p>"
    ]
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        metric = mine[0].metric
        targets = {r.target for r in mine if r.target is not None}
        steps_head = "steps to target"
        if len(targets) == 1:
            steps_head += f" (accuracy ≥ {_fmt(targets.pop())})"
        out.append(
            f"<h3>{html.escape(model)}</h3><table class='training'><thead><tr><th>scheme</th>"
            f"<th>optimizer and step size</th><th>{html.escape(steps_head)}</th>"
            f"<th>final held-out {metric}</th><th>diverged / runs</th>"
            "<th>training time (s)</th></tr></thead><tbody>"
        )
        for r in mine:
            out.append(
                f"<tr><td>{html.escape(r.scheme)}</td><td>{html.escape(r.step_size)}</td>"
                f"<td class='num'>{html.escape(_steps_cell(r))}</td>"
                f"<td class='num'>{_fmt(r.final)}</td>"
                f"<td class='num'>{r.diverged}/{r.runs}</td>"
                f"<td class='num'>{_fmt(r.wall_time_s)}</td></tr>"
            )
        out.append("</tbody></table>")
    return "\n".join(out)


def figure_html(fig: FigureImage) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    files = ""
    if fig.files:
        links = ", ".join(
            f"<a href='{html.escape(f, quote=True)}'>{html.escape(f)}</a>" for f in fig.files
        )
        files = f"<div class='files'>Files: {links}</div>"
    return (
        f"<figure id='{html.escape(fig.name, quote=True)}'>"
        f"<h3>{html.escape(fig.title)}</h3>"
        f"<img src='data:image/png;base64,{data}' alt='{html.escape(fig.title, quote=True)}'>"
        f"<figcaption>{html.escape(fig.caption)}</figcaption>{files}</figure>"
    )


def _theory_list(theory: Sequence[tuple[str, str, str, str | None]]) -> str:
    """Per model: each theory line drawn, with its source, then why the other schemes have
    none (schemes with the same reason named together)."""
    if not theory:
        return ""
    items = []
    for model in dict.fromkeys(m for m, *_ in theory):
        where = f"on <b>{html.escape(model)}</b>"
        reasons: dict[str, list[str]] = {}
        for m, s, text, cite in theory:
            if m != model:
                continue
            if cite is None:
                reasons.setdefault(text, []).append(s)
                continue
            source = f"<span class='meta'>{html.escape(cite)}</span>"
            items.append(f"<li><b>{html.escape(s)}</b> {where}: {html.escape(text)}. {source}</li>")
        for text, schemes in reasons.items():
            names = ", ".join(f"<b>{html.escape(s)}</b>" for s in schemes)
            items.append(f"<li>{names} {where}: <i>no line</i>, because {html.escape(text)}.</li>")
    return (
        "<h2>Theory lines</h2><p>For each model and scheme, the theory drawn dashed in the "
        "figures, or why there is none (docs/theory.md §7).</p>"
        f"<ul class='theory'>{''.join(items)}</ul>"
    )


def kv_table(items: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in items.items()
    )
    return f"<table class='env'>{rows}</table>"


def render_html(
    *,
    title: str,
    figures: Sequence[FigureImage],
    ranking: Sequence[RankRow],
    not_applicable: Sequence[tuple[str, str, str]],
    config: dict[str, Any],
    environment: dict[str, Any],
    created: str,
    notes: Sequence[str] = (),
    theory: Sequence[tuple[str, str, str, str | None]] = (),
    training: Sequence[TrainRow] = (),
) -> str:
    """The whole page as a string.

    ``not_applicable`` holds ``(model, scheme, message)``; ``theory`` holds ``(model, scheme,
    label, citation)`` for every theory line drawn and ``(model, scheme, reason, None)`` for
    every model × scheme without one; ``training`` the rows of the training table (none: no
    training section).
    """
    na = ""
    if not_applicable:
        items = "".join(
            f"<li><b>{html.escape(s)}</b> on <b>{html.escape(m)}</b>: {html.escape(msg)}</li>"
            for m, s, msg in not_applicable
        )
        na = f"<h2>Not applicable</h2><ul>{items}</ul>"
    theory_html = _theory_list(theory)
    names = [f.name for f in figures]
    if len(set(names)) != len(names):  # a figure's name is its id on the page
        raise ValueError(f"figure names must be unique, got {names}")
    note_html = "".join(f"<p class='meta'>{html.escape(n)}</p>" for n in notes)
    toc = "".join(
        f"<li><a href='#{html.escape(f.name, quote=True)}'>{html.escape(f.title)}</a></li>"
        for f in figures
    )
    config_text = json.dumps(config, indent=2, sort_keys=False, default=str)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">Generated {html.escape(created)} by isokit
{html.escape(str(environment.get("isokit", "")))}.</p>
{note_html}
<h2>Ranking: isometry gap at the last tap</h2>
<p>Lower is closer to dynamical isometry (0 is perfect). Medians over seeds and inputs; schemes
with equal (e.g. infinite) gaps are ordered by their scale-free variance.</p>
{_ranking_table(ranking)}
{_training_table(training)}
<h2>How to read this report</h2>
{_HOW_TO_READ}
<h2>Figures</h2>
<ol>{toc}</ol>
{"".join(figure_html(f) for f in figures)}
{theory_html}
{na}
<h2>Environment</h2>
{kv_table(environment)}
<h2>Configuration</h2>
<pre>{html.escape(config_text)}</pre>
</body></html>
"""
