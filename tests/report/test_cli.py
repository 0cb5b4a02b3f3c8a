"""The ``isokit`` command: one-line errors with exit code 2, subcommands, nothing partial left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from isokit.cli import main
from isokit.init import schemes
from isokit.report import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
seeds = [0]
schemes = ["orthogonal"]
[inputs]
examples = 2
[[models]]
kind = "mlp"
in_features = 4
width = 4
depth = 2
"""

BAD = {
    "unknown scheme": (GOOD.replace('"orthogonal"', '"orthogonall"'), "schemes[0]"),
    "unknown model kind": (GOOD.replace('kind = "mlp"', 'kind = "rnn"'), "models[0].kind"),
    "negative depth": (GOOD.replace("depth = 2", "depth = -3"), "models[0].depth"),
    "wrong type": (GOOD.replace("width = 4", 'width = "wide"'), "models[0].width"),
    "wrong type of seeds": (GOOD.replace("seeds = [0]", "seeds = 0"), "seeds"),
    "toml syntax error": (
        GOOD.replace("depth = 2", "depth = = 2"),
        f"line {GOOD.splitlines().index('depth = 2') + 1}, column",
    ),
    "unknown key": (GOOD.replace("width = 4", "width = 4\nwidht = 4"), "models[0].widht"),
}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_config_exits_2_with_one_line_naming_the_key(case, tmp_path, capsys):
    text, key = BAD[case]
    config = tmp_path / "bad.toml"
    config.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, "report", str(config), "--out", str(out), "--quiet")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("isokit: error: ") and key in lines[0]
    assert "Traceback" not in stderr
    assert not out.exists(), "a failed run must not leave its output directory behind"


def test_bad_config_leaves_an_existing_directory_untouched(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(BAD["negative depth"][0], encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    code, _, _ = _run(capsys, "report", str(config), "--out", str(out))
    assert code == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_missing_config_file(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    code, _, stderr = _run(capsys, "report", str(missing), "--out", str(tmp_path / "out"))
    assert code == 2
    assert str(missing) in stderr and "not found" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError):
        main(["--debug", "report", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    with pytest.raises(ConfigError):
        main(["report", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o"), "--debug"])


def test_usage_errors_are_one_line_too(capsys):
    code, _, stderr = _run(capsys, "report")  # --out missing
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--out" in stderr


def test_out_must_be_a_directory(tmp_path, capsys):
    config = tmp_path / "good.toml"
    config.write_text(GOOD, encoding="utf-8")
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    code, _, stderr = _run(capsys, "report", str(config), "--out", str(target))
    assert code == 2 and "--out" in stderr
    assert target.read_text(encoding="utf-8") == "x"


def test_report_runs_a_config(tmp_path, capsys):
    config = tmp_path / "good.toml"
    config.write_text(GOOD, encoding="utf-8")
    out = tmp_path / "out"
    code, _, _ = _run(capsys, "report", str(config), "--out", str(out), "--quiet")
    assert code == 0
    assert (out / "report.html").is_file() and (out / "results.json").is_file()


def test_from_rerenders_and_refuses_a_missing_file(small_report, tmp_path, capsys):
    code, _, _ = _run(
        capsys,
        "report",
        "--from",
        str(small_report.out / "results.json"),
        "--out",
        str(tmp_path / "again"),
        "--quiet",
    )
    assert code == 0 and (tmp_path / "again" / "report.html").is_file()
    code, _, stderr = _run(
        capsys, "report", "--from", str(tmp_path / "none.json"), "--out", str(tmp_path / "x")
    )
    assert code == 2 and "not found" in stderr and not (tmp_path / "x").exists()


def test_schemes_lists_every_scheme(capsys):
    code, stdout, _ = _run(capsys, "schemes")
    assert code == 0
    listed = [line.split()[0] for line in stdout.strip().splitlines()]
    assert listed == schemes().names()


def test_probe_prints_a_table_per_tap(capsys):
    code, stdout, _ = _run(
        capsys,
        "probe",
        "--model",
        "mlp",
        "--depth",
        "3",
        "--width",
        "8",
        "--activation",
        "tanh",
        "--scheme",
        "orthogonal",
        "--examples",
        "2",
    )
    assert code == 0
    lines = stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["tap", "depth"])
    rows = [line.split() for line in lines[header + 1 :]]
    assert [r[0] for r in rows] == ["acts.0", "acts.1", "acts.2"]
    columns = lines[header].split()
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        assert float(values["m1"]) > 0 and float(values["sigma_max"]) >= float(values["sigma_min"])


def test_probe_reports_not_applicable_and_bad_flags(capsys):
    code, stdout, _ = _run(
        capsys,
        "probe",
        "--model",
        "mlp",
        "--depth",
        "2",
        "--width",
        "4",
        "--scheme",
        "fixup",
        "--examples",
        "2",
    )
    assert code == 0 and "not applicable" in stdout
    code, _, stderr = _run(capsys, "probe", "--model", "mlp", "--depth", "-1", "--scheme", "idinit")
    assert code == 2 and "--depth" in stderr and len(stderr.strip().splitlines()) == 1


def test_help_shows_examples(capsys):
    code, stdout, _ = _run(capsys, "--help")
    assert code == 0 and "examples:" in stdout
    code, stdout, _ = _run(capsys, "report", "--help")
    assert code == 0 and "--from" in stdout and "examples:" in stdout


def test_module_entry_point_runs_as_a_subprocess():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "isokit.cli", "schemes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "idinit" in proc.stdout


def test_bad_option_value_is_a_config_error_not_not_applicable(capsys):
    code = main(
        [
            "probe",
            "--model",
            "mlp",
            "--depth",
            "3",
            "--width",
            "8",
            "--scheme",
            "idinit",
            "--option",
            "contract=tiles",
            "--examples",
            "2",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "contract" in err[0]
    code = main(["probe", "--model", "mlp", "--depth", "0", "--scheme", "idinit"])
    assert code == 2 and "depth" in capsys.readouterr().err
