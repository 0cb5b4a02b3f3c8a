"""The report overlay: the right formula where theory applies, nothing where it does not."""

from __future__ import annotations

import numpy as np
import pytest

from isokit.theory import overlay

MLP = dict(in_features=64, width=64, depth=6)


def test_linear_orthogonal_mlp_is_an_exact_isometry():
    ov = overlay(kind="mlp", model_args={**MLP, "activation": "linear"}, scheme="orthogonal")
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 0.0, atol=1e-12)
    np.testing.assert_array_equal(ov.depth, np.arange(1, 7))


def test_critical_relu_follows_the_closed_forms():
    # Kaiming (σ_w² = 2) is ReLU's critical point: m1 = 1, v = 2L (Gaussian).
    ov = overlay(kind="mlp", model_args={**MLP, "activation": "relu"}, scheme="kaiming-normal")
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 2.0 * np.arange(1, 7))
    orth = overlay(
        kind="mlp",
        model_args={**MLP, "activation": "relu"},
        scheme="orthogonal",
        scheme_options={"gain": "relu"},
    )
    np.testing.assert_allclose(orth.var, 1.0 * np.arange(1, 7))


def test_linear_xavier_m1_and_variance():
    ov = overlay(kind="mlp", model_args={**MLP, "activation": "linear"}, scheme="xavier-normal")
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, np.arange(1, 7))  # Fuss–Catalan m2 = L + 1


def test_torch_default_decays_like_one_third_per_linear_layer():
    ov = overlay(kind="mlp", model_args={**MLP, "activation": "linear"}, scheme="torch-default")
    np.testing.assert_allclose(ov.m1, (1 / 3) ** np.arange(1, 7))


def test_linear_delta_orthogonal_convnet_is_an_exact_isometry():
    ov = overlay(
        kind="convnet",
        model_args=dict(in_channels=8, channels=8, depth=4, activation="linear"),
        scheme="delta-orthogonal",
    )
    np.testing.assert_allclose(ov.m1, 1.0)
    np.testing.assert_allclose(ov.var, 0.0, atol=1e-12)


def test_nonlinear_delta_orthogonal_convnet_gets_no_pooled_line():
    # The per-position law does not describe the pooled spectrum the probe measures.
    assert (
        overlay(
            kind="convnet",
            model_args=dict(in_channels=8, channels=8, depth=4, activation="tanh"),
            scheme="delta-orthogonal",
        )
        is None
    )


@pytest.mark.parametrize(
    ("kind", "args", "scheme", "options"),
    [
        ("resnet", dict(depth=20), "kaiming-normal", {}),
        ("mlp", {**MLP, "activation": "tanh"}, "idinit", {}),
        ("mlp", {**MLP, "activation": "tanh"}, "lsuv", {}),
        ("mlp", {**MLP, "activation": "tanh"}, "fixup", {}),
        ("mlp", dict(in_features=32, width=64, depth=4, activation="tanh"), "orthogonal", {}),
        ("mlp", {**MLP, "activation": "tanh"}, "kaiming-normal", {"bias": "keep"}),
        ("convnet", dict(in_channels=8, channels=8, depth=3), "kaiming-normal", {}),
        ("transformer", dict(depth=2), "xavier-normal", {}),
    ],
)
def test_no_line_where_no_theory_applies(kind, args, scheme, options):
    assert overlay(kind=kind, model_args=args, scheme=scheme, scheme_options=options) is None


def test_taps_other_than_post_activations_get_no_line():
    args = {**MLP, "activation": "tanh"}
    assert (
        overlay(kind="mlp", model_args=args, scheme="orthogonal", taps=["fcs.0", "fcs.1"]) is None
    )
    taps = [f"acts.{i}" for i in range(6)] + ["head"]
    assert overlay(kind="mlp", model_args=args, scheme="orthogonal", taps=taps) is not None
