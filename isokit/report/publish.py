"""Turning :class:`Results` into a report directory: results.json, figures, ranking, report.html.

Layout of ``DIR``::

    results.json           every Profile, the resolved config, the environment
    summary.csv            tidy: one row per model × scheme × tap × statistic
    ranking.csv            the ranking table (isometry gap at the last tap)
    figures/NAME.{png,svg,pdf}
    report.html            one self-contained page (figures embedded)

Figures are drawn first, in memory; only then are files moved into place one by one through
:class:`~isokit.report.io.OutputDir`, so a failure while plotting leaves the directory as it was.
"""

from __future__ import annotations

import csv
import io
import sys
import types
from pathlib import Path
from typing import Any

from matplotlib import rc_context

from isokit.report import figures as F
from isokit.report import style as S
from isokit.report.html import FigureImage, render_html
from isokit.report.io import OutputDir
from isokit.report.results import Results
from isokit.report.series import collect_curves, collect_signals, fmt_number, ranking
from isokit.report.summary import summary_csv

__all__ = ["build_figures", "overlays_for", "render"]


def _theory_overlay():
    """``isokit.theory.overlay`` if it exists (the package may export it or only hold the
    submodule of that name), else ``None``."""
    try:
        from isokit import theory
    except ImportError:
        return None
    fn = getattr(theory, "overlay", None)
    if isinstance(fn, types.ModuleType):
        fn = getattr(fn, "overlay", None)
    return fn if callable(fn) else None


def overlays_for(results: Results, curves) -> dict[tuple[str, str], Any]:
    """Theory lines per (model, scheme) from ``isokit.theory.overlay`` where it has one."""
    overlay = _theory_overlay()
    if overlay is None:  # theory not there (yet): the report simply has no theory lines
        return {}
    models = {m.label: m for m in results.config.models}
    schemes = {s.label: s for s in results.config.schemes}
    out = {}
    for c in curves:
        m, s = models.get(c.model), schemes.get(c.scheme)
        if m is None or s is None:
            continue
        try:
            ov = overlay(
                kind=m.kind,
                model_args=dict(m.args),
                scheme=s.name,
                scheme_options=dict(s.options),
                taps=list(c.names),
            )
        except (ValueError, TypeError, ArithmeticError) as exc:
            # A theory function that cannot handle this case must not sink the report.
            print(
                f"isokit: note: no theory line for {c.model} × {c.scheme}: {exc}", file=sys.stderr
            )
            continue
        if ov is not None:
            out[(c.model, c.scheme)] = ov
    return out


def _image(fig, name: str, title: str, caption: str, formats) -> tuple[FigureImage, dict]:
    with_style = S.encode_figure(fig, formats)
    files = tuple(f"figures/{name}.{fmt}" for fmt in formats)
    return FigureImage(
        name=name, title=title, caption=caption, png=with_style["png"], files=files
    ), with_style


def build_figures(
    results: Results, curves=None, overlays=None
) -> list[tuple[FigureImage, dict[str, bytes]]]:
    """Every figure of the report, rendered in memory, in page order."""
    cfg = results.config
    models = [m.label for m in cfg.models]
    schemes = [s.label for s in cfg.schemes]
    palette = S.Palette(tuple(schemes))
    curves = collect_curves(results) if curves is None else curves
    overlays = overlays_for(results, curves) if overlays is None else overlays
    na = results.not_applicable()
    formats = cfg.formats
    out = []
    with rc_context(S.style()):
        for model in models:
            mc = [c for c in curves if c.model == model]
            if not mc:
                continue
            na_here = {s: msg for m, s, msg in na if m == model}
            fig = F.spectrum_figure(model, mc, schemes, na_here, S.Palette(tuple(schemes)))
            out.append(
                _image(
                    fig,
                    f"spectrum_{S.slug(model)}",
                    f"Singular values against depth: {model}",
                    "Median (line) and 25–75 % / 5–95 % bands of the singular values of the "
                    "input–output Jacobian at every tap, pooled over inputs and seeds, one panel "
                    "per scheme. Isometry means a thin band on the dotted line σ = 1.",
                    formats,
                )
            )
        if curves:
            ov_note = (
                " Dashed lines: theory (isokit.theory.overlay) where it applies."
                if overlays
                else ""
            )
            fig = F.stats_figure(
                models,
                curves,
                [("m1", "m1 = mean σ² (log)"), ("var", "scale-free variance m2/m1² − 1")],
                palette,
                title="Mean squared singular value and spread",
                overlays=overlays,
            )
            out.append(
                _image(
                    fig,
                    "moments",
                    "m1 and scale-free variance against depth",
                    "m1 (average gain) should stay near 1; the scale-free variance measures the "
                    "spread of σ² independently of scale (0 = all σ equal). Lines are medians over "
                    "inputs and seeds, bands the 10–90 % range." + ov_note,
                    formats,
                )
            )
            fig = F.stats_figure(
                models,
                curves,
                [
                    ("cond", "condition number σmax/σmin"),
                    ("gap", "isometry gap log m1 − mean log σ²"),
                ],
                palette,
                title="Conditioning against depth",
            )
            out.append(
                _image(
                    fig,
                    "conditioning",
                    "Condition number and isometry gap against depth",
                    "Both are 1 (cond) and 0 (gap) at perfect isometry and infinite when the "
                    "Jacobian loses rank; infinite values are drawn as ▲ at the top edge.",
                    formats,
                )
            )
            fig = F.histogram_figure(models, curves, palette)
            out.append(
                _image(
                    fig,
                    "histograms",
                    "Singular-value histograms at the first, middle and last tap",
                    "Fraction of singular values per logarithmic bin, pooled over inputs and "
                    "seeds; the dotted line marks σ = 1.",
                    formats,
                )
            )
        blocks = collect_curves(results, section="blocks")
        if blocks:
            fig = F.stats_figure(
                models,
                blocks,
                [("m1", "local m1 = mean σ² (log)"), ("var", "local scale-free variance")],
                palette,
                title="Per-block (local) Jacobians",
            )
            out.append(
                _image(
                    fig,
                    "blocks",
                    "Local Jacobians ∂h_l/∂h_(l−1) per block",
                    "The same statistics for each block's own Jacobian; a product of "
                    "near-isometric blocks is near-isometric.",
                    formats,
                )
            )
        signals = collect_signals(results)
        if signals:
            fig = F.signal_figure(models, signals, palette)
            out.append(
                _image(
                    fig,
                    "signal",
                    "Forward signal q_l and c_l against depth",
                    "q_l: mean squared activation per unit at each tap (log scale); c_l: mean "
                    "cosine similarity between the activations of different inputs "
                    "(1 = collapsed).",
                    formats,
                )
            )
        if results.training:
            fig = F.training_figure(results.training, palette)
            if fig is not None:
                out.append(
                    _image(fig, "training", "Training loss", "Loss curves per scheme.", formats)
                )
    return out


def _ranking_csv(rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["model", "rank", "scheme", "status", "gap", "var", "cond", "m1", "seeds", "note"]
    )
    for r in rows:
        writer.writerow(
            [
                r.model,
                "" if r.rank is None else r.rank,
                r.scheme,
                r.status,
                *("" if v is None else fmt_number(v) for v in (r.gap, r.var, r.cond, r.m1)),
                r.seeds,
                r.note,
            ]
        )
    return buf.getvalue()


def render(results: Results, out: str | Path, *, quiet: bool = False) -> Path:
    """Write results.json, summary.csv, ranking.csv, figures and report.html; return the page."""
    curves = collect_curves(results)
    overlays = overlays_for(results, curves)
    images = build_figures(results, curves, overlays)
    rows = ranking(results, curves)
    notes = []
    if not results.training:
        notes.append("No training results in this run, so there are no loss curves.")
    if results.elapsed_s is not None:
        notes.append(f"Probes took {results.elapsed_s:.1f} s for {len(results.records)} runs.")
    page = render_html(
        title=results.config.title,
        figures=[img for img, _ in images],
        ranking=rows,
        not_applicable=results.not_applicable(),
        config=results.config.to_dict(),
        environment={
            **results.environment,
            "command": " ".join(results.command),
            "created": results.created,
        },
        created=results.created,
        notes=notes,
        theory=[(m, s, ov.label, ov.citation) for (m, s), ov in overlays.items()],
    )
    # Every payload is built before the first file moves into place.
    results_json, summary = results.to_json(), summary_csv(results)
    ranking_text = _ranking_csv(rows)
    with OutputDir(out) as od:
        od.write("results.json", results_json)
        for img, blobs in images:
            for fmt in results.config.formats:
                od.write(f"figures/{img.name}.{fmt}", blobs[fmt])
        od.write("summary.csv", summary)
        od.write("ranking.csv", ranking_text)
        page_path = od.write("report.html", page)
    if not quiet:
        print(f"isokit: wrote {page_path}", file=sys.stderr)
    return page_path
