"""analyses/common.py: the record of a resumed run states the time of every invocation that
worked in its work directory."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.analyses.conftest import ANALYSES

SCRIPT = f"""
import sys, time
sys.path.insert(0, {str(ANALYSES)!r})
from common import main_guarded, start

def main():
    run = start("demo", "demo", seeds=(0,), quick_seeds=(0,), argv=sys.argv[2:])
    time.sleep(0.2)
    if sys.argv[1] == "stop":
        raise KeyboardInterrupt
    run.finish({{"x": 1}})

main_guarded(main)
"""


def _invoke(mode: str, tmp_path) -> subprocess.CompletedProcess:
    argv = ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, *argv], capture_output=True, text=True, check=False
    )


def test_a_resumed_run_records_the_time_of_every_invocation_in_its_work_directory(tmp_path):
    for mode in ("stop", "stop", "finish"):
        _invoke(mode, tmp_path)
    ledger = json.loads((tmp_path / "work" / "invocations.json").read_text())
    assert [e["finished"] for e in ledger] == [False, False, True]
    assert all(e["run_time_s"] >= 0.2 for e in ledger)
    record = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert record["invocations"] == 3
    assert record["run_time_s"] == ledger[-1]["run_time_s"]
    assert record["total_run_time_s"] == round(sum(e["run_time_s"] for e in ledger), 1)
    _invoke("finish", tmp_path)  # a re-render adds its own time to the run it renders
    again = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert again["invocations"] == 4
    assert again["total_run_time_s"] >= record["total_run_time_s"] + 0.2


def test_an_interrupted_run_exits_130_with_one_line_and_no_traceback(tmp_path):
    stopped = _invoke("stop", tmp_path)
    assert stopped.returncode == 130
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1, stopped.stderr
    assert "interrupted" in lines[0] and "again to resume" in lines[0]
    assert "Traceback" not in stopped.stderr
    ledger = json.loads((tmp_path / "work" / "invocations.json").read_text())
    assert [e["finished"] for e in ledger] == [False]
    assert not (tmp_path / "out" / "demo.json").exists()
    finished = _invoke("finish", tmp_path)
    assert finished.returncode == 0, finished.stderr
