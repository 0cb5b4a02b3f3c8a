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
    assert {option for _, option in FLAGS} == {"remove_norms", "allow_contracting", "share_alpha"}


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
        ("orthogonal", {"gain": 1e300}, "orthogonal_: gain=1e\\+300 does not fit in torch.float32"),
        ("delta-orthogonal", {"gain": 1e300}, "gain=1e\\+300 does not fit"),
        ("xavier-normal", {"gain": 1e300}, "xavier_normal_: gain=1e\\+300 makes draws of up to"),
        ("xavier-normal", {"gain": 3e38}, "gain=3e\\+38 makes draws of up to .* torch.float32"),
        ("kaiming-normal", {"nonlinearity": "leaky_relu", "a": 1e-300}, None),
        ("kaiming-normal", {"nonlinearity": "leaky_relu", "a": 1e300}, "a=1e\\+300 is too large"),
        ("kaiming-uniform", {"nonlinearity": "leaky_relu", "a": -1e300}, "a=-1e\\+300 is too"),
        ("xavier-uniform", {"gain": 1e300}, "xavier_uniform_: gain=1e\\+300 makes draws of up to"),
        ("xavier-uniform", {"gain": 3e38}, "gain=3e\\+38 makes draws of up to"),
        ("xavier-normal", {"gain": -1.0}, "xavier-normal: gain must be >= 0, got -1"),
        ("xavier-uniform", {"gain": -1.0}, "xavier-uniform: gain must be >= 0, got -1"),
        ("idinit", {"tau": 1e39}, "idi_: tau=1e\\+39 does not fit in torch.float32"),
        ("idinit", {"loose": "all", "loose_std": 1e39}, "loose_std=1e\\+39 makes entries"),
        ("identity", {"scale": 1e39}, "eye_: scale=1e\\+39 does not fit in torch.float32"),
    ],
)
def test_no_scheme_leaves_a_non_finite_weight(scheme, options, match):
    # Before, some of these wrote inf (caught afterwards), some raised torch's own RuntimeError
    # ("normal expects std >= 0.0", "to - from exceeds the limit") or an OverflowError.
    model = MLP(8, 8, 2)
    before = _state(model)
    if match is None:  # a finite result: accepted
        apply(model, scheme, seed=0, **options)
        assert all(torch.isfinite(p).all() for p in model.parameters())
        return
    with pytest.raises(ValueError, match=match):
        apply(model, scheme, seed=0, **options)
    assert _unchanged(model, before)


def test_a_scheme_that_writes_inf_is_still_caught_and_rolled_back():
    from isokit.init.registry import _REGISTRY, register

    @register("inf-demo", description="writes inf", reference="none")
    def inf_demo(ctx) -> None:
        for slot in ctx.slots:
            slot.tensor.fill_(math.inf)

    try:
        model = MLP(8, 8, 2)
        before = _state(model)
        with pytest.raises(ValueError, match="wrote NaN or inf into fcs.0.weight"):
            apply(model, "inf-demo", seed=0)
        assert _unchanged(model, before)
    finally:
        _REGISTRY.pop("inf-demo")


@pytest.mark.parametrize(
    ("fill", "shape", "options"),
    [
        (orthogonal_, (4, 4), {"gain": 1e39}),
        (orthogonal_, (4, 4, 3, 3), {"gain": -1e39}),
        (delta_orthogonal_, (4, 4, 3, 3), {"gain": 1e39}),
        (eye_, (4, 4), {"scale": 1e39}),
        (dirac_, (4, 4, 3, 3), {"scale": -1e39}),
        (idi_, (4, 4), {"tau": 1e39}),
        (idi_, (4, 4, 3, 3), {"tau": 1e300}),
        (idi_, (4, 4), {"loose": "all", "loose_std": 1e39}),
        (idiz_, (4, 4), {"eps": 1e39}),
        (xavier_normal_, (4, 4), {"gain": 1e39}),
        (xavier_normal_, (4, 4), {"gain": 1e39, "variant": "tf_truncated"}),
        (xavier_uniform_, (4, 4, 3, 3), {"gain": 1e39}),
    ],
)
def test_no_tensor_initializer_writes_inf_from_a_finite_option(fill, shape, options):
    # Before, each of these silently filled the tensor with inf (or raised torch's RuntimeError).
    w = torch.zeros(shape)
    with pytest.raises(ValueError, match=f"{fill.__name__}: .*(does not fit|more than) "):
        fill(w, **options)
    assert torch.equal(w, torch.zeros(shape))


def test_a_wider_dtype_holds_what_the_float32_check_refuses():
    w = torch.zeros(4, 4, dtype=torch.float64)
    orthogonal_(w, gain=1e39, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(w).all() and w.abs().max() > 1e38


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


# ------------------------------------------------------------------------------ model-free checks


@pytest.mark.parametrize(
    ("scheme", "options", "error", "match"),
    [
        ("fixup", {"remove_norms": "False"}, TypeError, "fixup: remove_norms must be True or"),
        ("delta-orthogonal", {"allow_contracting": 0}, TypeError, "allow_contracting must be"),
        ("lsuv", {"max_iter": 1.5}, TypeError, "lsuv: max_iter must be an int, got 1.5"),
        ("skipinit", {"alpha": "0"}, TypeError, "skipinit: alpha must be a real number"),
        ("xavier-normal", {"gain": "2"}, TypeError, "xavier-normal: gain must be a real number"),
        ("idinit", {"tau": {"fc": "1"}}, TypeError, r"idinit: tau\['fc'\] must be a real"),
        ("idinit", {"tau": math.nan}, ValueError, "idinit: tau must be finite"),
    ],
)
def test_option_types_are_checked_without_a_model(scheme, options, error, match):
    # A report config checks its scheme options with check_options before building anything;
    # before, only non-finite numbers were refused there and the rest waited for the model.
    with pytest.raises(error, match=match):
        get_scheme(scheme).check_options(options)


@pytest.mark.parametrize(
    ("scheme", "options", "option", "reason"),
    [
        ("fixup", {"remove_norms": "False"}, "remove_norms", "must be True or False, got 'False'"),
        ("kaiming-normal", {"mode": "fan_avg"}, "mode", "'fan_avg' is not supported; use one of"),
        ("orthogonal", {"gain": math.inf}, "gain", "must be finite, got inf; pass a finite number"),
        ("idinit", {"head_name": "nope"}, "head_name", "'nope' is not a weight layer"),
        ("lsuv", {"tol": -1.0}, "tol", "must be > 0, got -1"),
        ("orthogonal", {"gain": "xavier"}, "gain", "must be a real number or 'relu', got"),
    ],
)
def test_option_errors_say_which_option_and_why(scheme, options, option, reason):
    # A report names the option at its own key (schemes[0].options.mode) from these attributes.
    with pytest.raises((TypeError, ValueError)) as info:
        _apply(ResNet(depth=8, width=4, norm="batch"), scheme, **options)
    assert info.value.option == option
    assert info.value.reason.startswith(reason)
    assert str(info.value).startswith(f"{scheme}: {option}")


def test_option_errors_pickle_with_their_attributes():
    import pickle

    with pytest.raises(ValueError) as info:
        apply(MLP(4, 4, 1), "orthogonal", gain=math.nan)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), str(copy), copy.option, copy.reason) == (
        type(info.value),
        str(info.value),
        "gain",
        info.value.reason,
    )


@pytest.mark.parametrize(
    ("scheme", "options", "option"),
    [
        ("kaiming-normal", {"mode": "fan_avg"}, "mode"),
        ("xavier-uniform", {"bias": "drop"}, "bias"),
        ("xavier-normal", {"gain": -1.0}, "gain"),
        ("orthogonal", {"gain": "xavier"}, "gain"),
        ("delta-orthogonal", {"bias": "drop"}, "bias"),
        ("identity", {"bias": "keepp"}, "bias"),
        ("idinit", {"contract": "pad"}, "contract"),
        ("idinit", {"loose_std": -1.0}, "loose_std"),
        ("lsuv", {"criterion": "mad"}, "criterion"),
        ("lsuv", {"tol": 0.0}, "tol"),
    ],
)
def test_choices_and_bounds_are_checked_without_a_model(scheme, options, option):
    # Before, these passed check_options (a report config) and failed only once the scheme ran
    # on a model, after every earlier run of the report had been probed.
    with pytest.raises((TypeError, ValueError)) as info:
        get_scheme(scheme).check_options(options)
    assert info.value.option == option


def test_xavier_weight_law_refuses_a_negative_gain_like_the_initializer():
    with pytest.raises(ValueError, match="gain must be >= 0"):
        get_scheme("xavier-normal").weight_law({"gain": -1.0}, fan_in=8, bias=True)
