"""ProbeOptions: strict validation of every field, the mapping form and keyword overrides."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isokit.probe import ProbeOptionError, ProbeOptions


def test_defaults_and_names():
    opts = ProbeOptions()
    assert opts.method == "auto" and opts.dtype is torch.float64 and opts.n_probes == 16
    assert ProbeOptions.names() == (
        "taps",
        "method",
        "dtype",
        "chunk_size",
        "example_chunk",
        "max_memory",
        "max_seconds",
        "start",
        "n_probes",
        "lanczos_steps",
        "slq_taps",
        "seed",
        "band",
        "svd",
        "progress",
    )
    with pytest.raises(AttributeError):
        opts.method = "exact"  # frozen


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("method", "exakt", "did you mean 'exact'"),
        ("method", None, "must be one of"),
        ("max_seconds", 0, "finite number > 0"),
        ("max_seconds", math.inf, "finite number > 0"),
        ("start", "", "non-empty"),
        ("start", "layer*", "glob"),
        ("dtype", torch.float16, "too coarse"),
        ("dtype", torch.bfloat16, "too coarse"),
        ("dtype", "float16", "too coarse"),
        ("dtype", torch.int64, "float64 or float32"),
        ("dtype", "double", "float64 or float32"),
        ("chunk_size", 0, "positive integer"),
        ("chunk_size", -3, "positive integer"),
        ("chunk_size", True, "positive integer"),
        ("chunk_size", 4.0, "positive integer"),
        ("example_chunk", 0, "positive integer"),
        ("example_chunk", -1, "positive integer"),
        ("max_memory", 0, "positive integer"),
        ("max_memory", -(2**30), "positive integer"),
        ("max_memory", 2e9, "positive integer"),
        ("max_memory", "2GiB", "positive integer"),
        ("n_probes", 3, ">= 4"),
        ("n_probes", 8.0, ">= 4"),
        ("n_probes", True, ">= 4"),
        ("lanczos_steps", 0, "positive integer"),
        ("seed", -1, "non-negative integer"),
        ("seed", 1.5, "non-negative integer"),
        ("seed", "0", "non-negative integer"),
        ("seed", True, "non-negative integer"),
        ("band", 0.0, "finite number > 0"),
        ("band", -0.1, "finite number > 0"),
        ("band", math.nan, "finite number > 0"),
        ("band", math.inf, "finite number > 0"),
        ("band", True, "finite number > 0"),
        ("band", "0.1", "finite number > 0"),
        ("svd", "no", "True or False"),
        ("svd", 1, "True or False"),
        ("progress", "False", "True or False"),
        ("taps", [], "empty"),
        ("slq_taps", ["blocks.*"], "glob"),
        ("start", "layer[12]", "glob"),
        ("taps", ["blocks.0", 3], "non-empty strings"),
        ("taps", "", "non-empty strings"),
        ("taps", 3, "predicate"),
        ("taps", torch.nn.Linear(2, 2), "pass its name"),
        ("slq_taps", [0], "1-based depth"),
        ("slq_taps", [True], "non-empty strings"),
        ("slq_taps", 3, "must be None"),
    ],
)
def test_bad_values_are_refused_naming_the_option(field, value, match):
    with pytest.raises(ProbeOptionError, match=match) as info:
        ProbeOptions(**{field: value})
    assert info.value.option == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)


def test_good_values_are_normalized():
    opts = ProbeOptions(
        taps=["a", "b"],
        dtype="float32",
        chunk_size=np.int64(8),
        max_memory=2**40,
        slq_taps=["a", np.int32(2)],
        seed=0,
        band=1,
        svd=np.bool_(True),
    )
    assert opts.taps == ("a", "b") and opts.dtype is torch.float32
    assert opts.chunk_size == 8 and type(opts.chunk_size) is int
    assert opts.slq_taps == ("a", 2) and type(opts.slq_taps[1]) is int
    assert opts.band == 1.0 and isinstance(opts.band, float)
    assert opts.svd is True

    def pred(name, module):
        return True

    assert ProbeOptions(taps=pred).taps is pred
    for spec in ("all", "none", None, "a"):
        assert ProbeOptions(slq_taps=spec).slq_taps == spec


def test_from_mapping_round_trip_and_unknown_keys():
    data = {"method": "lanczos", "dtype": "float32", "taps": ["x", "y"], "slq_taps": [1, "y"]}
    opts = ProbeOptions.from_mapping(data)
    assert opts.dtype is torch.float32 and opts.taps == ("x", "y")
    assert ProbeOptions.from_mapping(opts.to_dict()) == opts
    assert opts.to_dict()["dtype"] == "float32" and opts.to_dict()["taps"] == ["x", "y"]
    base = ProbeOptions(seed=3)
    assert ProbeOptions.from_mapping({"n_probes": 8}, base=base).seed == 3
    with pytest.raises(ProbeOptionError, match=r"did you mean 'n_probes'.*allowed: taps") as info:
        ProbeOptions.from_mapping({"n_probe": 8})
    assert info.value.option == "n_probe"
    with pytest.raises(ProbeOptionError, match="mapping"):
        ProbeOptions.from_mapping([("method", "exact")])
    with pytest.raises(ProbeOptionError, match="svd"):
        ProbeOptions.from_mapping({"svd": "no"})


def test_replace_validates_and_refuses_unknown_names():
    opts = ProbeOptions()
    assert opts.replace(method="exact").method == "exact" and opts.method == "auto"
    with pytest.raises(ProbeOptionError, match="chunk_size"):
        opts.replace(chunk_size=0)
    with pytest.raises(ProbeOptionError, match="did you mean 'max_memory'"):
        opts.replace(max_memroy=1)


def test_predicate_taps_have_no_json_form():
    with pytest.raises(ProbeOptionError, match="no JSON form"):
        ProbeOptions(taps=lambda name, module: True).to_dict()


def test_every_field_carries_its_checker():
    from dataclasses import fields

    for f in fields(ProbeOptions):
        assert callable(f.metadata["check"]), f.name
        assert f.metadata["check"](f.name, f.default) == f.default  # defaults pass their check


def test_positive_int_optional_accepts_none_only_when_asked():
    from isokit.probe.checks import positive_int

    assert positive_int("max_memory", None, optional=True) is None
    assert positive_int("max_memory", 8, optional=True) == 8
    with pytest.raises(ProbeOptionError, match=r"max_memory: must be a positive integer, got None"):
        positive_int("max_memory", None)
    with pytest.raises(ProbeOptionError, match=r"positive integer or None \(automatic\), got 0"):
        positive_int("max_memory", 0, optional=True)
