"""The report's "Theory lines": per model × scheme, the line drawn or why there is none.

One small report covers the three formulas of ``docs/theory.md`` §7 (a plain MLP, a residual
MLP whose ReLU line is a bulk prediction, a delta-orthogonal tanh CNN) and the reasons for no
line (no i.i.d. law, ``L/N`` beyond the finite-width limit, a model kind without a chain).
"""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from isokit.report import load_config, publish, render, run_config
from isokit.report.series import collect_curves
from isokit.report.theory_lines import overlays_for, theory_for, theory_items, theory_label
from isokit.theory import MAX_DEPTH_OVER_WIDTH, Overlay

THEORY_TOML = """
title = "theory lines"
seeds = [0]
method = "exact"
schemes = ["idinit", "orthogonal", "kaiming-normal", "delta-orthogonal"]

[inputs]
examples = 2
image_size = 3

[probes]
profile = true
block = false
signal = false

[output]
formats = ["png"]

[[models]]
kind = "mlp"
in_features = 8
width = 8
depth = 2
activation = "tanh"

[[models]]
kind = "mlp"
in_features = 6
width = 6
depth = 3
activation = "tanh"

[[models]]
kind = "residual-mlp"
width = 8
depth = 2
branch_layers = 1
scale = 0.5
activation = "relu"

[[models]]
kind = "convnet"
in_channels = 8
channels = 8
depth = 2
activation = "tanh"

[[models]]
kind = "resnet"
depth = 8
width = 4

[[models]]
kind = "mlp"
in_features = 8
width = 8
depth = 2
activation = "tanh"
start = "acts.0"
"""


RESNET = "resnet8-w4-none"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("theory") / "theory.toml"
    path.write_text(THEORY_TOML, encoding="utf-8")
    results = run_config(load_config(path), quiet=True, command=["pytest"])
    out = tmp_path_factory.mktemp("theory_report") / "out"
    # The whole page but its figures (drawing six models' figures takes most of a minute; the
    # figures read the lines of overlays_for, tested above, and tests/report draws them).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(publish, "build_figures", lambda *args, **kwargs: [])
        render(results, out, quiet=True)
    return results, out


def _list_items(page: str) -> list[str]:
    start = page.index("<h2>Theory lines</h2>")
    section = page[start : page.index("<h2>", start + 1)]
    return [
        html.unescape(re.sub("<[^>]+>", "", li)) for li in re.findall("<li>(.*?)</li>", section)
    ]


def test_every_model_and_scheme_has_a_line_or_a_reason(report):
    results, _ = report
    curves = collect_curves(results)
    theory = theory_for(results, curves)
    assert set(theory) == {(c.model, c.scheme) for c in curves}
    for value in theory.values():
        assert isinstance(value, Overlay | str)
    lines = {key for key, value in theory.items() if isinstance(value, Overlay)}
    assert lines == {
        ("mlp-tanh-w8-d2", "orthogonal"),
        ("mlp-tanh-w8-d2", "kaiming-normal"),
        ("mlp-tanh-w8-d2", "delta-orthogonal"),
        ("residual-mlp-relu-w8-d2", "orthogonal"),
        ("residual-mlp-relu-w8-d2", "kaiming-normal"),
        ("residual-mlp-relu-w8-d2", "delta-orthogonal"),
        ("convnet-tanh-c8-d2", "delta-orthogonal"),
    }
    assert set(overlays_for(results, curves)) == lines
    # the reasons, one per cause
    assert "no i.i.d. law" in theory[("mlp-tanh-w8-d2", "idinit")]
    assert theory[("mlp-tanh-w6-d3", "orthogonal")].startswith("depth over width L/N = 3/6 = 0.5")
    assert MAX_DEPTH_OVER_WIDTH < 3 / 6
    assert "kernels are orthogonal" in theory[("convnet-tanh-c8-d2", "orthogonal")]
    assert theory[(RESNET, "orthogonal")] == "no theory describes the layers of a resnet model"
    assert theory[("mlp-tanh-w8-d2-from-acts.0", "orthogonal")] == (
        "its Jacobians start at 'acts.0', and the theory's depths count from the input"
    )


def test_lines_are_drawn_against_the_statistic_they_predict(report):
    results, _ = report
    theory = theory_for(results, collect_curves(results))
    residual = theory[("residual-mlp-relu-w8-d2", "kaiming-normal")]
    # ReLU residual blocks: the formulas describe the bulk (the outlier eigenvalue removed)
    assert residual.bulk and dict(residual.statistic) == {"m1": "m1_bulk", "var": "var_bulk"}
    assert residual.section == "§4" and residual.residual_scale == 0.5
    assert "m1_bulk, var_bulk" in theory_label(residual)
    assert "a=0.5" in theory_label(residual)
    conv = theory[("convnet-tanh-c8-d2", "delta-orthogonal")]
    assert conv.section == "§5" and "per position" in theory_label(conv)
    plain = theory[("mlp-tanh-w8-d2", "orthogonal")]
    assert not plain.bulk and plain.statistic["var"] == "var"
    assert list(plain.depth) == [1, 2] and np.all(np.isfinite(plain.m1))


def test_the_page_lists_every_line_and_every_reason(report):
    results, out = report
    theory = theory_for(results, collect_curves(results))
    page = (out / "report.html").read_text(encoding="utf-8")
    items = _list_items(page)
    text = "\n".join(items)
    for (model, scheme), value in theory.items():
        if isinstance(value, Overlay):
            assert f"{scheme} on {model}: {theory_label(value)}. {value.citation}" in items
        else:
            assert f"on {model}: no line, because {value}." in text
            assert scheme in next(i for i in items if f"because {value}." in i and model in i)
    # schemes that share a reason on one model are named together, once
    too_deep = theory[("mlp-tanh-w6-d3", "orthogonal")]
    assert (
        f"orthogonal, kaiming-normal, delta-orthogonal on mlp-tanh-w6-d3: no line, because "
        f"{too_deep}."
    ) in items
    assert sum(f"on {RESNET}" in i for i in items) == 1


def test_theory_items_mark_reasons_with_no_citation(report):
    results, _ = report
    theory = theory_for(results, collect_curves(results))
    for (_, _, text, cite), value in zip(theory_items(theory), theory.values(), strict=True):
        if isinstance(value, Overlay):
            assert (text, cite) == (theory_label(value), value.citation)
        else:
            assert (text, cite) == (value, None)


def test_a_theory_that_cannot_evaluate_gives_a_reason_and_a_note(report, monkeypatch, capsys):
    import isokit.theory

    results, _ = report

    def broken(*args, **kwargs):
        raise ValueError("no fixed point of the length map")

    monkeypatch.setattr(isokit.theory, "overlay", broken)
    theory = theory_for(results, collect_curves(results))
    reason = theory[("mlp-tanh-w8-d2", "orthogonal")]
    assert reason == "the theory could not evaluate it: no fixed point of the length map"
    assert "no fixed point of the length map" in capsys.readouterr().err
    assert theory[("mlp-tanh-w8-d2", "idinit")].startswith("the scheme draws")  # not evaluated
