"""Every analysis runs in ``--quick`` mode and writes what the README's Findings cite: its
figures in PNG and SVG, and a JSON record of its numbers, versions, device and seeds."""

from __future__ import annotations

import ast

import pytest

from tests.analyses.conftest import ANALYSES, SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_mode_writes_its_figures_and_record(quick_run, name):
    run = quick_run(name)
    record = run.record
    assert record["schema"] == "isokit.analysis/1" and record["analysis"] == name
    assert record["mode"] == "quick" and record["seeds"] and record["device"] == "cpu"
    assert record["environment"]["isokit"] and record["environment"]["torch"]
    assert record["numbers"], "an analysis that measured nothing"
    figures = record["figures"]
    assert figures, "an analysis without figures"
    stems = {f.rsplit(".", 1)[0] for f in figures}
    for stem in stems:
        for fmt in ("png", "svg"):
            path = run.out / f"{stem}.{fmt}"
            assert path.is_file() and path.stat().st_size > 1000, path
    print(f"{name} --quick: {run.wall_s:.0f} s")


def _private_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("isokit"):
            parts = node.module.split(".")
            found += [node.module for p in parts if p.startswith("_")]
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [
                a.name
                for a in node.names
                if a.name.startswith("isokit") and any(p.startswith("_") for p in a.name.split("."))
            ]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not (node.attr.startswith("__") and node.attr.endswith("__"))
        ):
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("name", [*SCRIPTS, "common"])
def test_analyses_use_only_the_public_api(name):
    tree = ast.parse((ANALYSES / f"{name}.py").read_text())
    assert _private_imports(tree) == []
