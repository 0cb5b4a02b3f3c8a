"""The shared validation helpers of isokit.init: (name, value, ...), strict types, messages."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from isokit.init.checks import (
    check_bool,
    check_choice,
    check_dtype,
    check_finite_options,
    check_fits,
    check_groups,
    check_int,
    check_layer_name,
    check_per_layer,
    check_real,
    check_weight,
)


def test_check_real_returns_a_float_and_names_the_argument_and_value():
    assert check_real("gain", 2) == 2.0 and isinstance(check_real("gain", 2), float)
    assert check_real("gain", np.float32(0.5)) == 0.5
    assert check_real("gain", Fraction(1, 4)) == 0.25
    with pytest.raises(TypeError, match=r"^f: gain must be a real number, got True \(bool\)$"):
        check_real("gain", True, where="f")
    with pytest.raises(TypeError, match=r"got '1' \(str\)"):
        check_real("gain", "1")
    with pytest.raises(TypeError, match="got tensor"):
        check_real("gain", torch.tensor(1.0))
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=f"gain must be finite, got {bad}; pass a finite"):
            check_real("gain", bad)


def test_check_real_bounds():
    assert check_real("tol", 1e-9, positive=True) == 1e-9
    with pytest.raises(ValueError, match="tol must be > 0, got 0"):
        check_real("tol", 0.0, positive=True)
    assert check_real("std", 0.0, minimum=0.0) == 0.0
    with pytest.raises(ValueError, match="std must be >= 0, got -1"):
        check_real("std", -1, minimum=0.0)


def test_check_int_refuses_bools_floats_and_strings():
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    for bad in (True, 1.0, 1.5, "1", None):
        with pytest.raises(TypeError, match="n must be an int"):
            check_int("n", bad)
    with pytest.raises(TypeError, match="n must be a positive int, got 2.0"):
        check_int("n", 2.0, minimum=1)
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        check_int("n", 0, minimum=1)
    with pytest.raises(ValueError, match="max_iter must be an int >= 0, got -1"):
        check_int("max_iter", -1, minimum=0)


def test_check_bool_refuses_everything_but_true_and_false():
    assert check_bool("flag", True) is True and check_bool("flag", False) is False
    for bad in ("False", "no", 0, 1, None, np.bool_(False)):
        with pytest.raises(TypeError, match="flag must be True or False, got"):
            check_bool("flag", bad)


def test_check_choice_compares_types_too():
    check_choice("mode", "fan_in", ("fan_in", "fan_out"))
    check_choice("loose", None, ("tau",), allow_none=True)
    with pytest.raises(ValueError, match=r"^f: loose=None is not supported; use one of 'tau'$"):
        check_choice("loose", None, ("tau",), where="f")
    with pytest.raises(ValueError, match="loose=True is not supported; use one of None, 'tau'"):
        check_choice("loose", True, ("tau",), allow_none=True)
    with pytest.raises(ValueError, match="order=1"):
        check_choice("order", 1, (True, "tap"))  # 1 == True, but 1 is not a bool


def test_check_per_layer_and_finite_options():
    check_per_layer("tau", 0.5)
    check_per_layer("tau", {"a.*": 1, "b": 2.0})
    with pytest.raises(TypeError, match="tau map keys must be module-name globs"):
        check_per_layer("tau", {1: 1.0})
    with pytest.raises(ValueError, match=r"tau\['a'\] must be finite"):
        check_per_layer("tau", {"a": math.inf})
    check_finite_options({"gain": 1.0, "mode": "x", "flag": True, "map": {"a": 1}})
    with pytest.raises(ValueError, match=r"^s: map\['a'\] must be finite"):
        check_finite_options({"map": {"a": -math.inf}}, where="s")


def test_tensor_checks():
    w = torch.empty(6, 2, 3, 3)
    assert check_weight("w", w, where="f") is w
    with pytest.raises(TypeError, match=r"f: w must be a torch.Tensor, got list"):
        check_weight("w", [[1.0]], where="f")
    with pytest.raises(TypeError, match=r"bias must be a real floating-point .* bias\.float\(\)"):
        check_weight("bias", torch.zeros(3, dtype=torch.int64), where="f", min_dim=1)
    check_weight("w", torch.zeros(3, 3, dtype=torch.int64), where="f", floating=False)
    with pytest.raises(ValueError, match=r"f: w must be a 2-D to 5-D weight, got shape \(2,\)"):
        check_weight("w", torch.empty(2), where="f", max_dim=5)
    with pytest.raises(ValueError, match="w is an empty tensor of shape"):
        check_weight("w", torch.empty(0, 3), where="f")
    assert check_groups("groups", 2, w, where="f") == 2
    with pytest.raises(ValueError, match="C_out=6 is not divisible by groups=4"):
        check_groups("groups", 4, w, where="f")
    with pytest.raises(ValueError, match="groups=2 only applies to conv weights"):
        check_groups("groups", 2, torch.empty(4, 4), where="f")
    with pytest.raises(TypeError, match="groups must be a positive int"):
        check_groups("groups", 2.0, w, where="f")


def test_dtype_fit_and_layer_name_checks():
    assert check_dtype("dtype", torch.float16) is torch.float16
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        check_dtype("dtype", "float32")
    check_fits("alpha", 3e38, torch.float32)
    check_fits("alpha", 1e39, torch.float64)
    with pytest.raises(ValueError, match="alpha=70000 does not fit in torch.float16"):
        check_fits("alpha", 7e4, torch.float16)
    check_layer_name("head_name", "fc", ["fc", "conv"])
    check_layer_name("head_name", None, ["fc"], optional=True)
    with pytest.raises(ValueError, match="did you mean fc"):
        check_layer_name("head_name", "fcc", ["fc", "conv"])
    with pytest.raises(TypeError, match="head_name must be a module name"):
        check_layer_name("head_name", None, ["fc"])


def test_no_module_of_the_layer_keeps_its_own_validators():
    # The old per-module helpers, with their own argument orders and wordings, are gone.
    import pathlib

    import isokit.init

    root = pathlib.Path(isokit.init.__file__).parent
    old = ("def _check_choice", "def _check_real", "def _check_groups", "def _check_float")
    old += ("def _check_size", "def check_choice(option")
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not [name for name in old if name in text], path.name
