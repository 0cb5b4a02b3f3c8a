"""The training part of the page: its figures with their captions, and its notes.

:func:`training_figures` draws, from the records that carry a training result, the curves per
model (:func:`~isokit.report.training_figures.curves_figure`), the steps to the target, the
isometry-against-trainability scatter (:mod:`.training_scatter`) and the spectra at the
checkpoints; :func:`training_notes` says how long training took, how many runs diverged and the
median steps to the target per scheme. Both give nothing when no run trained.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from isokit.report import style as S
from isokit.report.formatting import format_number
from isokit.report.results import Results
from isokit.report.style import Palette
from isokit.report.training_figures import checkpoint_figure, curves_figure, steps_figure
from isokit.report.training_scatter import isometry_figure
from isokit.report.training_series import (
    checkpoint_curves,
    collect_train_curves,
    median_steps,
    train_points,
)

__all__ = ["training_figures", "training_notes"]

_CURVES = (
    "Training loss of each step's batch (solid: median over seeds, band: min–max over seeds; "
    "dashed: held-out loss) and held-out accuracy against the number of updates, per scheme. "
    "The legend gives each scheme's optimizer and learning rate η, and for momentum the "
    "effective step η/(1−β). The median and band are over the seeds that did not diverge; a "
    "seed that diverged (NaN or inf loss) is drawn on its own, dash-dotted, up to its "
    "divergence step, and marked × there."
)
_STEPS = (
    "Steps until the held-out accuracy first reached the target, one point per seed and the "
    "median over seeds as a bar (a run that never reached it counts as infinitely many steps, "
    "so the bar sits on the 'not reached' line when half the seeds or more never did). Hollow "
    "points on the dashed line never reached the target; × marks a run that diverged."
)
_SCATTER = (
    "Each point is one scheme and seed: its isometry at initialization (the probes of the "
    "report at the last tap: {x} and the rank fraction) against how it trained. Points "
    "of one colour are one scheme. Hollow points on the dashed line never reached the target; "
    "× marks a diverged run (drawn at the edge of the final-value row). A log axis draws 0 at "
    "its left edge and ∞ at its right."
)
_CHECKPOINTS = (
    "The median singular value of the input–output Jacobian against depth (or m1 where the "
    "probes kept no singular values) at each training checkpoint, on the fixed probe batch of "
    "held-out inputs, pooled over seeds; darker lines are earlier steps. How long a scheme "
    "stays near the dotted line σ = 1 is how long it keeps the network near isometry while it "
    "learns."
)
_X_NAMES = {"gap_nonzero": "the isometry gap of the non-zero σ", "var": "the scale-free variance"}


def training_figures(results: Results, palette: Palette) -> list[tuple[Figure, str, str, str]]:
    """``(figure, name, title, caption)`` of every training figure, in page order (none when
    no run trained)."""
    if not results.trained:
        return []
    models = [m.label for m in results.config.models]
    schemes = [s.label for s in results.config.schemes]
    slugs = S.unique_slugs(models)
    out: list[tuple[Figure, str, str, str]] = []
    curves = collect_train_curves(results)
    for model in models:
        mc = [c for c in curves if c.model == model]
        if mc:
            fig = curves_figure(model, mc, palette)
            out.append((fig, f"training_{slugs[model]}", f"Training curves: {model}", _CURVES))
    points = train_points(results)
    if any(p.target is not None for p in points):
        fig = steps_figure(models, points, schemes, palette)
        out.append((fig, "steps_to_target", "Steps to the target accuracy per scheme", _STEPS))
    fig, xstat = isometry_figure(models, points, palette)
    title = "Isometry at initialization against trainability"
    out.append((fig, "isometry_vs_training", title, _SCATTER.format(x=_X_NAMES[xstat])))
    spectra = checkpoint_curves(results)
    for model in models:
        by_scheme = {s: spectra[(m, s)] for m, s in spectra if m == model}
        if by_scheme:
            fig = checkpoint_figure(model, by_scheme, schemes, palette)
            title = f"Spectra at the training checkpoints: {model}"
            out.append((fig, f"checkpoints_{slugs[model]}", title, _CHECKPOINTS))
    return out


def _steps_notes(results: Results) -> list[str]:
    """Per model, the measured median steps to the target per scheme (the training table's)."""
    points = train_points(results)
    notes = []
    for model in (m.label for m in results.config.models):
        parts = []
        for scheme in (s.label for s in results.config.schemes):
            med = median_steps([p for p in points if (p.model, p.scheme) == (model, scheme)])
            if med is not None:
                parts.append(f"{scheme} {'not reached' if math.isinf(med) else format_number(med)}")
        if parts:
            notes.append(f"Median steps to the target accuracy on {model}: {', '.join(parts)}.")
    return notes


def training_notes(results: Results) -> list[str]:
    """The page's notes on training: its time, the diverged runs, the checkpoints whose probe
    failed, the median steps per scheme."""
    trained = results.trained
    if not trained:
        return []
    total = sum(r.train.wall_time_s for r in trained)
    diverged = sum(r.train.diverged for r in trained)
    notes = [
        f"Training took {format_number(total)} s for {len(trained)} runs (the sum of their wall "
        f"times); {diverged} of them diverged."
    ]
    failed = [(r, s) for r in trained for s in sorted(r.train.checkpoint_errors)]
    if failed:
        first, step = failed[0]
        notes.append(
            f"{len(failed)} checkpoint probe(s) found NaN or inf in the weights' Jacobian and are "
            f"left out of the checkpoint spectra (first: {first.scheme} on {first.model} at step "
            f"{step}: {first.train.checkpoint_errors[step].splitlines()[0]})."
        )
    return notes + _steps_notes(results)
