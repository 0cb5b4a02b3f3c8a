"""``start`` in ``[[models]]``: the same model from its input and from a module, side by side."""

from __future__ import annotations

import json

import pytest

from isokit.report import ConfigError, Results, parse_config, run_config
from isokit.report.series import collect_curves
from isokit.report.summary import summary_rows

RESNET = {"kind": "resnet", "depth": 8, "width": 2, "norm": "none"}


def _config(*models: dict, **top) -> dict:
    return {
        "schemes": ["orthogonal"],
        "inputs": {"examples": 1, "image_size": 4},
        "output": {"formats": ["png"]},
        "models": list(models),
        **top,
    }


def test_the_same_resnet_plain_and_from_layer1_are_two_models():
    cfg = parse_config(_config(RESNET, {**RESNET, "start": "layer1"}))
    plain, started = (m.label for m in cfg.models)
    assert started == f"{plain}-from-layer1"
    results = run_config(cfg, quiet=True)
    runs = {r.model: r for r in results.records}
    assert {r.status for r in runs.values()} == {"ok"}
    full, part = runs[plain].profile, runs[started].profile
    assert full.names == ["stem", "layer1.0", "layer2.0", "layer3.0", "fc"]
    assert part.names == ["layer2.0", "layer3.0", "fc"] == part.signal.taps
    assert full.meta["start"] is None and part.meta["start"] == "layer1"
    assert part.meta["n_in"] == 2 * 4 * 4 and full.meta["n_in"] == 3 * 4 * 4
    # What the report shows: one curve per model, the CSV rows, and results.json read back.
    curves = {c.model: c.names for c in collect_curves(results)}
    assert curves == {plain: full.names, started: part.names}
    taps = {m: {r["tap"] for r in summary_rows(results) if r["model"] == m} for m in curves}
    assert taps == {plain: set(full.names), started: set(part.names)}
    again = Results.from_dict(json.loads(results.to_json()))
    assert again.config.models == cfg.models
    assert [r.profile.names for r in again.records] == [full.names, part.names]


def test_no_theory_chain_from_a_start():
    # The theory's depths count from the input, so a model probed from a start gets no line.
    mlp = {"kind": "mlp", "in_features": 4, "width": 4, "depth": 3, "activation": "tanh"}
    plain, started = parse_config(_config(mlp, {**mlp, "start": "acts.0"})).models
    assert plain.chain() is not None and started.chain() is None


@pytest.mark.parametrize(
    ("model", "key", "match"),
    [
        ({**RESNET, "start": "layr1"}, "models[0].start", "close matches: layer1"),
        ({**RESNET, "start": 3}, "models[0].start", "non-empty strings"),
        ({**RESNET, "start": "layer*"}, "models[0].start", "glob"),
    ],
)
def test_a_bad_start_is_a_one_line_config_error(model, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_config(_config(model))
    assert info.value.key == key and "\n" not in str(info.value)


def test_start_is_per_model_not_a_method_option():
    with pytest.raises(ConfigError, match=r"set per model") as info:
        parse_config(_config(RESNET, method_options={"start": "layer1"}))
    assert info.value.key == "method_options.start"


def test_a_start_with_no_tap_after_it_fails_at_its_model():
    cfg = parse_config(_config(RESNET, {**RESNET, "start": "fc"}))
    with pytest.raises(ConfigError, match=r"no tap runs after 'fc'") as info:
        run_config(cfg, quiet=True)
    assert info.value.key == "models[1].start"
