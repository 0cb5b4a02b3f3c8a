"""Config values are typed strictly, scheme options reach the scheme's check, files are read
as UTF-8 with or without a byte-order mark."""

from __future__ import annotations

import pytest

from isokit.report import ConfigError, load_config, parse_config
from tests.report.tables import with_value

BASE = {
    "seeds": [0],
    "schemes": ["orthogonal"],
    "models": [{"kind": "mlp", "in_features": 8, "width": 8, "depth": 4}],
}

TOML = """\
seeds = [0]
schemes = ["orthogonal"]
[[models]]
kind = "mlp"
in_features = 8
width = 8
depth = 4
"""


def _set(path: str, value) -> dict:
    return with_value(BASE, path, value)


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("models.0.bias", "False", "models[0].bias"),
        ("models.0.bias", 0, "models[0].bias"),
        ("models.0.depth", 1e3, "models[0].depth"),
        ("models.0.depth", True, "models[0].depth"),
        ("models.0.depth", 4.0, "models[0].depth"),
        ("seeds", [1.5], "seeds[0]"),
        ("seeds", ["0"], "seeds[0]"),
        ("seeds", [True], "seeds[0]"),
        ("seeds", [-1], "seeds[0]"),
        ("threads", True, "threads"),
        ("threads", 2.0, "threads"),
        ("inputs.examples", 4.0, "inputs.examples"),
        ("inputs.image_size", "8", "inputs.image_size"),
        ("inputs.shape", [8.0], "inputs.shape[0]"),
        ("probes.signal", "true", "probes.signal"),
        ("probes.signal", 1, "probes.signal"),
        ("method", True, "method"),
        ("models.0.label", "", "models[0].label"),
        ("models.0.label", 3, "models[0].label"),
        ("schemes.0", {"name": "orthogonal", "label": " "}, "schemes[0].label"),
    ],
)
def test_wrong_types_are_errors_at_their_key(path, value, key):
    with pytest.raises(ConfigError) as info:
        parse_config(_set(path, value))
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_a_seed_key_is_not_seeds():
    with pytest.raises(ConfigError, match="did you mean 'seeds'") as info:
        parse_config({**BASE, "seed": 1.5})
    assert info.value.key == "seed"


@pytest.mark.parametrize(
    ("scheme", "option", "toml"),
    [
        ("orthogonal", "gain", "nan"),
        ("xavier-normal", "gain", "inf"),
        ("kaiming-normal", "a", "-inf"),
        ("idinit", "tau", "nan"),
    ],
)
def test_toml_nan_and_inf_in_options_reach_the_scheme_check(tmp_path, scheme, option, toml):
    path = tmp_path / "c.toml"
    text = TOML.replace(
        'schemes = ["orthogonal"]',
        f'schemes = [{{ name = "{scheme}", options = {{ {option} = {toml} }} }}]',
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == f"schemes[0].options.{option}"
    # The key names the option; the message says what is wrong and the fix, each once.
    assert info.value.message == f"must be finite, got {float(toml)}; pass a finite number"


def test_finite_options_pass_through_unchanged():
    cfg = parse_config(_set("schemes.0", {"name": "orthogonal", "options": {"gain": 1.5}}))
    assert cfg.schemes[0].options == {"gain": 1.5}


def test_a_byte_order_mark_is_read(tmp_path):
    plain, bom = tmp_path / "plain.toml", tmp_path / "bom.toml"
    plain.write_text(TOML, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + TOML.encode("utf-8"))
    assert load_config(bom).to_dict() == load_config(plain).to_dict()


def test_a_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(("# café\n" + TOML).encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == str(path)
    assert "not UTF-8" in info.value.message and "0xe9" in info.value.message
    assert "\n" not in str(info.value)


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file") as info:
        load_config(tmp_path)
    assert info.value.key == str(tmp_path)


@pytest.mark.parametrize(
    ("scheme", "options", "key", "message"),
    [
        (
            "fixup",
            {"remove_norms": "False"},
            "schemes[0].options.remove_norms",
            "must be True or False, got 'False' (str)",
        ),
        (
            "delta-orthogonal",
            {"allow_contracting": "no"},
            "schemes[0].options.allow_contracting",
            "must be True or False, got 'no' (str)",
        ),
        (
            "lsuv",
            {"max_iter": 1.5},
            "schemes[0].options.max_iter",
            "must be an int, got 1.5 (float)",
        ),
        (
            "skipinit",
            {"alpha": "0"},
            "schemes[0].options.alpha",
            "must be a real number, got '0' (str)",
        ),
        (
            "kaiming-normal",
            {"mode": "fan_avg"},
            "schemes[0].options.mode",
            "'fan_avg' is not supported; use one of 'fan_in', 'fan_out'",
        ),
        (
            "orthogonal",
            {"gain": "x"},
            "schemes[0].options.gain",
            "must be a real number or 'relu', got 'x' (str)",
        ),
        (
            "orthogonal",
            {"gian": 2.0},
            "schemes[0].options.gian",
            "is not an option of scheme 'orthogonal'; did you mean 'gain'? its options are: "
            "gain, bias",
        ),
    ],
)
def test_option_types_fail_when_the_config_is_read_at_the_option_key(scheme, options, key, message):
    # Before, remove_norms="False" passed the config and failed when fixup first ran (after
    # every earlier model × scheme had been probed), at `schemes[0].options`, as
    # "fixup: remove_norms must be True or False, got 'False' (str); fix the option".
    with pytest.raises(ConfigError) as info:
        parse_config(_set("schemes.0", {"name": scheme, "options": options}))
    assert (info.value.key, info.value.message) == (key, message)


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "\ufeff"])
def test_an_empty_config_says_it_is_empty(tmp_path, text):
    # Before: "models: missing; add at least one [[models]] table", as if half-written.
    path = tmp_path / "empty.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == str(path) and info.value.message.startswith("is empty;")
