"""Each analysis runs once per test session in ``--quick`` mode, into a temporary folder; the
tests of an analysis read what that run wrote (``quick_run("NAME")``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANALYSES = ROOT / "analyses"
#: Every analysis script (not the shared module).
SCRIPTS = sorted(p.stem for p in ANALYSES.glob("*.py") if p.stem != "common")


@dataclass(frozen=True)
class QuickRun:
    """What ``python analyses/NAME.py --quick`` wrote: its JSON, its folder, its wall time."""

    name: str
    out: Path
    record: dict
    wall_s: float
    stdout: str

    def figure(self, stem: str) -> Path:
        return self.out / f"{self.name}_{stem}.png"


def run_quick(name: str, base: Path) -> QuickRun:
    out, work = base / name / "figures", base / name / "work"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            str(ANALYSES / f"{name}.py"),
            "--quick",
            "--out",
            str(out),
            "--work",
            str(work),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise AssertionError(
            f"analyses/{name}.py --quick exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    record = json.loads((out / f"{name}.json").read_text())
    return QuickRun(name=name, out=out, record=record, wall_s=wall, stdout=proc.stdout)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(NAME)``: the session's one ``--quick`` run of ``analyses/NAME.py``."""
    cache: dict[str, QuickRun] = {}
    base = tmp_path_factory.mktemp("analyses")

    def get(name: str) -> QuickRun:
        if name not in cache:
            cache[name] = run_quick(name, base)
        return cache[name]

    return get
