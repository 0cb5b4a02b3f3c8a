"""The theory's zero atom across depth against the measured zero fraction of ReLU MLPs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import isokit
from isokit.models import MLP, get_model_kind
from isokit.theory import Chain, WeightLaw, zero_atom_line

ARGS = {"in_features": 64, "width": 64, "depth": 16, "activation": "relu"}
HE = WeightLaw(sigma_w2=2.0, sigma_b2=0.0, ensemble="gaussian")


@pytest.mark.parametrize("scheme", ["kaiming-normal", "orthogonal"])
def test_zero_atom_line_matches_the_measured_zero_fraction(scheme):
    chain = get_model_kind("mlp").chain(ARGS)
    law = isokit.init.get_scheme(scheme).weight_law({}, fan_in=chain.fan_in, bias=chain.bias)
    line = zero_atom_line(chain, law)
    measured = []
    for seed in range(4):
        model = isokit.init.apply(MLP(**ARGS), scheme, seed=seed)
        x = torch.randn(4, 64, generator=torch.Generator().manual_seed(seed))
        measured.append(isokit.probe.profile(model, x, method="exact").stat("zero_fraction", None))
    z = np.concatenate(measured, axis=1)
    se = z.std(axis=1, ddof=1) / np.sqrt(z.shape[1])
    # the finite-width excess over 1 − p = 0.5 is what is tested: it grows to 0.11 by depth 16
    assert line.zero_fraction[-1] - 0.5 > 0.1
    np.testing.assert_array_less(np.abs(z.mean(axis=1) - line.zero_fraction), 3 * se + 0.01)


def _chain(**changes) -> Chain:
    base = dict(layer="dense", activation="relu", width=8, in_width=8, depth=2, fan_in=8)
    return Chain(**(base | {"bias": True, "taps": ("a", "b")} | changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"activation": "tanh"},  # smooth: no atom
        {"activation": "linear"},  # p = 1: no atom
        {"activation": "leaky_relu"},  # slope α > 0 on the negative side: no atom
        {"in_width": 4},  # the heuristic assumes a square chain
        {"residual_scale": 1.0},  # the identity path keeps the rank
    ],
)
def test_no_zero_atom_line_where_the_theory_has_none(changes):
    assert zero_atom_line(_chain(**changes), HE) is None


def test_identity_like_weights_have_no_line_and_keep_the_atom_at_one_half():
    assert zero_atom_line(_chain(), None) is None
    model = isokit.init.apply(MLP(**ARGS), "idinit", seed=0)
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    z = isokit.probe.profile(model, x, method="exact").stat("zero_fraction")
    # identity-like weights switch the same units off at every depth: no growth with depth
    np.testing.assert_array_equal(z, np.full_like(z, z[0]))
    # 4096 Bernoulli(1/2) units: 4 standard errors is 0.031, far below the random law's 0.61
    assert abs(z[-1] - 0.5) < 4 * 0.5 / np.sqrt(x.numel())


def test_taps_must_be_the_chain_s():
    assert zero_atom_line(_chain(), HE, taps=["a", "b", "head"]) is not None
    assert zero_atom_line(_chain(), HE, taps=["x", "y"]) is None
