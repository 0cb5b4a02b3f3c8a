"""The examples of docs/training.md run as written; a snippet's trailing ``# ...`` lines are the
output it prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _printed(snippet: str) -> list[str]:
    """The comment lines that close a snippet: what it prints."""
    lines = snippet.rstrip("\n").splitlines()
    tail = []
    while lines and lines[-1].startswith("# "):
        tail.insert(0, lines.pop()[2:])
    return tail


def test_the_doc_has_its_examples():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_an_example_runs_and_prints_what_it_says(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(SNIPPETS[index], f"docs/training.md example {index}", "exec"), {})
    want = _printed(SNIPPETS[index])
    if want:
        assert capsys.readouterr().out.splitlines() == want
