"""Config validation: good configs load, bad ones fail naming the dotted key and the fix."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isokit.init import schemes
from isokit.report import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from isokit.sweep import load_sweep_config
from tests.report.tables import with_value

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "analyses" / "configs").glob("*.toml"))

BASE = {
    "seeds": [0],
    "schemes": ["idinit", "orthogonal"],
    "models": [
        {"kind": "mlp", "in_features": 8, "width": 8, "depth": 4},
        {"kind": "resnet", "depth": 8, "width": 4},
    ],
}


def _with(path: str, value) -> dict:
    return with_value(BASE, path, value)


def test_default_config_compares_the_required_schemes_and_models():
    cfg = load_config(None)
    names = {s.name for s in cfg.schemes}
    assert names >= {
        "idinit",
        "kaiming-normal",
        "xavier-normal",
        "orthogonal",
        "torch-default",
        "fixup",
        "rezero",
        "zero",
    }
    kinds = [(m.kind, m.args.get("activation"), m.args.get("norm")) for m in cfg.models]
    assert ("mlp", "tanh", None) in kinds and ("mlp", "relu", None) in kinds
    assert ("resnet", None, "none") in kinds
    assert DEFAULT_CONFIG.is_file()


def _is_sweep(path: Path) -> bool:
    return "sweep" in tomllib.loads(path.read_text())


SWEEPS = [p for p in EXAMPLES if _is_sweep(p)]
REPORTS = [p for p in EXAMPLES if not _is_sweep(p)]


@pytest.mark.parametrize("path", REPORTS, ids=[p.name for p in REPORTS])
def test_example_configs_validate(path):
    cfg = load_config(path)
    assert cfg.models and cfg.schemes and cfg.seeds
    # Every model can be built with the declared input shape (meta device: no allocation);
    # a model fed by an inputs factory declares none.
    for m in cfg.models:
        assert m.input_shape is None or all(d > 0 for d in m.input_shape)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_example_sweep_configs_validate_as_sweeps_and_are_refused_as_reports(path):
    grid = load_sweep_config(path)
    assert grid.cells and len({c.key for c in grid.cells}) == len(grid.cells)
    with pytest.raises(ConfigError, match=r"^sweep: .*isokit sweep CONFIG"):
        load_config(path)


def test_example_configs_exist():
    assert {p.name for p in EXAMPLES} >= {
        "depth_sweep_mlp.toml",
        "resnet_schemes.toml",
        "transformer.toml",
    }


def test_resolved_config_round_trips():
    cfg = load_config(None)
    again = parse_config(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    assert again.models == cfg.models and again.schemes == cfg.schemes


def test_input_shapes_follow_the_model_kind():
    data = copy.deepcopy(BASE)
    data["inputs"] = {"image_size": 6}
    data["models"].append(
        {"kind": "transformer", "depth": 2, "d_model": 8, "heads": 2, "d_ff": 16, "seq_len": 5}
    )
    cfg = parse_config(data)
    assert [m.input_shape for m in cfg.models] == [(8,), (3, 6, 6), (5, 8)]


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (_with("models.1.depth", -3), "models[1].depth", "positive integer, got -3"),
        (_with("models.0.depth", "4"), "models[0].depth", "positive integer"),
        (_with("models.1.depth", 21), "models[1].depth", "6n+2"),
        (_with("models.0.kind", "mpl"), "models[0].kind", "did you mean 'mlp'"),
        (_with("models.0.widht", 8), "models[0].widht", "did you mean 'width'"),
        (_with("models.0.activation", "tanhh"), "models[0].activation", "'tanh'"),
        (_with("models.0.input_shape", [3, 3]), "models[0].input_shape", "in_features"),
        (_with("schemes.1", "orthogonl"), "schemes[1]", "did you mean orthogonal"),
        (
            _with("schemes.0", {"name": "idinit", "options": {"taux": 1}}),
            "schemes[0].options.taux",
            "its options are: tau,",
        ),
        (_with("schemes.1", {"name": "idinit"}), "schemes[1].label", "used twice"),
        (_with("seeds", [0, "1"]), "seeds[1]", "integer"),
        (_with("seeds", []), "seeds", "non-empty"),
        (_with("inputs.examples", 0), "inputs.examples", "positive integer"),
        (_with("inputs.distribution", "normal"), "inputs.distribution", "gaussian"),
        (_with("probes.profile", "yes"), "probes.profile", "true or false"),
        (_with("output.formats", ["png", "gif"]), "output.formats[1]", "'svg'"),
        (_with("method", "lanczoz"), "method", "did you mean 'lanczos'"),
        (_with("method_options", {"n_probe": 8}), "method_options.n_probe", "n_probes"),
        (_with("seed", [0]), "seed", "did you mean 'seeds'"),
        (_with("threads", 0), "threads", "positive integer"),
        ({"seeds": [0], "schemes": ["idinit"]}, "models", "missing"),
        (
            _with(
                "models.0",
                {
                    "kind": "transformer",
                    "depth": 2,
                    "d_model": 10,
                    "heads": 3,
                    "d_ff": 8,
                    "seq_len": 4,
                },
            ),
            "models[0].heads",
            "divisible",
        ),
    ],
)
def test_errors_name_the_key(data, key, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    err = info.value
    assert err.key == key
    assert fragment in str(err)
    assert str(err).startswith(f"{key}: ")
    assert "\n" not in str(err)


def test_method_and_dtype_are_the_probes_to_check_and_default():
    from isokit.probe import ProbeOptions

    cfg = parse_config(BASE)
    defaults = ProbeOptions().to_dict()
    assert (cfg.method, cfg.dtype) == (defaults["method"], defaults["dtype"])
    with pytest.raises(ConfigError, match="too coarse") as info:  # the probe's own message
        parse_config(_with("dtype", "float16"))
    assert info.value.key == "dtype"


def test_scheme_options_are_checked_once_each_by_the_scheme(monkeypatch):
    from isokit.init.registry import Scheme

    seen = []
    real = Scheme.check_options

    def spy(self, options):
        seen.append((self.name, dict(options)))
        return real(self, options)

    monkeypatch.setattr(Scheme, "check_options", spy)
    parse_config(_with("schemes.0", {"name": "idinit", "options": {"tau": 0.5, "eps": 0.0}}))
    assert [s for s in seen if s[0] == "idinit"] == [
        ("idinit", {"tau": 0.5}),
        ("idinit", {"eps": 0.0}),
    ]


def test_unknown_scheme_message_points_to_the_list():
    with pytest.raises(ConfigError, match="isokit schemes"):
        parse_config(_with("schemes.0", "no-such-scheme"))


def test_every_registered_scheme_name_is_accepted():
    data = copy.deepcopy(BASE)
    data["schemes"] = schemes().names()
    cfg = parse_config(data)
    assert [s.name for s in cfg.schemes] == schemes().names()


def test_toml_syntax_error_reports_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('seeds = [0]\nschemes = ["idinit"]\ntitle = = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == str(path)
    assert "line 3" in str(info.value) and "column" in str(info.value)


def test_missing_file_says_so(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert info.value.key == str(path)


def test_default_toml_is_valid_toml_with_comments():
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    assert tomllib.loads(text)["schemes"]
    assert text.count("#") > 5  # documented for users who copy it


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(-5, 40), width=st.integers(-3, 64))
def test_mlp_sizes_are_accepted_iff_positive(depth, width):
    data = _with("models.0", {"kind": "mlp", "in_features": 4, "width": width, "depth": depth})
    if depth > 0 and width > 0:
        cfg = parse_config(data)
        assert cfg.models[0].args["depth"] == depth
    else:
        with pytest.raises(ConfigError) as info:
            parse_config(data)
        bad = "width" if width <= 0 else "depth"
        assert info.value.key == f"models[0].{bad}"
