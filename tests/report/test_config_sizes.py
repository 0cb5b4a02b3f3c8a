"""Sizes that cannot fit are refused from arithmetic, before any model is built."""

from __future__ import annotations

import copy

import pytest
from torch import nn

from isokit.report import ConfigError, load_config, parse_config
from isokit.report import config as config_module

BASE = {
    "seeds": [0],
    "schemes": ["orthogonal"],
    "models": [
        {"kind": "mlp", "in_features": 8, "width": 8, "depth": 4},
        {"kind": "convnet", "in_channels": 3, "channels": 4, "depth": 2},
    ],
}
GIB = 2**30


@pytest.fixture
def no_model_built(monkeypatch):
    """Fail the test if any ``nn.Module`` is constructed (on any device, meta included)."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was constructed")

    monkeypatch.setattr(nn.Module, "__init__", refuse)


@pytest.fixture
def memory_64_gib(monkeypatch):
    monkeypatch.setattr(config_module, "machine_memory", lambda: 64 * GIB)


def _with(**changes) -> dict:
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (_with(models__0__depth=10**12), "models[0].depth", "at most"),
        (_with(models__0__width=10**9), "models[0]", "parameters"),
        (_with(models__1__channels=10**9), "models[1]", "parameters"),
        (_with(models__0__depth=10**9), "models[0]", "GiB"),  # a billion tiny layers
        (_with(inputs={"examples": 10**9}), "inputs.examples", "draw at most"),
        (_with(inputs={"image_size": 10**6}), "models[1]", "GiB"),
        (_with(inputs={"shape": [8, 10**9]}), "inputs.shape", "entries"),
        (_with(threads=10**5), "threads", "at most"),
        (_with(seeds=[2**64]), "seeds[0]", "at most"),
        (_with(inputs={"examples": 2**80}), "inputs.examples", "at most"),
    ],
)
def test_absurd_sizes_fail_at_their_key_without_building(
    data, key, fragment, no_model_built, memory_64_gib
):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == key
    assert fragment in info.value.message


def test_the_memory_check_compares_with_the_machine(monkeypatch, no_model_built):
    big = _with(models__0__width=2**17)  # 2^34 parameters: 192 GiB as float32 + float64
    monkeypatch.setattr(config_module, "machine_memory", lambda: 64 * GIB)
    with pytest.raises(ConfigError, match="this machine has 64 GiB"):
        parse_config(big)
    monkeypatch.setattr(config_module, "machine_memory", lambda: 1024 * GIB)
    assert parse_config(big).models[0].args["width"] == 2**17


def test_resources_can_be_left_unchecked(monkeypatch, no_model_built):
    monkeypatch.setattr(config_module, "machine_memory", lambda: GIB)
    data = _with(models__0__width=10**6)
    with pytest.raises(ConfigError):
        parse_config(data)
    # Re-reading a config that ran on a bigger machine (to re-render its results) may skip it.
    assert parse_config(data, check_resources=False).models[0].args["width"] == 10**6
    monkeypatch.setattr(config_module, "machine_memory", lambda: None)
    assert parse_config(data).models[0].args["width"] == 10**6


def test_fitting_configs_are_not_refused(memory_64_gib):
    cfg = load_config(None)
    for m in cfg.models:
        size = m.model_kind.size(m.args, m.input_shape)
        assert 0 < size.bytes() < GIB
