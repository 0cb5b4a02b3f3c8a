"""The README's Python snippets run as written (in a scratch directory)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), namespace)
    # What each snippet promises: a probed Profile with finite gains, a written profile that
    # reads back equal, an initialized model.
    import numpy as np
    import torch

    from isokit.probe import Profile

    if "prof" in namespace:
        assert np.isfinite(namespace["prof"].stat("m1")).all()
    if (tmp_path / "profile.json").exists():
        back = Profile.from_json(tmp_path / "profile.json")
        assert [t.name for t in back.taps] == [t.name for t in namespace["prof"].taps]
        assert len(back.taps) == 16
    if "model" in namespace:
        assert isinstance(namespace["model"], torch.nn.Module)
    assert any(k in namespace for k in ("prof", "model")), "a snippet that produces nothing"


def _findings() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Findings", 1)[1].split("\n## ", 1)[0]


def _analysis_of(figure: Path) -> str | None:
    """The analysis a figure belongs to: the longest ``NAME`` with ``figures/NAME.json`` whose
    figures are named ``NAME_*``; None for a figure no analysis writes."""
    parts = figure.stem.split("_")
    for n in range(len(parts) - 1, 0, -1):
        name = "_".join(parts[:n])
        if (figure.parent / f"{name}.json").is_file():
            return name
    return None


def test_every_findings_figure_and_record_is_committed_and_says_its_mode() -> None:
    findings = _findings()
    root = README.parent
    links = set(re.findall(r"\]\((figures/[^)]+\.png)\)", findings))
    assert len(links) >= 9
    for link in links:
        assert (root / link).is_file(), f"README Findings links {link}, which is not there"
    rows = re.findall(r"^\| \*\*.*$", findings, flags=re.M)
    assert len(rows) >= 9
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        mode, figure = cells[4], re.search(r"\((figures/[^)]+\.png)\)", cells[5]).group(1)
        name = _analysis_of(root / figure)
        assert name is not None, f"{figure} has no JSON record beside it"
        record = json.loads((root / "figures" / f"{name}.json").read_text())
        assert mode.split(",")[0] == record["mode"], (figure, mode, record["mode"])


def test_every_committed_figure_is_one_its_record_lists() -> None:
    """A figure no record lists is left over from an earlier run (e.g. a quick mode's step
    count in its name) and would be mistaken for a result."""
    figures = README.parent / "figures"
    owners = {p: _analysis_of(p) for p in figures.iterdir() if p.suffix in (".png", ".svg")}
    names = set(owners.values()) - {None}  # None: the report's own figure, not an analysis'
    assert {"depth", "trainability", "dead_weights"} <= names
    listed = {n: json.loads((figures / f"{n}.json").read_text())["figures"] for n in names}
    for image, name in owners.items():
        assert name is None or image.name in listed[name], f"{image.name}: stale, rerun {name}"
