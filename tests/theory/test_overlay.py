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
from isokit.theory import Overlay, overlay, predict_mlp, predict_resnet
from isokit.theory.prediction import weakest_tag
from tests.theory.chains import DEPTH, WIDTH, conv_chain, law, mlp_chain, residual_chain

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
    np.testing.assert_array_equal(ov.var, expected.var.value)
    np.testing.assert_array_equal(ov.var_raw, expected.var_raw.value)
    np.testing.assert_allclose(ov.var_raw, ov.m1**2 * ov.var, rtol=1e-14)  # m2 − m1² = m1²·var
    assert (ov.activation, ov.weights, ov.section) == (activation, ensemble, "§3.2")
    assert ov.law == law(sw2, sb2, ensemble)
    assert ov.citation == isokit.theory.CITATIONS[expected.var.cite]
    assert ov.tag == weakest_tag(expected.m1.tag, expected.var.tag)
    # every line is compared with the probe statistic of its own name
    names = {"m1", "var", "var_raw"} | ({"zero_fraction"} if activation == "relu" else set())
    assert dict(ov.statistic) == {name: name for name in names}
    assert not ov.bulk and ov.residual_scale is None


def test_linear_orthogonal_mlp_is_an_exact_isometry():
    ov = overlay(mlp_chain("linear"), law(1.0, ensemble="orthogonal"))
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 0.0, atol=1e-12)
    np.testing.assert_array_equal(ov.depth, np.arange(1, DEPTH + 1))


def test_critical_relu_follows_the_closed_forms():
    # σ_w² = 2 is ReLU's critical point: m1 = 1, var = 2L (Gaussian), var = L (orthogonal).
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
    ov = overlay(conv_chain("linear", depth=4), law(1.0, ensemble="delta-orthogonal"))
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 0.0, atol=1e-12)
    np.testing.assert_array_equal(ov.depth, np.arange(1, 5))
    # biases do not enter a linear network's Jacobian
    biased = overlay(conv_chain("linear", depth=4), law(1.0, 0.1, "delta-orthogonal"))
    np.testing.assert_array_equal(biased.var, ov.var)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_delta_orthogonal_convnet_is_the_orthogonal_line_at_width_channels(activation):
    # §5: each position is a width-c orthogonal fully connected Jacobian.
    chain = conv_chain(activation, channels=16, in_channels=16, depth=4)
    ov = overlay(chain, law(1.0, 0.02, "delta-orthogonal"), input_second_moment=1.5)
    fc = predict_mlp(
        act=activation, sw2=1.0, sb2=0.02, depth=4, weights="orthogonal", width=16, q1=1.52
    )
    np.testing.assert_array_equal(ov.m1, fc.m1.value)
    np.testing.assert_array_equal(ov.var, fc.var.value)
    assert (ov.weights, ov.section, ov.tag) == ("orthogonal", "§5", "D")
    if activation == "relu":  # the zero atom at width c
        np.testing.assert_array_equal(ov.zero_fraction, fc.zero_fraction.value)


@pytest.mark.parametrize("activation", ["linear", "tanh", "erf", "relu", "leaky_relu"])
@pytest.mark.parametrize("ensemble", ["gaussian", "orthogonal", "delta-orthogonal"])
def test_residual_chain_lines_are_predict_resnet_per_depth(activation, ensemble):
    a, sw2 = 0.5, 2.0 if "relu" in activation else 1.0
    ov = overlay(residual_chain(activation, scale=a), law(sw2, ensemble=ensemble), taps=None)
    weights = "gaussian" if ensemble == "gaussian" else "orthogonal"
    pred = predict_resnet(act=activation, a=a, sw2=sw2, sb2=0.0, depth=DEPTH, weights=weights)
    np.testing.assert_array_equal(ov.m1, pred.m1.value)
    np.testing.assert_array_equal(ov.var, pred.var.value)
    assert (ov.section, ov.residual_scale, ov.weights, ov.tag) == ("§4", a, weights, "D")
    assert ov.zero_fraction is None  # I + a·DW keeps full rank
    if activation in ("relu", "leaky_relu"):
        # the outlier eigenvalue: the formulas describe the bulk, and say so
        assert ov.bulk
        assert dict(ov.statistic) == {"m1": "m1_bulk", "var": "var_bulk"}
        assert ov.var_raw is None  # no probe statistic measures the bulk's raw variance
    else:
        assert not ov.bulk
        assert dict(ov.statistic) == {"m1": "m1", "var": "var", "var_raw": "var_raw"}
        np.testing.assert_allclose(ov.var_raw, ov.m1**2 * ov.var, rtol=1e-14)


def test_residual_linear_line_is_the_closed_form():
    # §4: m1 = (1 + a²σ_w²)^l and var = l·(2a² + a⁴)/(1 + a²)² for linear Gaussian blocks.
    a, depth = 0.5, np.arange(1, DEPTH + 1)
    ov = overlay(residual_chain("linear", scale=a), law(1.0), input_second_moment=3.0)
    np.testing.assert_allclose(ov.m1, (1 + a * a) ** depth, rtol=1e-14)
    np.testing.assert_allclose(ov.var, depth * (2 * a**2 + a**4) / (1 + a**2) ** 2, rtol=1e-14)


def test_residual_tanh_line_uses_the_input_moment():
    # Tanh's branch variances follow P⁰ = E[x_i²] (§4), so the input moment moves the line.
    small = overlay(residual_chain("tanh"), law(1.0), input_second_moment=0.5)
    large = overlay(residual_chain("tanh"), law(1.0), input_second_moment=4.0)
    expected = predict_resnet(act="tanh", a=0.5, sw2=1.0, sb2=0.0, depth=DEPTH, x0_sq=4.0)
    np.testing.assert_array_equal(large.m1, expected.m1.value)
    assert np.all(small.m1 > large.m1)


def test_the_exported_overlay_is_the_function_and_its_module_is_overlays():
    assert callable(isokit.theory.overlay)
    assert isokit.theory.overlay.__module__ == "isokit.theory.overlays"
    assert not (Path(isokit.theory.__file__).parent / "overlay.py").exists()
    for name in ("Overlay", "overlay", "overlay_reason", "WeightLaw", "Chain"):
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
