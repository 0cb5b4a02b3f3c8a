"""The theory's zero atom across depth against the measured zero fraction of ReLU MLPs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import isokit
from isokit.models import MLP, get_model_kind
from isokit.theory import Chain, zero_atom_line

ARGS = {"in_features": 64, "width": 64, "depth": 16, "activation": "relu"}


@pytest.mark.parametrize("scheme", ["kaiming-normal", "orthogonal"])
def test_zero_atom_line_matches_the_measured_zero_fraction(scheme):
    line = zero_atom_line(get_model_kind("mlp").chain(ARGS))
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
    assert zero_atom_line(_chain(**changes)) is None


def test_taps_must_be_the_chain_s():
    assert zero_atom_line(_chain(), taps=["a", "b", "head"]) is not None
    assert zero_atom_line(_chain(), taps=["x", "y"]) is None
