"""The project documents itself: every documentation reference resolves inside the repository.

Code cites the docs as ``docs/probes.md §3.2``; each such citation must name a file in ``docs/``
that has a heading with that section number. Nothing may point outside the repository (absolute
paths, sibling folders) or at an issue tracker.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for folder in ("isokit", "tests", "benchmarks", "analyses")
    for p in (ROOT / folder).rglob("*")
    if p.suffix in {".py", ".toml", ".md", ".sh"} and p.is_file()
) + [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]

# ``docs/x.md §3``, ``docs/x.md`` §3.2, docs/x.md §7–§8, docs/x.md §3.5, §3.6
CITATION = re.compile(r"(docs/[\w/-]+\.md)`{0,2}((?:\s*(?:,|–|-|and)?\s*§[0-9]+(?:\.[0-9]+)*)*)")
SECTION = re.compile(r"§([0-9]+(?:\.[0-9]+)*)")
# A doc name without the docs/ prefix cites a file a user cannot find.
BARE = re.compile(r"(?<![\w/])(?:reference/)?(idinit|baselines|probes|theory)\.md")
OUTSIDE = re.compile(r"\.\./shared|/work/|/root/|/home/|\breference/\w+\.md")
TRACKER = re.compile(r"\b[Ii]ssue \d+\b")


def _text(path: Path) -> str:
    if path == Path(__file__):
        return ""  # this file spells out the patterns it forbids
    return path.read_text(encoding="utf-8")


def _headings(doc: Path) -> set[str]:
    numbers = set()
    for line in doc.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#+\s+§([0-9]+(?:\.[0-9]+)*)\b", line)
        if match:
            numbers.add(match.group(1))
    return numbers


def _citations() -> list[tuple[str, str, str]]:
    """(file, doc, section) for every citation; section "" when only the file is named."""
    found = []
    for path in SOURCES:
        for doc, sections in CITATION.findall(_text(path)):
            where = str(path.relative_to(ROOT))
            found += [(where, doc, s) for s in SECTION.findall(sections) or [""]]
    return found


def test_code_cites_the_docs() -> None:
    assert len(_citations()) >= 20, "the code should cite its documentation"


@pytest.mark.parametrize("where,doc,section", sorted(set(_citations())))
def test_citation_resolves(where: str, doc: str, section: str) -> None:
    path = ROOT / doc
    assert path.is_file(), f"{where} cites {doc}, which is not in the repository"
    if section:
        assert section in _headings(path), f"{where} cites {doc} §{section}: no such heading"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_outside_the_repository(path: Path) -> None:
    text = _text(path)
    for pattern, what in (
        (BARE, "a doc without docs/"),
        (OUTSIDE, "a path outside the repo"),
        (TRACKER, "a tracker reference"),
    ):
        bad = [m.group(0) for m in pattern.finditer(text)]
        assert not bad, f"{path.relative_to(ROOT)} has {what}: {bad[:3]}"
