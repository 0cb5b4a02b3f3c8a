"""``isokit sweep`` on the command line: errors in one line, Ctrl-C, and the rerun after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isokit.cli import main

# 32 probe examples make a cell take seconds, so that an interrupt sent after the
# first two cells lands well before the twelfth, even on a quiet machine.
SLOW_GRID = """
method = "exact"
inputs = {examples = 32}
[[models]]
kind = "mlp"
in_features = 64
width = 64
activation = "tanh"
[sweep]
depth = [96, 128]
schemes = ["idinit", "orthogonal"]
seeds = [0, 1, 2]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "flags", "words"),
    [
        ('[[models]]\nkind = "mlp"\n[sweep]\ndpeth = [2]\nschemes = ["idinit"]', [], "sweep.dpeth"),
        ('schemes = ["idinit"]\n[[models]]\nkind = "mlp"', [], "sweep: missing or empty"),
        (
            '[[models]]\nkind = "mlp"\nin_features = 4\nwidth = 4\n'
            '[sweep]\ndepth = [2]\nschemes = ["idinit"]',
            ["--serial", "--workers", "2"],
            "--serial: runs in this process",
        ),
    ],
)
def test_bad_sweeps_fail_in_one_line_with_exit_2(tmp_path, capsys, text, flags, words):
    out = tmp_path / "out"
    code = main(["sweep", str(_write(tmp_path, text)), "--out", str(out), "--quiet", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err
    assert not out.exists()


def test_workers_must_be_a_positive_count(tmp_path, capsys):
    assert main(["sweep", "x.toml", "--out", str(tmp_path), "--workers", "0"]) == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err


def test_a_serial_sweep_says_what_it_did(tmp_path, capsys):
    text = '[[models]]\nkind = "mlp"\nin_features = 4\nwidth = 4\n[inputs]\nexamples = 1\n[sweep]\n'
    text += 'depth = [2, 3]\nschemes = ["orthogonal"]'
    config, out = _write(tmp_path, text), tmp_path / "out"
    assert main(["sweep", str(config), "--out", str(out), "--serial", "--quiet"]) == 0
    assert "2 cells in" in capsys.readouterr().err
    assert main(["sweep", str(config), "--out", str(out), "--serial", "--quiet"]) == 0
    assert "0 computed, 2 already done" in capsys.readouterr().err


@pytest.mark.slow  # a cluster start, an interrupt and a serial rerun: about a minute
def test_ctrl_c_leaves_only_finished_cells_and_the_rerun_computes_the_rest(tmp_path):
    config, out = _write(tmp_path, SLOW_GRID), tmp_path / "out"
    command = [sys.executable, "-m", "isokit.cli", "sweep", str(config), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(Path.cwd()))
    proc = subprocess.Popen(
        [*command, "--workers", "2", "--quiet"], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while len(list((out / "cells").glob("*.json"))) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "finished cells are kept" in err
    files = sorted((out / "cells").iterdir())
    assert all(p.suffix == ".json" for p in files)  # no temporary file left behind
    done = len(files)
    assert 2 <= done < 12
    for p in files:
        assert json.loads(p.read_text())["status"] == "ok"  # every file is a complete cell
    rerun = subprocess.run(
        [*command, "--serial", "--quiet"], env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{12 - done} computed, {done} already done" in rerun.stderr
