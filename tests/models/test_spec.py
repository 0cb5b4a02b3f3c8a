"""Model kinds: each spec types its constructor's arguments, and what it says matches the model."""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from isokit.models import (
    ConvNet,
    FixedInput,
    FlatInput,
    ModelArgError,
    ModelKind,
    ModelSize,
    Rule,
    get_model_kind,
    model_flags,
    model_kinds,
)
from isokit.models.args import SIZE_MAX, Arg
from isokit.theory.law import Chain

KINDS = list(model_kinds())


def small(name: str) -> dict:
    """The kind's own smallest valid arguments."""
    return dict(get_model_kind(name).example)


def test_unknown_kind_names_close_matches():
    with pytest.raises(ModelArgError, match="did you mean 'mlp'") as info:
        get_model_kind("mpl")
    assert info.value.arg == "kind"
    with pytest.raises(ModelArgError, match="unknown model kind"):
        get_model_kind(3)


@pytest.mark.parametrize("name", KINDS)
def test_spec_covers_every_constructor_argument_and_its_default(name):
    kind = get_model_kind(name)
    params = inspect.signature(kind.factory).parameters
    assert [a.name for a in kind.args] == list(params)
    for arg in kind.args:
        default = params[arg.name].default
        if arg.name == "in_features" and name == "residual-mlp":
            assert arg.default is None  # configs may leave it out: the blocks act on the input
        elif default is inspect.Parameter.empty:
            assert arg.required
        else:
            assert arg.default == default


@pytest.mark.parametrize("name", KINDS)
def test_build_label_shape_and_taps_agree_with_the_model(name):
    kind = get_model_kind(name)
    args = kind.resolve(kind.example)
    model = kind.build(**kind.example)
    assert isinstance(model, kind.factory)
    shape = kind.input_shape(args, image_size=8)
    kind.check_input_shape(args, shape)
    model(torch.randn(2, *shape))  # the natural shape is one the model takes
    assert kind.label(args).startswith(name)
    if kind.tap_prefix is not None:
        depth_taps = model.taps[: args["depth"]]
        assert depth_taps == [f"{kind.tap_prefix}{i}" for i in range(args["depth"])]


def test_mlp_and_convnet_chains_describe_the_model():
    mlp = get_model_kind("mlp").chain({"in_features": 6, "width": 5, "depth": 3, "bias": False})
    assert mlp == Chain(
        layer="dense",
        activation="relu",
        width=5,
        in_width=6,
        depth=3,
        fan_in=5,
        bias=False,
        taps=("acts.0", "acts.1", "acts.2"),
    )
    conv = get_model_kind("convnet").chain(
        {"in_channels": 4, "channels": 4, "depth": 2, "kernel_size": 5, "activation": "linear"}
    )
    assert (conv.layer, conv.fan_in, conv.in_width, conv.activation) == ("conv", 100, 4, "linear")
    assert conv.taps == tuple(ConvNet(4, 4, 2).taps[:2])
    for name in ("resnet", "transformer"):
        assert get_model_kind(name).chain(small(name)) is None
    res = get_model_kind("residual-mlp").chain({"width": 5, "depth": 3})
    assert (res.residual_scale, res.branch_layers, res.taps) == (
        1.0,
        2,
        ("blocks.0", "blocks.1", "blocks.2"),
    )


@pytest.mark.parametrize(
    ("name", "arg", "value"),
    [
        ("mlp", "bias", "False"),
        ("mlp", "bias", 0),
        ("mlp", "depth", 1e3),
        ("mlp", "depth", True),
        ("mlp", "depth", "4"),
        ("mlp", "width", 0),
        ("mlp", "activation", "tanhh"),
        ("mlp", "activation", 1),
        ("convnet", "kernel_size", 3.0),
        ("resnet", "gate", "Scalar"),
        ("resnet", "gate", False),
        ("resnet", "norm", None),
        ("residual-mlp", "scale", float("nan")),
        ("residual-mlp", "scale", float("inf")),
        ("residual-mlp", "scale", "0.5"),
        ("residual-mlp", "branch_layers", 1.0),
        ("residual-mlp", "branch_layers", True),
        ("residual-mlp", "branch_layers", 3),
        ("transformer", "seq_len", -1),
    ],
)
def test_types_are_strict_and_errors_name_the_argument(name, arg, value):
    kind = get_model_kind(name)
    with pytest.raises(ModelArgError) as info:
        kind.resolve({**small(name), arg: value})
    assert info.value.arg == arg
    assert str(info.value).startswith(f"{arg}: must be ")
    with pytest.raises(ValueError, match=arg):  # the constructor applies the same spec
        kind.factory(**{**kind.resolve(small(name)), arg: value})


def test_none_words_and_numbers_normalize():
    resnet = get_model_kind("resnet")
    assert resnet.resolve({"gate": "none"})["gate"] is None
    assert resnet.resolve({"gate": None})["gate"] is None
    assert resnet.to_config({"gate": None, "depth": 20}) == {"gate": "none", "depth": 20}
    scale = get_model_kind("residual-mlp").resolve({**small("residual-mlp"), "scale": 2})
    assert scale["scale"] == 2.0 and isinstance(scale["scale"], float)
    mlp = get_model_kind("mlp")
    assert mlp.to_config({"out_features": None, "width": 3}) == {"width": 3}


def test_unknown_and_missing_arguments():
    mlp = get_model_kind("mlp")
    with pytest.raises(ModelArgError, match="did you mean 'width'") as info:
        mlp.resolve({**small("mlp"), "widht": 3})
    assert info.value.arg == "widht"
    with pytest.raises(ModelArgError, match="missing; a mlp needs a positive integer") as info:
        mlp.resolve({"width": 3, "depth": 2})
    assert info.value.arg == "in_features"


@pytest.mark.parametrize(
    ("name", "args", "arg", "related", "fragment"),
    [
        ("resnet", {"depth": 21}, "depth", (), r"6n\+2"),
        ("resnet", {"depth": 2}, "depth", (), r"6n\+2"),
        ("transformer", {"d_model": 10, "heads": 3}, "heads", ("d_model",), "divisible"),
        ("convnet", {"kernel_size": 4}, "kernel_size", (), "odd"),
    ],
)
def test_cross_argument_rules_name_the_argument_and_its_relatives(
    name, args, arg, related, fragment
):
    with pytest.raises(ModelArgError, match=fragment) as info:
        get_model_kind(name).resolve({**small(name), **args})
    assert info.value.arg == arg and info.value.related == related


def test_sizes_are_bounded_by_the_spec():
    with pytest.raises(ModelArgError, match="at most") as info:
        get_model_kind("mlp").resolve({**small("mlp"), "depth": 10**12})
    assert info.value.arg == "depth"
    assert get_model_kind("mlp").resolve({**small("mlp"), "depth": SIZE_MAX})["depth"] == SIZE_MAX


@pytest.mark.parametrize(
    ("name", "shape", "ok"),
    [
        ("mlp", (2, 3), True),  # six entries: flattened
        ("mlp", (5,), False),
        ("convnet", (2, 5, 7), True),
        ("convnet", (3, 5, 5), False),
        ("convnet", (2, 25), False),
        ("transformer", (4, 8), True),
        ("transformer", (8, 4), False),
        ("residual-mlp", (5,), True),  # no in_features: the width
        ("residual-mlp", (6,), False),
    ],
)
def test_input_shape_checks(name, shape, ok):
    kind = get_model_kind(name)
    if ok:
        kind.check_input_shape(small(name), shape)
    else:
        with pytest.raises(ModelArgError) as info:
            kind.check_input_shape(small(name), shape)
        assert info.value.arg == "input_shape"


_SIZES = st.integers(1, 6)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(["mlp", "convnet", "resnet", "transformer", "residual-mlp"]),
    depth=st.sampled_from([1, 2, 3]),
    width=_SIZES,
    extra=_SIZES,
    bias=st.booleans(),
    norm=st.sampled_from(["none", "batch"]),
)
def test_size_estimates_are_lower_bounds(name, depth, width, extra, bias, norm):
    args = {
        "mlp": {"in_features": extra, "width": width, "depth": depth, "bias": bias},
        "convnet": {"in_channels": extra, "channels": width, "depth": depth, "bias": bias},
        "resnet": {"depth": 6 * depth + 2, "width": width, "norm": norm, "shortcut": "conv"},
        "transformer": {
            "depth": depth,
            "d_model": 2 * width,
            "heads": 2,
            "d_ff": extra,
            "seq_len": 3,
            "norm": "none" if norm == "none" else "pre",
        },
        "residual-mlp": {
            "in_features": extra,
            "width": width,
            "depth": depth,
            "branch_layers": 1 + bias,
            "bias": bias,
        },
    }[name]
    kind = get_model_kind(name)
    shape = kind.input_shape(args, image_size=4)
    estimate = kind.size(args, shape)
    model = kind.build(**args)
    parameters = sum(p.numel() for p in model.parameters())
    assert estimate.parameters <= parameters
    if name in ("mlp", "convnet"):
        assert estimate.parameters == parameters  # exact for the plain chains
    assert estimate.modules <= len(list(model.modules()))
    assert estimate.activations > 0


def test_size_arithmetic_is_instant_for_absurd_sizes():
    size = get_model_kind("mlp").size(
        {"in_features": SIZE_MAX, "width": SIZE_MAX, "depth": SIZE_MAX}, (SIZE_MAX,)
    )
    assert size.bytes() > 2**90  # a plain integer, never built


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_estimates_its_example_from_below(name):
    kind = get_model_kind(name)
    estimate = kind.size(kind.example, kind.input_shape(kind.example, image_size=4))
    model = kind.build(**kind.example)
    assert estimate is not None, "a kind of isokit counts its cost (configs refuse what cannot fit)"
    assert 0 < estimate.parameters <= sum(p.numel() for p in model.parameters())
    assert estimate.modules <= len(list(model.modules()))


def _toy(width: int, *, scale: float = 1.0) -> nn.Module:
    return nn.Linear(width, width)


def test_a_factory_from_elsewhere_wraps_into_a_kind():
    kind = ModelKind(
        name="toy",
        factory=_toy,
        args=(Arg(name="width", type=int, minimum=1), Arg(name="scale", type=float)),
        inputs=FlatInput("width"),
        label_format="toy-w{width}",
        rules=(Rule(("scale",), lambda a: None if a["scale"] > 0 else "must be > 0"),),
    )
    assert kind.arg("scale").default == 1.0  # read from the factory's signature
    assert kind.label({"width": 3}) == "toy-w3" and kind.chain({"width": 3}) is None
    assert kind.size({"width": 3}, (3,)) is None
    assert isinstance(kind.build(width=3), nn.Linear)
    with pytest.raises(ModelArgError, match="must be > 0"):
        kind.resolve({"width": 3, "scale": -1})
    fixed = ModelKind(
        name="fixed",
        factory=_toy,
        args=(Arg(name="width", type=int),),
        inputs=FixedInput((3, 4)),
        label_format="fixed",
    )
    assert fixed.input_shape({"width": 2}, image_size=99) == (3, 4)


def test_a_kind_refuses_arguments_its_factory_lacks():
    with pytest.raises(TypeError, match="takes no 'depth'"):
        ModelKind(
            name="bad",
            factory=_toy,
            args=(Arg(name="width", type=int), Arg(name="depth", type=int)),
            inputs=FlatInput("width"),
            label_format="bad",
        )
    with pytest.raises(TypeError, match="no Arg for required width"):
        ModelKind(name="bad", factory=_toy, args=(), inputs=FlatInput("width"), label_format="x")


def test_model_flags_name_the_arguments_they_set():
    flags = model_flags()
    assert set(flags) >= {"depth", "width", "activation", "in-features", "norm"}
    width = {k.name: a.name for k, a in flags["width"]}
    assert width["convnet"] == "channels" and width["transformer"] == "d_model"
    assert {k.name for k, _ in flags["norm"]} == {"resnet", "transformer"}


def test_model_size_bytes_counts_parameters_twice_and_a_forward_pass():
    assert ModelSize(parameters=1, activations=0, modules=0).bytes() == 12
    assert ModelSize(parameters=0, activations=1, modules=0).bytes() == 8
