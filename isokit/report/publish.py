"""Turning :class:`Results` into a report directory: results.json, figures, ranking, report.html.

Layout of ``DIR``::

    results.json           every Profile, the resolved config, the environment
    summary.csv            tidy: one row per model × scheme × tap × statistic
    ranking.csv            the ranking table (isometry gap at the last tap)
    figures/NAME.{png,svg,pdf}
    training.csv           with training results: every logged step and evaluation of every run
    report.html            one self-contained page (figures embedded)

Figures are drawn in memory and written with every other file into a staging directory, which
:class:`~isokit.report.io.ReportDir` then swaps in for ``DIR`` as a whole: after any failure
``DIR`` holds the complete old report or the complete new one. Figure files are named after
:func:`~isokit.report.style.unique_slugs` of the model labels, so two labels that differ only in
characters a file name cannot hold never share a file (or an id on the page).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib import rc_context

from isokit.report import figures as F
from isokit.report import style as S
from isokit.report.formatting import format_number
from isokit.report.histograms import histogram_figure
from isokit.report.html import render_html
from isokit.report.io import FIGURES, PAGE, RANKING, RESULTS, SUMMARY, ReportDir
from isokit.report.results import Results
from isokit.report.series import Curve, collect_curves, collect_signals, ranking
from isokit.report.summary import ranking_csv, summary_csv
from isokit.report.theory_lines import (
    overlays_for,
    theory_for,
    theory_items,
    theory_label,
    zero_atoms_for,
)
from isokit.report.training_page import training_figures, training_notes
from isokit.report.training_series import TRAINING_CSV, training_csv, training_rows

__all__ = [
    "FigureImage",
    "FigureSet",
    "build_figures",
    "overlays_for",
    "publish",
    "render",
    "theory_label",
    "write_report",
]


@dataclass(frozen=True, kw_only=True)
class FigureImage:
    """One rendered figure: a file stem (also its id on the page), a title and caption, its PNG
    bytes and the files it is written to.

    Example:
        >>> FigureImage(name="moments", title="m1", caption="", png=b"").files
        ()
    """

    name: str
    title: str
    caption: str
    png: bytes
    files: tuple[str, ...] = ()


Images = list[tuple[FigureImage, dict[str, bytes]]]


class FigureSet:
    """Encodes figures in page order, in the config's formats."""

    def __init__(self, formats) -> None:
        self.formats = formats
        self.images: Images = []

    def add(self, fig, name: str, title: str, caption: str) -> None:
        blobs = S.encode_figure(fig, self.formats)
        files = tuple(f"{FIGURES}/{name}.{fmt}" for fmt in self.formats)
        image = FigureImage(name=name, title=title, caption=caption, png=blobs["png"], files=files)
        self.images.append((image, blobs))


_SPECTRUM = (
    "Median (line) and 25–75 % / 5–95 % bands of the singular values of the input–output "
    "Jacobian at every tap, pooled over inputs and seeds, one panel per scheme. Isometry means "
    "a thin band on the dotted line σ = 1."
)
_MOMENTS = (
    "m1 (average gain) should stay near 1; the scale-free variance measures the spread of σ² "
    "independently of scale (0 = all σ equal). Lines are medians over inputs and seeds, bands "
    "the 10–90 % range."
)
_CONDITIONING = (
    "The rank fraction is the share of singular values that are not zero (1 = full rank; for "
    "ReLU networks a dashed line gives the theory's atom at zero as 1 − zero atom where it "
    "applies). The condition number and the isometry gap are those of the non-zero singular "
    "values: 1 (cond) and 0 (gap) at perfect isometry of the directions the Jacobian keeps, and "
    "finite even when it loses rank."
)
_HISTOGRAMS = (
    "Fraction of singular values per logarithmic bin, pooled over inputs and seeds; the dotted "
    "line marks σ = 1. Singular values that are zero (rank-deficient Jacobians) are the bar at "
    "the left edge, and the legend gives their share."
)
_BLOCKS = (
    "The same statistics for each block's own Jacobian; a product of near-isometric blocks is "
    "near-isometric."
)
_SIGNAL = (
    "q_l: mean squared activation per unit at each tap (log scale); c_l: mean cosine "
    "similarity between the activations of different inputs (1 = collapsed)."
)


def _spectra(out: FigureSet, results: Results, curves: list[Curve], schemes, palette) -> None:
    models = [m.label for m in results.config.models]
    slugs = S.unique_slugs(models)
    na = results.not_applicable()
    for model in models:
        mc = [c for c in curves if c.model == model]
        if mc:
            na_here = {s: msg for m, s, msg in na if m == model}
            fig = F.spectrum_figure(model, mc, schemes, na_here, palette)
            out.add(
                fig,
                f"spectrum_{slugs[model]}",
                f"Singular values against depth: {model}",
                _SPECTRUM,
            )


def _depth_figures(
    out: FigureSet, models, curves: list[Curve], overlays, zero_atoms, palette
) -> None:
    moments = [("m1", "m1 = mean σ² (log)"), ("var", "scale-free variance m2/m1² − 1")]
    bulk = [("m1_bulk", "bulk m1 (without λmax)"), ("var_bulk", "bulk scale-free variance")]
    if any(F.theory_values(ov, stat) is not None for ov in overlays.values() for stat, _ in bulk):
        moments += bulk  # a theory line predicts the bulk: show the statistic it predicts
    fig = F.stats_figure(
        models,
        curves,
        moments,
        palette,
        title="Mean squared singular value and spread",
        overlays=overlays,
    )
    note = " Dashed lines: theory (isokit.theory.overlay) where it applies." if overlays else ""
    out.add(fig, "moments", "m1 and scale-free variance against depth", _MOMENTS + note)
    rows = [
        ("rank_fraction", "rank fraction (non-zero σ)"),
        ("cond_nonzero", "condition number σmax/σmin (non-zero σ)"),
        ("gap_nonzero", "isometry gap log m1 − mean log σ² (non-zero σ)"),
    ]
    fig = F.stats_figure(
        models,
        curves,
        rows,
        palette,
        title="Rank and conditioning against depth",
        overlays=overlays,
        zero_atoms=zero_atoms,
    )
    out.add(
        fig,
        "conditioning",
        "Rank fraction, condition number and isometry gap of the non-zero part against depth",
        _CONDITIONING,
    )
    fig = histogram_figure(models, curves, palette, zero_atoms=zero_atoms)
    out.add(
        fig,
        "histograms",
        "Singular-value histograms at the first, middle and last tap",
        _HISTOGRAMS,
    )


def build_figures(results: Results, curves: list[Curve] | None = None, overlays=None) -> Images:
    """Every figure of the report, rendered in memory, in page order, with its file bytes.

    Example:
        >>> from isokit.report.config import load_config
        >>> build_figures(Results(config=load_config(), records=[], environment={}))
        []
    """
    cfg = results.config
    models = [m.label for m in cfg.models]
    schemes = [s.label for s in cfg.schemes]
    palette = S.Palette(tuple(schemes))
    curves = collect_curves(results) if curves is None else curves
    overlays = overlays_for(results, curves) if overlays is None else overlays
    out = FigureSet(cfg.formats)
    with rc_context(S.style()):
        _spectra(out, results, curves, schemes, palette)
        if curves:
            zero_atoms = zero_atoms_for(results, curves)
            _depth_figures(out, models, curves, overlays, zero_atoms, palette)
        blocks = collect_curves(results, section="blocks")
        if blocks:
            local = [("m1", "local m1 = mean σ² (log)"), ("var", "local scale-free variance")]
            fig = F.stats_figure(
                models, blocks, local, palette, title="Per-block (local) Jacobians"
            )
            out.add(fig, "blocks", "Local Jacobians ∂h_l/∂h_(l−1) per block", _BLOCKS)
        signals = collect_signals(results)
        if signals:
            fig = F.signal_figure(models, signals, palette)
            out.add(fig, "signal", "Forward signal q_l and c_l against depth", _SIGNAL)
        for fig, name, title, caption in training_figures(results, palette):
            out.add(fig, name, title, caption)
    return out.images


def _notes(results: Results) -> list[str]:
    notes = []
    if results.elapsed_s is not None:
        took = format_number(results.elapsed_s)
        what = "Probes and training" if results.trained else "Probes"
        notes.append(f"{what} took {took} s for {len(results.records)} runs.")
    return notes + training_notes(results)


def write_report(results: Results, out: ReportDir) -> Path:
    """Write every file of the report into ``out`` (not yet committed); return the page's path.

    Every payload is built before the first file is written.
    """
    curves = collect_curves(results)
    theory = theory_for(results, curves)  # per model × scheme: a line, or why there is none
    lines = {key: line for key, line in theory.items() if not isinstance(line, str)}
    images = build_figures(results, curves, lines)
    rows = ranking(results, curves)
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
        notes=_notes(results),
        theory=theory_items(theory),
        training=training_rows(results),
    )
    files = {
        RESULTS: results.to_json(),
        **{
            f"{FIGURES}/{img.name}.{fmt}": blobs[fmt]
            for img, blobs in images
            for fmt in results.config.formats
        },
        SUMMARY: summary_csv(results),
        RANKING: ranking_csv(rows),
        PAGE: page,
    }
    if results.trained:
        files[TRAINING_CSV] = training_csv(results)
    for name, data in files.items():
        out.write(name, data)
    return out.path / PAGE


def publish(target: ReportDir, results: Callable[[], Results], *, quiet: bool = False) -> Path:
    """The one publishing sequence: lock ``target``, get the ``results``, write, swap in, say so.

    ``results`` is called once ``target`` is locked, so a run that computes them (``isokit
    report``) holds the directory from before its first probe; the page's path is returned.

    Example:
        >>> import shutil, tempfile
        >>> from isokit.report.config import load_config
        >>> parent = Path(tempfile.mkdtemp())
        >>> empty = Results(config=load_config(), records=[], environment={})
        >>> publish(ReportDir(parent / "report"), lambda: empty, quiet=True).name
        'report.html'
        >>> shutil.rmtree(parent)
    """
    with target:
        page = write_report(results(), target)
        target.commit()
    if not quiet:
        print(f"isokit: wrote {page}", file=sys.stderr)
    return page


def render(results: Results, out: str | os.PathLike, *, quiet: bool = False) -> Path:
    """Write results.json, summary.csv, ranking.csv, figures and report.html as the directory
    ``out``, replacing an earlier report there as a whole; return the page's path.

    Example:
        >>> render(results, "out/report")  # doctest: +SKIP
        PosixPath('out/report/report.html')
    """
    return publish(ReportDir(out), lambda: results, quiet=quiet)
