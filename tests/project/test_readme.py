"""The README's Python snippets run as written (in a scratch directory)."""

from __future__ import annotations

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
