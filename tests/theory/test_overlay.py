"""The report overlay: the right formula for a chain and a weight law, nothing where none applies.

:func:`isokit.theory.overlay` takes an :class:`isokit.theory.Chain` (what a model kind says about
its layers) and an :class:`isokit.theory.WeightLaw` (what a scheme says about its weights); it
knows no scheme names and no model kinds.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import isokit.theory
from isokit.theory import Chain, Overlay, WeightLaw, overlay, predict_mlp

WIDTH, DEPTH = 64, 6


def mlp_chain(activation: str, *, width=WIDTH, in_width=WIDTH, depth=DEPTH, bias=True) -> Chain:
    """The chain an ``MLP(in_width, width, depth)`` presents: post-activation taps ``acts.i``."""
    return Chain(
        layer="dense",
        activation=activation,
        width=width,
        in_width=in_width,
        depth=depth,
        fan_in=width,
        bias=bias,
        taps=tuple(f"acts.{i}" for i in range(depth)),
    )


def conv_chain(activation: str, *, channels=8, in_channels=8, depth=4, kernel_size=3) -> Chain:
    """The chain a ``ConvNet(in_channels, channels, depth)`` presents."""
    return Chain(
        layer="conv",
        activation=activation,
        width=channels,
        in_width=in_channels,
        depth=depth,
        fan_in=channels * kernel_size**2,
        bias=True,
        taps=tuple(f"acts.{i}" for i in range(depth)),
    )


def law(sw2: float, sb2: float = 0.0, ensemble: str = "gaussian") -> WeightLaw:
    return WeightLaw(sigma_w2=sw2, sigma_b2=sb2, ensemble=ensemble)


# The laws the schemes drew before the schemes owned them (the removed ``_weight_law``): Kaiming
# with its gain² for the nonlinearity, Xavier gain², orthogonal gain² (``"relu"`` → 2), and
# torch's default U(±1/√fan_in) for weights and biases.
TODAY = {
    "kaiming-normal (relu)": (2.0, 0.0, "gaussian"),
    "kaiming-normal (tanh)": ((5 / 3) ** 2, 0.0, "gaussian"),
    "kaiming-uniform (leaky_relu, a=0.2)": (2.0 / (1 + 0.2**2), 0.0, "gaussian"),
    "xavier-normal": (1.0, 0.0, "gaussian"),
    "xavier-normal (gain=1.5)": (1.5**2, 0.0, "gaussian"),
    "orthogonal": (1.0, 0.0, "orthogonal"),
    "orthogonal (gain=relu)": (math.sqrt(2.0) ** 2, 0.0, "orthogonal"),
    "torch-default": (1.0 / 3.0, 1.0 / (3.0 * WIDTH), "gaussian"),
}


@pytest.mark.parametrize("second_moment", [1.0, 2.5])
@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "erf"])
@pytest.mark.parametrize("scheme", sorted(TODAY))
def test_mlp_lines_equal_predict_mlp_exactly(scheme, activation, second_moment):
    sw2, sb2, ensemble = TODAY[scheme]
    ov = overlay(mlp_chain(activation), law(sw2, sb2, ensemble), input_second_moment=second_moment)
    expected = predict_mlp(
        act=activation,
        sw2=sw2,
        sb2=sb2,
        depth=DEPTH,
        weights=ensemble,
        width=WIDTH,
        q1=sw2 * second_moment + sb2,
    )
    assert isinstance(ov, Overlay)
    np.testing.assert_array_equal(ov.depth, np.arange(1, DEPTH + 1))
    np.testing.assert_array_equal(ov.m1, expected.m1.value)  # bit for bit, not approximately
    np.testing.assert_array_equal(ov.var, expected.v.value)
    assert (ov.activation, ov.weights) == (activation, ensemble)
    assert ov.law == law(sw2, sb2, ensemble)
    assert ov.citation == isokit.theory.CITATIONS[expected.v.cite]
    assert ov.tag == ("D" if "D" in (expected.m1.tag, expected.v.tag) else expected.v.tag)


def test_linear_orthogonal_mlp_is_an_exact_isometry():
    ov = overlay(mlp_chain("linear"), law(1.0, ensemble="orthogonal"))
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 0.0, atol=1e-12)
    np.testing.assert_array_equal(ov.depth, np.arange(1, DEPTH + 1))


def test_critical_relu_follows_the_closed_forms():
    # σ_w² = 2 is ReLU's critical point: m1 = 1, v = 2L (Gaussian), v = L (orthogonal).
    ov = overlay(mlp_chain("relu"), law(2.0))
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 2.0 * np.arange(1, DEPTH + 1))
    orth = overlay(mlp_chain("relu"), law(2.0, ensemble="orthogonal"))
    np.testing.assert_allclose(orth.var, 1.0 * np.arange(1, DEPTH + 1))


def test_linear_gaussian_m1_and_variance():
    ov = overlay(mlp_chain("linear"), law(1.0))
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, np.arange(1, DEPTH + 1))  # Fuss–Catalan m2 = L + 1


def test_one_third_law_decays_like_one_third_per_linear_layer():
    ov = overlay(mlp_chain("linear"), law(1 / 3, 1 / (3 * WIDTH)))
    np.testing.assert_allclose(ov.m1, (1 / 3) ** np.arange(1, DEPTH + 1))


def test_input_second_moment_sets_q1():
    # Tanh's μ1 depends on q¹ = σ_w²·E[x²] + σ_b², so a different input moment moves m1.
    small = overlay(mlp_chain("tanh"), law(1.0), input_second_moment=0.5)
    large = overlay(mlp_chain("tanh"), law(1.0), input_second_moment=4.0)
    assert np.all(small.m1 > large.m1)


def test_delta_orthogonal_law_on_a_dense_chain_is_the_orthogonal_line():
    # A delta-orthogonal scheme fills Linear layers with scaled orthogonal matrices.
    delta = overlay(mlp_chain("tanh"), law(1.0, ensemble="delta-orthogonal"))
    orth = overlay(mlp_chain("tanh"), law(1.0, ensemble="orthogonal"))
    np.testing.assert_array_equal(delta.m1, orth.m1)
    np.testing.assert_array_equal(delta.var, orth.var)
    assert delta.weights == orth.weights == "orthogonal"


def test_linear_delta_orthogonal_convnet_is_an_exact_isometry():
    ov = overlay(conv_chain("linear"), law(1.0, ensemble="delta-orthogonal"))
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 0.0, atol=1e-12)
    np.testing.assert_array_equal(ov.depth, np.arange(1, 5))


def test_nonlinear_delta_orthogonal_convnet_gets_no_pooled_line():
    # The per-position law does not describe the pooled spectrum the probe measures.
    assert overlay(conv_chain("tanh"), law(1.0, ensemble="delta-orthogonal")) is None


@pytest.mark.parametrize(
    ("chain", "weights"),
    [
        (mlp_chain("tanh"), None),  # a scheme without an i.i.d. law (identity-like, LSUV, …)
        (mlp_chain("tanh", in_width=32), law(1.0, ensemble="orthogonal")),  # unequal widths
        (mlp_chain("swish"), law(1.0)),  # an activation the theory does not know
        (conv_chain("linear"), law(2.0)),  # Gaussian kernels: no pooled law
        (conv_chain("linear"), law(1.0, ensemble="orthogonal")),  # flattened orthogonal kernels
        (conv_chain("linear"), law(1.0, 0.1, "delta-orthogonal")),  # biases break the isometry
        (conv_chain("linear", in_channels=3), law(1.0, ensemble="delta-orthogonal")),
    ],
)
def test_no_line_where_no_theory_applies(chain, weights):
    assert overlay(chain, weights) is None


def test_taps_other_than_the_chain_taps_get_no_line():
    chain = mlp_chain("tanh")
    assert overlay(chain, law(1.0), taps=["fcs.0", "fcs.1"]) is None
    assert overlay(chain, law(1.0), taps=list(chain.taps[:-1])) is None  # too few
    with_head = [f"acts.{i}" for i in range(DEPTH)] + ["head"]
    assert overlay(chain, law(1.0), taps=with_head) is not None
    assert overlay(chain, law(1.0), taps=tuple(with_head)) is not None


@pytest.mark.parametrize("moment", [math.nan, math.inf, -math.inf, -1.0, "1", True])
def test_bad_input_second_moment_is_a_clear_error(moment):
    # Checked before any prediction, also where no line applies (law=None).
    for weights in (law(1.0), None):
        with pytest.raises(ValueError, match="input_second_moment"):
            overlay(mlp_chain("tanh"), weights, input_second_moment=moment)


def test_wrong_argument_types_are_refused():
    with pytest.raises(TypeError, match="Chain"):
        overlay({"layer": "dense"}, law(1.0))
    with pytest.raises(TypeError, match="WeightLaw"):
        overlay(mlp_chain("tanh"), (1.0, 0.0, "gaussian"))


def test_chain_taps_are_a_tuple_of_names():
    as_list = Chain(
        layer="dense", activation="relu", width=4, in_width=4, depth=2, fan_in=4, bias=True,
        taps=["acts.0", "acts.1"],
    )  # fmt: skip
    assert as_list.taps == ("acts.0", "acts.1")
    hash(as_list)  # a Chain stays usable as a key
    with pytest.raises(ValueError, match="sequence of tap names"):
        Chain(
            layer="dense", activation="relu", width=4, in_width=4, depth=2, fan_in=4, bias=True,
            taps="ab",
        )  # fmt: skip
    with pytest.raises(ValueError, match="tap names"):
        Chain(
            layer="dense", activation="relu", width=4, in_width=4, depth=2, fan_in=4, bias=True,
            taps=(0, 1),
        )  # fmt: skip


def test_the_exported_overlay_is_the_function_and_its_module_is_overlays():
    assert callable(isokit.theory.overlay)
    assert isokit.theory.overlay.__module__ == "isokit.theory.overlays"
    assert not (Path(isokit.theory.__file__).parent / "overlay.py").exists()
    for name in ("Overlay", "overlay", "WeightLaw", "Chain"):
        assert name in isokit.theory.__all__


SCHEME_NAMES = {
    "kaiming-normal",
    "kaiming-uniform",
    "xavier-normal",
    "xavier-uniform",
    "torch-default",
    "idinit",
    "lsuv",
    "fixup",
    "skipinit",
    "rezero",
}
MODEL_KINDS = {"mlp", "convnet", "resnet", "transformer", "residual_mlp", "residual-mlp"}


def test_theory_code_names_no_scheme_and_no_model_kind():
    # The schemes own their laws and the model kinds their chains: no string literal in
    # isokit.theory's code may name one (docstrings aside).
    for path in sorted(Path(isokit.theory.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        literals = {
            node.value.lower()
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        }
        assert not literals & SCHEME_NAMES, f"{path.name} names schemes"
        assert not literals & MODEL_KINDS, f"{path.name} names model kinds"
