"""``isokit probe``: flags come from the model kinds' specs, and errors name real flags."""

from __future__ import annotations

import argparse

import pytest
from torch import nn

from isokit.cli import build_parser, main
from isokit.cli_probe import _RUN_FLAGS, _config_table, _flag_for, _flag_model
from isokit.models import get_model_kind, model_flags, model_kinds


def _probe(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["probe", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _flags_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {opt: a for a in sub.choices["probe"]._actions for opt in a.option_strings}


@pytest.fixture
def no_model_built(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was constructed")

    monkeypatch.setattr(nn.Module, "__init__", refuse)


def test_method_choices_are_the_probes():
    from isokit.probe.options import METHODS

    assert tuple(_flags_of(build_parser())["--method"].choices) == METHODS


def test_each_run_flag_sets_its_config_key_with_its_one_default():
    from isokit.report import parse_config

    parsed = build_parser().parse_args(["probe", "--model", "mlp", "--scheme", "idinit"])
    cfg = parse_config(_config_table("mlp", "idinit", [], {}))
    for flag in _RUN_FLAGS:
        assert getattr(parsed, flag.dest) == flag.default  # the parser's default is the flag's
        assert _flag_for(flag.key, model="mlp") == flag.flag  # and errors there name it
    default = {f.dest: f.default for f in _RUN_FLAGS}
    assert cfg.inputs.examples == default["examples"]
    assert cfg.inputs.image_size == default["image_size"]
    assert cfg.seeds == (default["seed"],) and cfg.method == default["method"]


def test_model_choices_and_flags_come_from_the_registry():
    flags = _flags_of(build_parser())
    assert tuple(flags["--model"].choices) == tuple(model_kinds())
    for flag, entries in model_flags().items():
        action = flags[f"--{flag}"]
        for kind, arg in entries:
            assert f"{kind.name}" in action.help and arg.name in action.help
    assert "d_model (default 32)" in flags["--width"].help


@pytest.mark.parametrize(
    ("model", "table"),
    [
        ("mlp", {"in_features": 64, "width": 64, "depth": 8}),
        ("convnet", {"in_channels": 3, "channels": 16, "depth": 8}),
        ("resnet", {"depth": 20, "width": 16}),
        ("transformer", {"depth": 4, "d_model": 32, "heads": 4, "d_ff": 128, "seq_len": 8}),
        ("residual-mlp", {"width": 64, "depth": 8}),
    ],
)
def test_probe_defaults_are_the_specs(model, table):
    assert _flag_model(model, {}) == {"kind": model, **table}
    get_model_kind(model).resolve(table)  # every default table is a valid model


def test_flags_set_the_argument_each_kind_ties_to_them():
    assert _flag_model("convnet", {"width": 5, "depth": 2})["channels"] == 5
    mlp = _flag_model("mlp", {"width": 12, "in_features": None})
    assert mlp["in_features"] == 12  # in_features follows width unless given
    assert _flag_model("transformer", {"width": 8})["d_ff"] == 32
    assert _flag_model("resnet", {"norm": "batch"})["norm"] == "batch"


@pytest.mark.parametrize(
    ("argv", "flag", "fragment"),
    [
        (("--model", "mlp", "--depth", str(10**12)), "--depth", "at most"),
        (("--model", "mlp", "--depth", "0"), "--depth", "positive integer"),
        (("--model", "transformer", "--width", "30"), "--width", "divisible by heads"),
        (("--model", "convnet", "--width", "-2"), "--width", "positive integer"),
        (("--model", "resnet", "--depth", "21"), "--depth", "6n+2"),
        (("--model", "resnet", "--norm", "layer"), "--norm", "'none', 'batch'"),
        (("--model", "resnet", "--activation", "tanh"), "--activation", "drop it"),
        (("--model", "convnet", "--in-features", "4"), "--in-features", "drop it"),
        (("--model", "mlp", "--activation", "tanhh"), "--activation", "did you mean 'tanh'"),
        (("--model", "mlp", "--examples", str(10**9)), "--examples", "draw at most"),
        (("--model", "mlp", "--examples", str(10**12)), "--examples", "at most"),
        (("--model", "mlp", "--examples", "0"), "--examples", "positive integer"),
        (("--model", "resnet", "--image-size", str(10**6)), "--depth/--width", "GiB"),
        (("--model", "mlp", "--width", str(10**9)), "--in-features/--width/--depth", "GiB"),
        (("--model", "mlp", "--seed", "-1"), "--seed", ">= 0"),
        (("--model", "mlp", "--option", "gain=nan"), "--option gain", "finite"),
        (("--model", "mlp", "--option", "gain=1", "--option", "gain=2"), "--option gain", "twice"),
        (("--model", "mlp", "--option", "gian=1"), "--option gian", "its options are: gain"),
        # Before, these three reached the model (and --option bias named `--option` alone).
        (("--model", "mlp", "--option", "gain=xavier"), "--option gain", "or 'relu', got"),
        (("--model", "mlp", "--option", "bias=drop"), "--option bias", "'drop' is not supported"),
        (("--model", "mlp", "--option", "gain=False"), "--option gain", "write gain=false"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag_before_any_model_is_built(
    argv, flag, fragment, capsys, no_model_built, monkeypatch
):
    from isokit.report import config as config_module

    monkeypatch.setattr(config_module, "machine_memory", lambda: 64 * 2**30)
    code, _, stderr = _probe(capsys, *argv, "--scheme", "orthogonal")
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith(f"isokit: error: {flag}: ") and fragment in lines[0]


@pytest.mark.parametrize("value", ["1e3", "1.5", "true", "4x"])
def test_integer_flags_refuse_non_integers(value, capsys):
    code, _, stderr = _probe(capsys, "--model", "mlp", "--depth", value, "--scheme", "idinit")
    assert code == 2 and "--depth" in stderr and len(stderr.strip().splitlines()) == 1


def test_unknown_model_is_a_usage_error_listing_the_kinds(capsys):
    code, _, stderr = _probe(capsys, "--model", "rnn", "--scheme", "idinit")
    assert code == 2 and "residual-mlp" in stderr


def test_the_residual_mlp_kind_probes_from_flags(capsys):
    code, stdout, _ = _probe(
        capsys,
        *("--model", "residual-mlp", "--width", "4", "--depth", "2"),
        *("--scheme", "orthogonal", "--examples", "2"),
    )
    assert code == 0, stdout
    assert stdout.splitlines()[0].startswith("residual-mlp-relu-w4-d2")
    assert "blocks.1" in stdout


@pytest.mark.parametrize(
    ("key", "related", "model", "flag"),
    [
        ("models[0].channels", (), "convnet", "--width"),
        ("models[0].d_model", (), "transformer", "--width"),
        ("models[0].heads", ("models[0].d_model",), "transformer", "--width"),
        ("models[0].kind", (), "mlp", "--model"),
        ("models[0]", (), "resnet", "--depth/--width"),
        ("schemes[0]", (), "mlp", "--scheme"),
        ("schemes[0].options", (), "mlp", "--option"),
        ("schemes[0].options.tau", (), "mlp", "--option tau"),
        ("seeds[0]", (), "mlp", "--seed"),
        ("inputs.examples", (), "mlp", "--examples"),
        ("inputs.image_size", (), "resnet", "--image-size"),
        ("method", (), "mlp", "--method"),
    ],
)
def test_config_keys_map_to_real_flags(key, related, model, flag):
    assert _flag_for(key, related, model=model) == flag
    real = set(_flags_of(build_parser()))
    assert all(part.split()[0] in real for part in flag.split("/"))
