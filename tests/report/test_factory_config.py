"""Models from anywhere: ``factory``, ``kwargs``, ``inputs`` in configs and ``probe --factory``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from isokit.cli import main
from isokit.probe import profile
from isokit.report import ConfigError, load_config, parse_config
from isokit.report.run import draw_inputs, run_one
from tests.report import factories

ROOT = Path(__file__).resolve().parents[2]
HF_CONFIG = ROOT / "analyses" / "configs" / "hf_models.toml"
F = "tests.report.factories"

TOKENS = {
    "factory": f"{F}:residual_tokens",
    "kwargs": {"width": 5, "depth": 2},
    "inputs": f"{F}:token_batch",
    "input_kwargs": {"seq_len": 3},
    "start": "embed",
    "taps": "blocks.*",
}


def _config(*models, schemes=("kaiming-normal",), **top) -> dict:
    return {
        "schemes": list(schemes),
        "models": list(models),
        "inputs": {"examples": 2},
        "method": "exact",
        **top,
    }


def _refused(model: dict, key: str, fragment: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(model))
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)
    assert "\n" not in str(info.value)
    return info.value


def test_a_factory_model_is_labelled_by_its_function_and_sorted_kwargs():
    a = parse_config(_config({**TOKENS, "kwargs": {"width": 5, "depth": 2}})).models[0]
    b = parse_config(_config({**TOKENS, "kwargs": {"depth": 2, "width": 5}})).models[0]
    assert a.label == b.label == "residual_tokens(depth=2, width=5)-from-embed"
    assert a.kind == "factory" and a.factory == f"{F}:residual_tokens" and a.input_shape is None
    assert a.chain() is None  # no theory of a model from outside isokit
    plain = {"factory": f"{F}:residual_mlp", "input_shape": [6]}
    assert parse_config(_config(plain)).models[0].label == "residual_mlp"


def test_the_resolved_config_round_trips():
    cfg = parse_config(_config(TOKENS, {"factory": f"{F}:residual_mlp", "input_shape": [6]}))
    again = parse_config(cfg.to_dict())
    assert again.models == cfg.models and again.to_dict() == cfg.to_dict()
    assert cfg.to_dict()["models"][0]["taps"] == "blocks.*"


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        (
            {"factory": "no_such_package.mod:f"},
            "models[0].factory",
            "no module named 'no_such_package'",
        ),
        ({"factory": "tests.report.factories"}, "models[0].factory", "package.module:function"),
        ({"factory": "os; import shutil:f"}, "models[0].factory", "import path"),
        ({"factory": f"{F}:residual_token"}, "models[0].factory", "did you mean 'residual_tokens'"),
        ({"factory": f"{F}:NOT_CALLABLE"}, "models[0].factory", "not a function or class"),
        ({"factory": f"{F}:fails"}, "models[0].factory", "raised RuntimeError: the factory's own"),
        ({"factory": f"{F}:not_a_module"}, "models[0].factory", "returned list, not an nn.Module"),
        ({"kwargs": {"widht": 5}}, "models[0].kwargs.widht", "did you mean 'width'"),
        ({"kwargs": [1]}, "models[0].kwargs", "must be a table"),
        ({"width": 5}, "models[0].width", "a factory's arguments go in kwargs"),
        ({"kind": "mlp"}, "models[0].factory", "not both"),
        (
            {"inputs": f"{F}:wrong_batch", "input_kwargs": {}},
            "models[0].inputs",
            "returned 3 examples for n = 2",
        ),
        ({"inputs": "os:nope"}, "models[0].inputs", "has no attribute 'nope'"),
        ({"input_shape": [6]}, "models[0].input_shape", "drop input_shape"),
        ({"start": "embedd"}, "models[0].start", "close matches: embed"),
        ({"taps": "block.*"}, "models[0].taps", "no module matching the pattern 'block.*'"),
        ({"taps": 3}, "models[0].taps", "predicate"),
    ],
)
def test_bad_factory_entries_name_the_key_and_the_fix(change, key, fragment):
    _refused({**TOKENS, **change}, key, fragment)


def test_token_inputs_without_start_are_refused_at_start():
    model = {k: v for k, v in TOKENS.items() if k not in ("start", "taps")}
    err = _refused(model, "models[0].start", "cannot be differentiated: pass start=")
    assert err.key == "models[0].start" and "token" in err.message
    # The same token inputs with a start are accepted: the refusal is about start alone.
    assert parse_config(_config(TOKENS)).models[0].start == TOKENS["start"]


def test_a_factory_needs_an_input_shape_or_an_inputs_factory():
    err = _refused({"factory": f"{F}:residual_mlp"}, "models[0].input_shape", "inputs =")
    assert "input_shape = [...]" in err.message


def test_a_factory_model_runs_from_its_drawn_keyword_inputs(monkeypatch):
    import isokit.init

    seen = {}
    real = isokit.init.apply

    def recording(model, scheme, **kwargs):
        seen.update(kwargs)
        return real(model, scheme, **kwargs)

    monkeypatch.setattr(isokit.init, "apply", recording)
    cfg = parse_config(_config(TOKENS))
    spec = cfg.models[0]
    record = run_one(cfg, spec, cfg.schemes[0], seed=0)
    assert record.status == "ok", record.message
    assert record.profile.names == ["blocks.0", "blocks.1"]
    inputs = draw_inputs(cfg.inputs, None, 0, factory=spec.inputs_factory())
    # The scheme was given the very inputs the probe measured on, to capture the model.
    assert torch.equal(seen["example_inputs"]["input_ids"], inputs["input_ids"])
    # The same numbers as probing the model by hand, from the same seeds.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = spec.build()
    real(model, "kaiming-normal", seed=0)
    by_hand = profile(model, inputs, start="embed", taps="blocks.*", method="exact")
    for a, b in zip(record.profile.taps, by_hand.taps, strict=True):
        np.testing.assert_allclose(a.singular_values, b.singular_values, rtol=1e-12)
    assert record.profile.meta["model_kind"] == f"{F}:residual_tokens"


def test_model_taps_replace_method_options_taps():
    cfg = parse_config(
        _config(
            {**TOKENS, "taps": ["blocks.1"]},
            method_options={"taps": "blocks.*"},
        )
    )
    record = run_one(cfg, cfg.models[0], cfg.schemes[0], seed=0)
    assert record.profile.names == ["blocks.1"]


def test_kind_models_take_taps_patterns_too():
    cfg = parse_config(
        _config(
            {
                "kind": "residual-mlp",
                "in_features": 4,
                "width": 4,
                "depth": 3,
                "taps": "blocks.[12]",
            }
        )
    )
    record = run_one(cfg, cfg.models[0], cfg.schemes[0], seed=0)
    assert record.profile.names == ["blocks.1", "blocks.2"]


def test_rerendering_does_not_build_the_models():
    cfg = parse_config(_config(TOKENS))
    factories.CALLS.clear()
    again = parse_config(cfg.to_dict(), check_resources=False)
    assert again.models == cfg.models and factories.CALLS == []


# ------------------------------------------------------------------ the command line


def _probe(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["probe", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_probe_factory_does_what_the_config_does(capsys):
    code, out, err = _probe(
        capsys,
        "--factory",
        f"{F}:residual_tokens",
        "--kwargs",
        "{width = 5, depth = 2}",
        "--inputs",
        f"{F}:token_batch",
        "--input-kwargs",
        "{seq_len = 3}",
        "--start",
        "embed",
        "--taps",
        "blocks.*",
        "--scheme",
        "kaiming-normal",
        "--examples",
        "2",
        "--method",
        "exact",
    )
    assert code == 0, err
    assert out.splitlines()[0].startswith("residual_tokens(depth=2, width=5)-from-embed")
    assert "blocks.0" in out and "blocks.1" in out


def test_probe_factory_with_an_input_shape(capsys):
    code, out, err = _probe(
        capsys,
        "--factory",
        f"{F}:residual_mlp",
        "--kwargs",
        "{width = 4}",
        "--input-shape",
        "4",
        "--taps",
        "0,2",
        "--scheme",
        "kaiming-normal",
        "--examples",
        "1",
    )
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines()[3:]]
    assert rows == ["0", "2"]


@pytest.mark.parametrize(
    ("argv", "flag", "fragment"),
    [
        (["--factory", f"{F}:nope", "--input-shape", "4"], "--factory", "has no attribute"),
        (
            ["--factory", f"{F}:residual_mlp", "--kwargs", "{widht = 4}", "--input-shape", "4"],
            "--kwargs",
            "did you mean 'width'",
        ),
        (
            ["--factory", f"{F}:residual_mlp", "--kwargs", "width=4", "--input-shape", "4"],
            "--kwargs",
            "TOML",
        ),
        (
            ["--factory", f"{F}:residual_mlp", "--input-shape", "4,x"],
            "--input-shape",
            "positive integer",
        ),
        (
            ["--factory", f"{F}:residual_mlp", "--input-shape", "6", "--taps", "9*"],
            "--taps",
            "no module matching",
        ),
        (
            ["--factory", f"{F}:residual_mlp", "--input-shape", "6", "--depth", "3"],
            "--depth",
            "--kwargs",
        ),
        (
            ["--factory", f"{F}:residual_tokens", "--inputs", f"{F}:token_batch"],
            "--start",
            "token ids",
        ),
        (["--model", "mlp", "--kwargs", "{a = 1}"], "--kwargs", "--factory"),
    ],
)
def test_probe_factory_errors_name_the_flag(capsys, argv, flag, fragment):
    code, out, err = _probe(capsys, *argv, "--scheme", "kaiming-normal", "--examples", "1")
    assert code == 2 and out == ""
    assert err.startswith(f"isokit: error: {flag}: ") and fragment in err, err
    assert err.count("\n") == 1


def test_a_factory_model_without_taps_it_can_infer_is_told_to_name_them(capsys):
    code, out, err = _probe(
        capsys,
        "--factory",
        "torch.nn:Linear",
        "--kwargs",
        "{in_features = 3, out_features = 3}",
        "--input-shape",
        "3",
        "--scheme",
        "kaiming-normal",
        "--examples",
        "1",
    )
    assert code == 2 and err.startswith("isokit: error: --taps: cannot infer taps for Linear")
    assert "set taps = [...]" in err and err.count("\n") == 1


def test_model_and_factory_exclude_each_other(capsys):
    code, _, err = _probe(
        capsys, "--model", "mlp", "--factory", f"{F}:residual_mlp", "--scheme", "idinit"
    )
    assert code == 2 and "not allowed with" in err


# ------------------------------------------------------------------ the Hugging Face config


def test_hf_config_without_transformers_is_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(ConfigError) as info:
        load_config(HF_CONFIG)
    assert info.value.key == "models[0].factory"
    assert (
        "needs the package 'transformers', which is not installed; pip install 'isokit[hf]'"
        in str(info.value)
    )


def test_hf_config_compares_the_residual_baselines_on_three_models():
    pytest.importorskip("transformers")
    cfg = load_config(HF_CONFIG)
    assert {s.name for s in cfg.schemes} >= {
        "idinit",
        "kaiming-normal",
        "fixup",
        "skipinit",
        "rezero",
        "t-fixup",
        "zero",
    }
    assert [m.label for m in cfg.models] == ["bert", "gpt2", "vit"]
    assert all(m.factory.startswith("isokit.models.hf:") for m in cfg.models)


@pytest.mark.parametrize("index", [0, 1, 2], ids=["bert", "gpt2", "vit"])
def test_hf_config_probes_each_model_from_its_start(index):
    pytest.importorskip("transformers")
    cfg = load_config(HF_CONFIG)
    scheme = next(s for s in cfg.schemes if s.name == "kaiming-normal")
    record = run_one(cfg, cfg.models[index], scheme, seed=0)
    assert record.status == "ok", record.message
    prof = record.profile
    assert len(prof.names) == 4 and prof.meta["start"] == cfg.models[index].start
    assert prof.signal is not None and np.all(np.isfinite(prof.signal.q))
    assert prof.meta["n_in"] == (8 * 32 if index < 2 else 17 * 32)  # tokens (ViT: +CLS) × width
