"""User errors are user errors: a bad ``--from`` file, ``method_options`` or ``[probes]`` exits 2
with one line naming the field, before anything is written."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from isokit.cli import main
from isokit.report import ConfigError, load_results, parse_config

TINY = """
seeds = [0]
schemes = ["orthogonal"]

[inputs]
examples = 2

[output]
formats = ["png"]

[[models]]
kind = "mlp"
in_features = 4
width = 4
depth = 2
"""


def _one_line_error(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("isokit: error: ")
    assert "internal error" not in err[0] and "report it" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def good(small_report) -> dict:
    return json.loads((small_report.out / "results.json").read_text(encoding="utf-8"))


def _set(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


_DELETE = object()

# (what is wrong, where, new value, the field the message must name)
BAD_FILES = {
    "unknown model": (("runs", 0, "model"), "nope", "runs[0].model"),
    "unknown scheme": (("runs", 1, "scheme"), "nope", "runs[1].scheme"),
    "model not a string": (("runs", 0, "model"), 3, "runs[0].model"),
    "unknown status": (("runs", 3, "status"), "done", "runs[3].status"),
    "status a list": (("runs", 3, "status"), ["ok"], "runs[3].status"),
    "seed a string": (("runs", 0, "seed"), "0", "runs[0].seed"),
    "seed a boolean": (("runs", 0, "seed"), False, "runs[0].seed"),
    "seed not in the config": (("runs", 0, "seed"), 7, "runs[0].seed"),
    "message not a string": (("runs", 0, "message"), ["a"], "runs[0].message"),
    "unknown run field": (("runs", 0, "blocks"), [], "runs[0].blocks"),
    "no taps": (("runs", 0, "profile", "taps"), [], "runs[0].profile.taps"),
    "taps a string": (("runs", 0, "profile", "taps"), "abc", "runs[0].profile.taps"),
    "a tap a string": (("runs", 0, "profile", "taps", 0), "abc", "runs[0].profile.taps[0]"),
    "a tap without a name": (
        ("runs", 0, "profile", "taps", 0, "name"),
        _DELETE,
        "runs[0].profile.taps[0].name",
    ),
    "blocks a string": (("runs", 0, "profile", "blocks"), "abc", "runs[0].profile.blocks"),
    "signal a list": (("runs", 0, "profile", "signal"), [1], "runs[0].profile.signal"),
    "stats of the wrong length": (
        ("runs", 0, "profile", "taps", 0, "stats", "m1"),
        [1, 2, 3, 4, 5],
        "runs[0].profile.taps[0].stats.m1",
    ),
    "signal of the wrong length": (
        ("runs", 0, "profile", "signal", "q"),
        [1],
        "runs[0].profile.signal.q",
    ),
    "blocks of other taps": (
        ("runs", 0, "profile", "blocks", 0, "name"),
        "x",
        "runs[0].profile.blocks",
    ),
    "meta missing": (("runs", 0, "profile", "meta"), _DELETE, "runs[0].profile.meta"),
    "ok without a profile": (("runs", 0, "profile"), None, "runs[0].profile"),
    "profile a string": (("runs", 0, "profile"), "abc", "runs[0].profile"),
    "runs a string": (("runs",), "abc", "runs"),
    # Before these four were re-rendered silently: no runs at all, a run left out, and
    # singular values no probe writes (NaN and negative ones reached the figures).
    "no runs": (("runs",), [], "runs"),
    "a run left out": (("runs", 0), _DELETE, "runs"),
    "a NaN singular value": (
        ("runs", 0, "profile", "taps", 0, "singular_values", 0, 0),
        "nan",
        "runs[0].profile.taps[0].singular_values",
    ),
    "a negative singular value": (
        ("runs", 0, "profile", "taps", 1, "singular_values", 1, 0),
        -1.0,
        "runs[0].profile.taps[1].singular_values",
    ),
    # Before: "internal error: OptionTypeError" from the theory line of the re-render.
    "a scheme option the scheme refuses": (
        ("config", "schemes", 1, "options"),
        {"gain": "x"},
        "config.schemes[1].options.gain",
    ),
    "runs missing": (("runs",), _DELETE, "runs"),
    "config missing": (("config",), _DELETE, "config"),
    "config a list": (("config",), [1], "config"),
    "bad config key": (("config", "models", 0, "depth"), -1, "config.models[0].depth"),
    "command a string": (("command",), "isokit report", "command"),
    "environment a list": (("environment",), ["x"], "environment"),
    "created a number": (("created",), 3, "created"),
    "elapsed a string": (("elapsed_s",), "fast", "elapsed_s"),
    "a placeholder training section": (("training",), {"curves": []}, "training"),
    "train a string": (("runs", 0, "train"), "abc", "runs[0].train"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_bad_results_file_exits_2_naming_the_field(case, good, tmp_path, capsys):
    where, value, field = BAD_FILES[case]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_set(good, where, value)), encoding="utf-8")
    out = tmp_path / "out"
    line = _one_line_error(capsys, "report", "--from", str(path), "--out", str(out), "--quiet")
    assert f"{path}: {field}:" in line, line
    assert not out.exists()


def test_a_repeated_run_is_an_error(good, tmp_path, capsys):
    data = copy.deepcopy(good)
    data["runs"].append(data["runs"][0])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    line = _one_line_error(capsys, "report", "--from", str(path), "--out", str(tmp_path / "o"))
    assert f"runs[{len(good['runs'])}]: repeats runs[0]" in line


def test_a_results_file_in_latin1_is_one_line_and_a_byte_order_mark_is_read(good, tmp_path, capsys):
    # Before: "cannot read it (UnicodeDecodeError)", and a BOM made the file "not valid JSON".
    path = tmp_path / "results.json"
    path.write_bytes(b'{"title": "caf\xe9"}')
    line = _one_line_error(capsys, "report", "--from", str(path), "--out", str(tmp_path / "o"))
    assert "is not UTF-8 text (byte 0xe9" in line
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(good).encode("utf-8"))
    assert len(load_results(path).records) == len(good["runs"])


def test_a_file_that_is_not_json_or_not_a_table(tmp_path, capsys):
    path = tmp_path / "results.json"
    for text, expected in (("[1, 2]", "not an isokit results file"), ("{", "not valid JSON")):
        path.write_text(text, encoding="utf-8")
        line = _one_line_error(capsys, "report", "--from", str(path), "--out", str(tmp_path / "o"))
        assert expected in line


@pytest.mark.parametrize("schema", ["isokit.report.results/1", "isokit.report.results/4"])
def test_a_file_of_another_schema_says_to_rerun_the_report(schema, good, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**good, "schema": schema}), encoding="utf-8")
    line = _one_line_error(capsys, "report", "--from", str(path), "--out", str(tmp_path / "o"))
    assert f"{path}: has schema {schema!r}" in line and "re-run the report" in line, line
    assert not (tmp_path / "o").exists()


def test_rerendering_needs_no_memory_for_the_models(good, tmp_path, monkeypatch):
    """``--from`` computes nothing: a file written on a bigger machine re-renders here."""
    from isokit.report import config as config_module

    monkeypatch.setattr(config_module, "machine_memory", lambda: 1024)  # a 1 KiB machine
    with pytest.raises(ConfigError, match="this machine has"):
        parse_config(good["config"])  # what the models would need to run here
    path = tmp_path / "results.json"
    path.write_text(json.dumps(good), encoding="utf-8")
    loaded = load_results(path)
    assert [r.model for r in loaded.records] == [r["model"] for r in good["runs"]]


def test_results_json_holds_one_profile_per_run(good):
    run = next(r for r in good["runs"] if r["status"] == "ok")
    assert set(run) == {"model", "scheme", "seed", "status", "message", "profile", "train"}
    assert run["train"] is None  # the config has no [train] section
    assert run["profile"]["signal"] is not None and run["profile"]["blocks"]


# ------------------------------------------------------------------------------ config


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


BAD_OPTIONS = {
    "unknown option": ("n_probe = 8", "method_options.n_probe", "n_probes"),
    "zero chunk size": ("chunk_size = 0", "method_options.chunk_size", "positive"),
    "svd a string": ('svd = "no"', "method_options.svd", "svd"),
    "n_probes a float": ("n_probes = 8.5", "method_options.n_probes", "n_probes"),
    "nan band": ("band = nan", "method_options.band", "band"),
    "method set twice": ('method = "exact"', "method_options.method", "top-level `method`"),
    "seed set twice": ("seed = 1", "method_options.seed", "seeds"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS), ids=list(BAD_OPTIONS))
def test_bad_method_options_exit_2_naming_the_option(case, tiny, tmp_path, capsys):
    line_in_toml, key, hint = BAD_OPTIONS[case]
    config = tmp_path / "bad.toml"
    config.write_text(
        tiny.read_text(encoding="utf-8").replace(
            "[inputs]", f"[method_options]\n{line_in_toml}\n\n[inputs]"
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    line = _one_line_error(capsys, "report", str(config), "--out", str(out), "--quiet")
    assert f"error: {key}:" in line and hint in line, line
    assert not out.exists()


def test_taps_that_the_model_lacks_are_a_config_error(tiny, tmp_path, capsys):
    config = tmp_path / "taps.toml"
    text = tiny.read_text(encoding="utf-8")
    config.write_text(
        text.replace("[inputs]", '[method_options]\ntaps = ["nope"]\n\n[inputs]'),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    line = _one_line_error(capsys, "report", str(config), "--out", str(out), "--quiet")
    assert "method_options.taps" in line and "nope" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "taps.toml",
        "tiny.toml",
    ]


def test_block_or_signal_without_the_profile_probe_is_a_config_error(
    tiny, tmp_path, capsys, monkeypatch
):
    import isokit.probe

    monkeypatch.setattr(isokit.probe, "profile", lambda *a, **k: pytest.fail("probe ran"))
    config = tmp_path / "noprofile.toml"
    text = tiny.read_text(encoding="utf-8")
    config.write_text(
        text.replace("[inputs]", "[probes]\nprofile = false\nsignal = true\n\n[inputs]"),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    line = _one_line_error(capsys, "report", str(config), "--out", str(out), "--quiet")
    assert "probes.profile" in line and "profile = true" in line
    assert not out.exists()
