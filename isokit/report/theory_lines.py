"""The report's theory lines: per model × scheme, the theory's prediction or why there is none.

The model kind says what the theory sees of the model (its :class:`~isokit.theory.Chain`), the
scheme how it draws the weights (its :class:`~isokit.theory.WeightLaw`); :mod:`isokit.theory`
decides whether a line applies (:func:`~isokit.theory.overlay`) and, where none does, says why
(:func:`~isokit.theory.overlay_reason`). The figures draw the lines; the page's "Theory lines"
list names every line and every reason (:func:`theory_items`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from isokit.report.formatting import format_number
from isokit.report.results import Results
from isokit.report.series import Curve

if TYPE_CHECKING:
    from isokit.theory import Overlay, ZeroAtomLine

__all__ = ["overlays_for", "theory_for", "theory_items", "theory_label", "zero_atoms_for"]

#: Per (model, scheme): the theory line, or the reason (a sentence) why there is none.
Theory = dict[tuple[str, str], "Overlay | str"]


def _one(model, scheme, taps: list[str]) -> Overlay | str:
    """The line for one model × scheme, or why there is none."""
    from isokit.init import get_scheme
    from isokit.theory import overlay, overlay_reason

    if model.start is not None:
        return (
            f"its Jacobians start at {model.start!r}, and the theory's depths count from the input"
        )
    chain = model.chain()
    if chain is None:
        return f"no theory describes the layers of a {model.kind} model"
    law = get_scheme(scheme.name).weight_law(scheme.options, fan_in=chain.fan_in, bias=chain.bias)
    # The report's inputs have unit variance (isokit.report.run.draw_inputs): E[x_i²] = 1.
    reason = overlay_reason(chain, law, taps=taps, input_second_moment=1.0)
    if reason is not None:
        return reason
    line = overlay(chain, law, taps=taps, input_second_moment=1.0)
    return "the theory gave no line and no reason" if line is None else line


def theory_for(results: Results, curves: list[Curve]) -> Theory:
    """Per (model, scheme) of ``curves``: its :class:`~isokit.theory.Overlay`, or why none.

    A case the theory cannot evaluate (a ``ValueError`` or ``ArithmeticError``, e.g. a length
    map without a fixed point) must not sink the report: its reason says so, and a note goes
    to stderr.

    Example:
        >>> from isokit.report.config import load_config
        >>> theory_for(Results(config=load_config(), records=[], environment={}), [])
        {}
    """
    models = {m.label: m for m in results.config.models}
    schemes = {s.label: s for s in results.config.schemes}
    out: Theory = {}
    for c in curves:
        m, s = models.get(c.model), schemes.get(c.scheme)
        if m is None or s is None or (c.model, c.scheme) in out:
            continue
        try:
            out[(c.model, c.scheme)] = _one(m, s, list(c.names))
        except (ValueError, ArithmeticError) as exc:
            print(
                f"isokit: note: no theory line for {c.model} × {c.scheme}: {exc}", file=sys.stderr
            )
            out[(c.model, c.scheme)] = f"the theory could not evaluate it: {exc}"
    return out


def overlays_for(results: Results, curves: list[Curve]) -> dict[tuple[str, str], Overlay]:
    """The theory lines of :func:`theory_for`, without the reasons: what the figures draw.

    Example:
        >>> from isokit.report.config import load_config
        >>> overlays_for(Results(config=load_config(), records=[], environment={}), [])
        {}
    """
    return _lines(theory_for(results, curves))


def zero_atoms_for(results: Results, curves: list[Curve]) -> dict[tuple[str, str], ZeroAtomLine]:
    """Per (model, scheme) of ``curves``: the theory's zero atom across depth, where it has one
    (:func:`isokit.theory.zero_atom_line`: plain ReLU-like chains under a random weight law),
    drawn beside the measured rank fraction and zero fraction.

    Example:
        >>> from isokit.report.config import load_config
        >>> zero_atoms_for(Results(config=load_config(), records=[], environment={}), [])
        {}
    """
    from isokit.init import get_scheme
    from isokit.theory import zero_atom_line

    models = {m.label: m for m in results.config.models}
    schemes = {s.label: s for s in results.config.schemes}
    out: dict[tuple[str, str], ZeroAtomLine] = {}
    for c in curves:
        model, scheme = models.get(c.model), schemes.get(c.scheme)
        if model is None or scheme is None or model.start is not None:
            continue
        chain = model.chain()
        if chain is None:
            continue
        law = get_scheme(scheme.name).weight_law(
            scheme.options, fan_in=chain.fan_in, bias=chain.bias
        )
        line = zero_atom_line(chain, law, taps=list(c.names))
        if line is not None:
            out[(c.model, c.scheme)] = line
    return out


def _lines(theory: Theory) -> dict[tuple[str, str], Overlay]:
    return {key: value for key, value in theory.items() if not isinstance(value, str)}


def theory_label(line: Overlay) -> str:
    """What a theory line is, its numbers written as the report writes every number.

    Names the activation, the residual branch multiplier (residual chains), the ensemble, the
    law, the statistics a bulk prediction is compared with and the section of
    ``docs/theory.md`` whose formula it draws.

    Example:
        >>> from isokit.theory import Chain, WeightLaw, overlay
        >>> chain = Chain(layer="dense", activation="tanh", width=8, in_width=8, depth=2,
        ...               fan_in=8, bias=True, taps=("acts.0", "acts.1"))
        >>> theory_label(overlay(chain, WeightLaw(sigma_w2=1 / 3, sigma_b2=0.0,
        ...                                       ensemble="gaussian")))
        'theory: tanh, gaussian weights, σ_w²=0.3333, σ_b²=0 (docs/theory.md §3.2)'
    """
    law = line.law
    residual = ""
    if line.residual_scale is not None:
        residual = f" residual blocks x + a·φ(Wx + b) with a={format_number(line.residual_scale)}"
    bulk = ""
    if line.bulk:
        compared = ", ".join(sorted(set(line.statistic.values())))
        bulk = f"; drawn against {compared}, the spectrum without its largest eigenvalue"
    per_position = ", per position of the convolution" if line.section == "§5" else ""
    return (
        f"theory: {line.activation}{residual}, {line.weights} weights{per_position}, "
        f"σ_w²={format_number(law.sigma_w2)}, σ_b²={format_number(law.sigma_b2)}{bulk} "
        f"(docs/theory.md {line.section})"
    )


def theory_items(theory: Theory) -> list[tuple[str, str, str, str | None]]:
    """The page's "Theory lines" list: ``(model, scheme, label, citation)`` for a line drawn,
    ``(model, scheme, reason, None)`` where there is none, in the order of ``theory``.

    Example:
        >>> theory_items({("mlp", "idinit"): "the scheme draws its weights from no i.i.d. law"})
        [('mlp', 'idinit', 'the scheme draws its weights from no i.i.d. law', None)]
    """
    items: list[tuple[str, str, str, str | None]] = []
    for (model, scheme), value in theory.items():
        if isinstance(value, str):
            items.append((model, scheme, value, None))
        else:
            items.append((model, scheme, theory_label(value), value.citation))
    return items
