"""One owner per fact of a model kind: discovery, examples, tap prefixes, checked constructors."""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import pkgutil
import re
import sys

import pytest
import torch
from torch import nn

import isokit.models
from isokit.models import (
    MLP,
    ModelArgError,
    ModelKind,
    ResidualMLP,
    ResNet,
    ResolvedArgs,
    SelfAttention,
    Transformer,
    activations,
    get_model_kind,
    import_kind_modules,
    kind_checked,
    make_activation,
    model_kinds,
    spec,
)
from isokit.models.args import Arg
from isokit.models.inputs import FlatInput

KINDS = list(model_kinds())


def _modules():
    for info in pkgutil.iter_modules(isokit.models.__path__, prefix="isokit.models."):
        yield importlib.import_module(info.name)


def test_every_kind_checked_model_class_is_a_registered_kinds_factory():
    classes = [
        obj
        for module in _modules()
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, nn.Module)
        and obj.__module__ == module.__name__
    ]
    checked = {c for c in classes if hasattr(c.__init__, "__wrapped__")}
    factories = {kind.factory for kind in model_kinds().values()}
    assert checked == factories and len(checked) == len(KINDS) == 5


@pytest.fixture
def own_registry(monkeypatch):
    """A copy of the kind registry, so that a test's kinds do not leak into other tests."""
    monkeypatch.setattr(spec, "_KINDS", dict(spec._KINDS))
    monkeypatch.setattr(spec, "_CLASS_KINDS", dict(spec._CLASS_KINDS))


_TOY_MODULE = """
from torch import nn
from isokit.models import FlatInput, ModelKind, kind_checked, register_model_kind
from isokit.models.args import Arg


class Toy(nn.Module):
    @kind_checked
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)


TOY_KIND = register_model_kind(ModelKind(
    name="toy", factory=Toy, args=(Arg(name="width", type=int, minimum=1),),
    inputs=FlatInput("width"), label_format="toy-w{width}", example={"width": 2},
))
"""


def test_a_new_model_module_registers_its_kind_with_no_edit_elsewhere(
    tmp_path, monkeypatch, own_registry
):
    package = tmp_path / "toy_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(_TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert import_kind_modules("toy_models") == ["toy_models.toy"]
        kind = get_model_kind("toy")
        assert isinstance(kind.build(**kind.example), kind.factory)
        with pytest.raises(ModelArgError, match="width: must be"):
            kind.factory(width=0)  # the constructor is checked by the kind it registered
    finally:
        for name in ("toy_models", "toy_models.toy"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_has_a_minimal_example(name):
    kind = get_model_kind(name)
    required = {a.name for a in kind.args if a.required}
    assert required <= set(kind.example), "the example gives every required argument"
    kind.resolve(kind.example)


def test_a_kind_refuses_an_invalid_example():
    with pytest.raises(TypeError, match="the example is invalid: width: unknown argument"):
        ModelKind(
            name="bad",
            factory=nn.Linear,
            args=(Arg(name="in_features", type=int), Arg(name="out_features", type=int)),
            inputs=FlatInput("in_features"),
            label_format="bad",
            example={"in_features": 2, "out_features": 2, "width": 3},
        )


@pytest.mark.parametrize("name", [n for n in KINDS if get_model_kind(n).tap_prefix is not None])
def test_the_tap_prefix_is_written_once_and_read_by_model_and_chain(name):
    kind = get_model_kind(name)
    source = inspect.getsource(sys.modules[kind.factory.__module__])
    prefix = kind.tap_prefix
    # In code (a string or an f-string, not a doctest's output) only as tap_prefix="…".
    assert len(re.findall(r"[\"']" + re.escape(prefix) + r"[\"'{]", source)) == 1
    model = kind.build(**kind.example)
    depth = kind.resolve(kind.example)["depth"]
    assert model.taps[:depth] == kind.depth_taps(depth)
    chain = kind.chain(kind.example)
    assert chain is None or list(chain.taps) == kind.depth_taps(depth)


def test_depth_taps_need_a_prefix():
    with pytest.raises(ValueError, match="no tap_prefix"):
        get_model_kind("resnet").depth_taps(2)


# --------------------------------------------------------------------- resolved once, read-only


def test_resolved_args_are_taken_back_as_they_are():
    kind = get_model_kind("mlp")
    args = kind.resolve(kind.example)
    assert isinstance(args, ResolvedArgs) and args.kind is kind
    assert kind.resolve(args) is args
    other = get_model_kind("residual-mlp").resolve(args)  # another kind's: resolved again
    assert other is not args and other.kind is get_model_kind("residual-mlp")
    for change in (
        lambda: args.__setitem__("depth", 0),
        lambda: args.update(depth=0),
        lambda: args.pop("depth"),
        lambda: args.setdefault("x", 1),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    for twin in (dict(args), {**args}, copy.deepcopy(args), pickle.loads(pickle.dumps(args))):
        assert type(twin) is dict and twin == args  # a copy is checked again wherever it goes
    with pytest.raises(ModelArgError, match="depth"):
        kind.label({**args, "depth": 0})


def test_build_checks_each_argument_once(monkeypatch):
    calls = []
    check = Arg.check
    monkeypatch.setattr(
        Arg, "check", lambda self, value: calls.append(self.name) or check(self, value)
    )
    kind = get_model_kind("mlp")
    kind.build(**kind.example)
    assert sorted(calls) == sorted(kind.example)  # not a second time inside the constructor
    calls.clear()
    MLP(**kind.example)  # a direct call is checked by the same specs, once
    assert sorted(calls) == sorted(kind.example)


# --------------------------------------------------------------------- constructors


def test_direct_calls_get_the_resolved_arguments():
    # The none word and a whole-number scale mean what they mean in a config.
    model = ResidualMLP("none", 5, 2, scale=2, gate="none")
    assert model.stem is None and model.blocks[0].gate is None
    assert isinstance(model.blocks[0].scale, float)
    assert ResNet(depth=8, width=2, gate="none").layer1[0].gate is None


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: MLP(4, 4, "3"), ModelArgError, "depth: must be a positive integer, got '3'"),
        (lambda: MLP(4, 4, 2, bias="False"), ModelArgError, "bias: must be true or false"),
        (lambda: MLP(4, 4), TypeError, r"MLP.__init__\(\): missing a required argument: 'depth'"),
        (lambda: MLP(4, 4, 2, widht=3), TypeError, "unexpected keyword argument 'widht'"),
        (lambda: ResNet(1, 2, 3, 4, 5, 6, 7), TypeError, "too many positional arguments"),
    ],
)
def test_direct_calls_are_checked_by_the_kind(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_subclass_is_checked_by_its_parents_kind():
    class Wide(MLP):
        def __init__(self, width: int) -> None:
            super().__init__(width, width, depth=1)

    assert Wide(3).taps == ["acts.0"]
    with pytest.raises(ModelArgError, match="in_features: must be a positive integer"):
        Wide(0)


def test_kind_checked_needs_a_registered_kind():
    class Orphan(nn.Module):
        @kind_checked
        def __init__(self, width: int) -> None:
            super().__init__()

    with pytest.raises(TypeError, match="no registered model kind has Orphan"):
        Orphan(3)
    with pytest.raises(TypeError, match="must name every argument"):
        kind_checked(lambda self, **kw: None)


# --------------------------------------------------------------------- transformer rules


@pytest.mark.parametrize(
    ("d_model", "heads", "arg", "match"),
    [
        (10, 3, "heads", "d_model = 10 must be divisible by heads = 3"),
        (8, 0, "heads", "must be a positive integer, got 0"),
        (True, 1, "d_model", "got a boolean true"),
    ],
)
def test_self_attention_on_its_own_keeps_the_kinds_rules(d_model, heads, arg, match):
    with pytest.raises(ModelArgError, match=match) as info:
        SelfAttention(d_model, heads)
    assert info.value.arg == arg


@pytest.mark.parametrize("shape", [(2, 5, 8), (2, 4, 8, 1), (2, 32), (4, 8)])
def test_transformer_input_rule_is_the_kinds(shape):
    model = Transformer(1, 8, 2, 16, 4)
    with pytest.raises(ModelArgError, match=r"a transformer needs \[seq_len, d_model\] = \[4, 8\]"):
        model(torch.randn(shape))
    assert model(torch.randn(2, 4, 8)).shape == (2, 4, 8)


# --------------------------------------------------------------------- activations


def test_activation_names_are_checked_by_the_shared_spec():
    assert not hasattr(activations, "check_choice") and not hasattr(
        activations, "check_positive_int"
    )
    with pytest.raises(ModelArgError, match="did you mean 'tanh'") as info:
        make_activation("tanhh")
    assert info.value.arg == "activation"
    with pytest.raises(ModelArgError, match="activation: must be one of"):
        make_activation(None)
