"""Bad option values: non-finite numbers, non-bool flags, non-int integers, overflowing weights.

Every case must raise a clear error naming the option, and leave the model as it was.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import pytest
import torch
from torch import nn

from isokit.init import (
    apply,
    delta_orthogonal_,
    dirac_,
    eye_,
    fans,
    get_scheme,
    idi_,
    idiz_,
    kaiming_normal_,
    kaiming_uniform_,
    loosening_representable,
    orthogonal_,
    schemes,
    xavier_normal_,
    xavier_uniform_,
    zero_,
)
from isokit.models import MLP, ResNet

NON_FINITE = [math.nan, math.inf, -math.inf]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _options_with_default(kind) -> list[tuple[str, str]]:
    return [
        (s.name, option)
        for s in schemes()
        for option, default in s.defaults.items()
        if kind(default)
    ]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


NUMERIC = _options_with_default(_is_number)
FLAGS = _options_with_default(lambda v: isinstance(v, bool))


def test_the_option_lists_cover_what_the_issue_names():
    names = {option for _, option in NUMERIC}
    assert {"gain", "scale", "alpha", "last_norm_gamma", "eps", "tau", "loose_std"} <= names
    assert {"target", "tol", "max_iter", "a"} <= names
    assert {option for _, option in FLAGS} == {"remove_norms", "allow_contracting"}


def _apply(model, scheme, **options):
    data = torch.randn(8, 3, 8, 8) if get_scheme(scheme).needs_data else None
    return apply(model, scheme, seed=0, data=data, **options)


# ------------------------------------------------------------------------------ non-finite


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(("scheme", "option"), NUMERIC)
def test_every_numeric_scheme_option_refuses_non_finite_values(scheme, option, value):
    model = ResNet(depth=8, width=4)
    before = _state(model)
    with pytest.raises(ValueError, match=rf"{scheme}: {option} must be finite, got"):
        _apply(model, scheme, **{option: value})
    assert _unchanged(model, before)


@pytest.mark.parametrize("value", [np.float64("nan"), np.float32("inf"), torch.inf])
def test_non_finite_numpy_and_torch_floats_are_refused_too(value):
    with pytest.raises(ValueError, match="gain must be finite"):
        apply(MLP(4, 4, 1), "xavier-normal", gain=value)


def test_non_finite_value_in_a_per_layer_map_is_refused():
    with pytest.raises(ValueError, match=r"idinit: tau\['layer1\.\*'\] must be finite"):
        apply(ResNet(depth=8, width=4), "idinit", tau={"layer1.*": math.nan})


@pytest.mark.parametrize(
    ("fill", "shape", "option"),
    [
        (xavier_uniform_, (4, 4), "gain"),
        (xavier_normal_, (4, 4), "gain"),
        (kaiming_normal_, (4, 4), "a"),
        (kaiming_uniform_, (4, 4), "a"),
        (orthogonal_, (4, 4), "gain"),
        (delta_orthogonal_, (4, 4, 3, 3), "gain"),
        (eye_, (4, 4), "scale"),
        (dirac_, (4, 4, 3, 3), "scale"),
        (idi_, (4, 4), "tau"),
        (idi_, (4, 4), "loose_std"),
        (idiz_, (4, 4), "eps"),
    ],
)
@pytest.mark.parametrize("value", NON_FINITE)
def test_every_numeric_tensor_argument_refuses_non_finite_values(fill, shape, option, value):
    w = torch.zeros(shape)
    with pytest.raises(ValueError, match=rf"{fill.__name__}: {option} must be finite"):
        fill(w, **{option: value})
    assert torch.equal(w, torch.zeros(shape))


@pytest.mark.parametrize("option", ["tau", "loose_std"])
def test_loosening_representable_refuses_non_finite_values(option):
    with pytest.raises(ValueError, match=f"{option} must be finite"):
        loosening_representable(torch.float32, **{option: math.inf})


@pytest.mark.parametrize(
    ("scheme", "options", "match"),
    [
        ("orthogonal", {"gain": 1e300}, "wrote NaN or inf into fcs.0.weight"),
        ("delta-orthogonal", {"gain": 1e300}, "wrote NaN or inf"),
        ("xavier-normal", {"gain": 1e300}, "wrote NaN or inf"),
        ("kaiming-normal", {"nonlinearity": "leaky_relu", "a": 1e-300}, None),
        ("xavier-uniform", {"gain": 1e300}, "bound=.* does not fit in torch.float32"),
        ("idinit", {"tau": 1e39}, "wrote NaN or inf"),
        ("identity", {"scale": 1e39}, "wrote NaN or inf"),
    ],
)
def test_no_scheme_leaves_a_non_finite_weight(scheme, options, match):
    model = MLP(8, 8, 2)
    before = _state(model)
    if match is None:  # a finite result: accepted
        apply(model, scheme, seed=0, **options)
        assert all(torch.isfinite(p).all() for p in model.parameters())
        return
    with pytest.raises(ValueError, match=match):
        apply(model, scheme, seed=0, **options)
    assert _unchanged(model, before)


@pytest.mark.parametrize(
    ("scheme", "options", "match"),
    [
        ("skipinit", {"alpha": 1e39}, "skipinit: alpha=1e\\+39 does not fit in torch.float32"),
        ("rezero", {"alpha": -1e39}, "rezero: alpha=-1e\\+39 does not fit"),
        ("idinit", {"last_norm_gamma": 1e39}, "idinit: last_norm_gamma=1e\\+39 does not fit"),
    ],
)
def test_scalar_options_that_overflow_the_dtype_are_user_errors(scheme, options, match):
    for gate in (None, "scalar"):
        model = ResNet(depth=8, width=4, norm="batch", gate=gate)
        before = _state(model)
        with pytest.raises(ValueError, match=match):
            apply(model, scheme, seed=0, **options)
        assert _unchanged(model, before)


def test_non_finite_values_the_scheme_keeps_are_not_its_fault():
    model = MLP(8, 8, 2, out_features=3)
    model.head.weight.data[0, 0] = math.nan  # head="keep" leaves the head alone
    head = model.head.weight.detach().clone()
    apply(model, "idinit", seed=0, head="keep", loose=None)
    assert torch.equal(model.head.weight.isnan(), head.isnan())
    assert torch.equal(model.fcs[0].weight, torch.eye(8))


def test_a_float64_model_holds_what_float32_cannot():
    model = MLP(8, 8, 2).double()
    apply(model, "identity", scale=1e39)
    assert model.fcs[0].weight[0, 0].item() == 1e39


# ------------------------------------------------------------------------------ booleans


@pytest.mark.parametrize("value", ["False", "True", 0, 1, None, np.bool_(True)])
@pytest.mark.parametrize(("scheme", "option"), FLAGS)
def test_every_flag_option_refuses_non_bools(scheme, option, value):
    model = ResNet(depth=8, width=4, norm="batch")
    before = _state(model)
    with pytest.raises(TypeError, match=rf"{scheme}: {option} must be True or False, got"):
        apply(model, scheme, seed=0, **{option: value})
    assert _unchanged(model, before)


def test_remove_norms_false_keeps_the_norms():
    model = apply(ResNet(depth=8, width=4, norm="batch"), "rezero", remove_norms=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(
    "call",
    [
        lambda: delta_orthogonal_(torch.empty(4, 4, 3, 3), allow_contracting=1),
        lambda: fans(torch.empty(4, 4, 3, 3), transposed="no"),
        lambda: apply(MLP(4, 4, 1), "orthogonal", return_report=1),
        lambda: apply(MLP(4, 4, 1), "orthogonal", verbose="yes"),
    ],
)
def test_tensor_and_apply_flags_refuse_non_bools(call):
    with pytest.raises(TypeError, match="must be True or False"):
        call()


# ------------------------------------------------------------------------------ integers


@pytest.mark.parametrize(
    ("seed", "error", "match"),
    [
        (1.5, TypeError, "seed must be an int, got 1.5"),
        (0.0, TypeError, "seed must be an int"),
        ("0", TypeError, "seed must be an int, got '0'"),
        (True, TypeError, "seed must be an int, got True"),
        (2**64, ValueError, "seed must fit in 64 bits"),
    ],
)
def test_seed_must_be_an_int(seed, error, match):
    model = MLP(4, 4, 1)
    before = _state(model)
    with pytest.raises(error, match=match):
        apply(model, "kaiming-normal", seed=seed)
    assert _unchanged(model, before)


def test_numpy_integer_seed_is_the_same_seed():
    a = apply(MLP(4, 4, 1), "kaiming-normal", seed=np.int64(3))
    b = apply(MLP(4, 4, 1), "kaiming-normal", seed=3)
    assert torch.equal(a.fcs[0].weight, b.fcs[0].weight)


def test_generator_must_be_a_generator():
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        apply(MLP(4, 4, 1), "kaiming-normal", generator=0)


@pytest.mark.parametrize(
    ("value", "error"), [(1.5, TypeError), (True, TypeError), ("3", TypeError), (-1, ValueError)]
)
def test_max_iter_must_be_a_non_negative_int(value, error):
    with pytest.raises(error, match="lsuv: max_iter must be an int"):
        apply(MLP(4, 4, 1), "lsuv", data=torch.randn(8, 4), max_iter=value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: dirac_(torch.empty(4, 4, 3, 3), groups=2.0),
        lambda: zero_(torch.empty(4, 2, 3, 3), groups=True),
        lambda: idi_(torch.empty(4, 4, 3, 3), groups="2"),
    ],
)
def test_groups_must_be_an_int(call):
    with pytest.raises(TypeError, match="groups must be a positive int"):
        call()


# ------------------------------------------------------------------------------ other types


@pytest.mark.parametrize(
    ("scheme", "options", "match"),
    [
        ("xavier-normal", {"gain": "2"}, "xavier-normal: gain must be a real number, got '2'"),
        ("kaiming-normal", {"a": True}, "kaiming-normal: a must be a real number, got True"),
        ("skipinit", {"alpha": None}, "skipinit: alpha must be a real number"),
        ("identity", {"scale": [1.0]}, "identity: scale must be a real number"),
        ("idinit", {"tau": {"fc": "1"}}, r"idinit: tau\['fc'\] must be a real number"),
        ("idinit", {"tau": "1"}, "idinit: tau must be a number or a {glob: number} map"),
        ("idinit", {"head_name": 3}, "idinit: head_name must be a module name"),
        ("lsuv", {"target": "1"}, "lsuv: target must be a real number"),
        ("orthogonal", {"gain": "xavier"}, "gain must be a real number or 'relu'"),
    ],
)
def test_numbers_of_the_wrong_type_are_type_errors(scheme, options, match):
    with pytest.raises(TypeError, match=match):
        _apply(ResNet(depth=8, width=4), scheme, **options)


@pytest.mark.parametrize(
    ("scheme", "options", "match"),
    [
        ("lsuv", {"tol": 0.0}, "lsuv: tol must be > 0"),
        ("lsuv", {"target": -1.0}, "lsuv: target must be > 0"),
        ("idinit", {"loose_std": -1e-6}, "idinit: loose_std must be >= 0"),
        ("idinit", {"contract": "pad"}, "idinit: contract='pad' is not supported"),
        ("idinit", {"loose": False}, "idinit: loose=False is not supported.*None, 'tau'"),
        ("kaiming-normal", {"mode": "fan_avg"}, "kaiming-normal: mode='fan_avg'"),
        ("xavier-uniform", {"bias": "drop"}, "xavier-uniform: bias='drop'.*'zero', 'keep'"),
        ("delta-orthogonal", {"bias": "drop"}, "delta-orthogonal: bias='drop'"),
    ],
)
def test_bad_values_name_the_scheme_the_option_and_the_choices(scheme, options, match):
    model = ResNet(depth=8, width=4)
    before = _state(model)
    with pytest.raises(ValueError, match=match):
        _apply(model, scheme, **options)
    assert _unchanged(model, before)
