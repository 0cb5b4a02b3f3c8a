"""The histograms' zero atom: one bar per scheme whose height is the measured zero fraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import rc_context
from matplotlib.patches import Rectangle
from torch import nn

from isokit.probe import profile
from isokit.report import style
from isokit.report.histograms import histogram_figure, zero_atom_bin
from isokit.report.series import _curve


def _diagonal(values: list[float]) -> nn.Module:
    layer = nn.Linear(len(values), len(values), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.tensor(values)))
    return nn.Sequential(layer, nn.Tanh())


@pytest.mark.parametrize("n_zero", [0, 1, 3])
def test_zero_bar_height_is_the_zero_fraction(n_zero):
    values = [1.0, 0.8, 0.5, 0.3, 0.2, 0.1][: 6 - n_zero] + [0.0] * n_zero
    prof = profile(_diagonal(values), torch.randn(3, 6), method="exact")
    curve = _curve("m", "s", [prof], "taps")
    with rc_context(style.style()):
        fig = histogram_figure(["m"], [curve], style.Palette(("s",)))
    bars = [
        p
        for ax in fig.axes
        for p in ax.patches
        if isinstance(p, Rectangle) and not p.get_fill() and p.get_height() > 0
    ]
    expected = float(prof.stat("zero_fraction")[0])
    assert expected == pytest.approx(n_zero / 6)
    if n_zero == 0:
        assert bars == []
    else:
        # the same tap at first, middle and last: three panels, one bar each
        assert [b.get_height() for b in bars] == pytest.approx([expected] * 3)
        left = zero_atom_bin(np.geomspace(0.05, 1.0, 40))
        assert left[0] < left[1] < 0.05
