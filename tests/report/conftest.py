"""A shrunk report, run once per session and shared by the report, CLI and screenshot tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from isokit.report import Config, Results, load_config, render, run_config

# Tiny but complete: a tanh MLP (theory overlay applies; residual schemes do not) and a ResNet
# (every scheme applies; Fixup/ZerO zero the head, so infinite gaps show up). All three probes.
SMALL_TOML = """
title = "small test report"
seeds = [0]
schemes = ["idinit", "orthogonal", "fixup", "zero"]

[inputs]
examples = 2
image_size = 4

[probes]
profile = true
block = true
signal = true

[output]
formats = ["png", "svg"]

[[models]]
kind = "mlp"
in_features = 6
width = 6
depth = 3
activation = "tanh"

[[models]]
kind = "resnet"
depth = 8
width = 2
"""


@dataclass(frozen=True)
class SmallReport:
    config_path: Path
    config: Config
    results: Results
    out: Path


@pytest.fixture(scope="session")
def small_config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "small.toml"
    path.write_text(SMALL_TOML, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_report(small_config_path, tmp_path_factory) -> SmallReport:
    config = load_config(small_config_path)
    results = run_config(config, quiet=True, command=["pytest"])
    out = tmp_path_factory.mktemp("report") / "out"
    render(results, out, quiet=True)
    return SmallReport(config_path=small_config_path, config=config, results=results, out=out)
