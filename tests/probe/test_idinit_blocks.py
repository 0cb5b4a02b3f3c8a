"""IDInit keeps every identity block of a residual network an isometry (``docs/idinit.md §5``)."""

from __future__ import annotations

import numpy as np
import torch

from isokit.init import apply
from isokit.models import ResNet
from isokit.probe import block_profile, profile, zero_mask


def test_idinit_resnet_blocks_have_unit_local_singular_values():
    model = apply(ResNet(depth=20, norm="none", shortcut="pad", width=8), "idinit", seed=0)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    blocks = [n for n in model.taps if n.startswith("layer")]
    prof = block_profile(model, x, taps=blocks)
    checked = 0
    for tap in prof.taps:
        if model.get_submodule(tap.name).downsample is not None:
            continue
        for s in tap.singular_values:
            nonzero = s[~zero_mask(s, n_rows=tap.D, n_cols=tap.n_in)]
            assert nonzero.size > 0
            np.testing.assert_allclose(nonzero, 1.0, atol=1e-4, err_msg=tap.name)
        checked += 1
    assert checked == 7


def test_kaiming_resnet_blocks_are_far_from_isometry():
    # The same check must fail for a scheme without identity control: it is not vacuous.
    model = apply(ResNet(depth=20, norm="none", shortcut="pad", width=8), "kaiming-normal", seed=0)
    x = torch.rand(2, 3, 8, 8)
    prof = block_profile(model, x, taps=["layer1.1"])
    s = prof.taps[0].singular_values
    assert np.abs(s[s > 1e-8] - 1).max() > 0.1


def test_idinit_prefix_spectra_agree_within_a_stage():
    model = apply(ResNet(depth=20, norm="none", shortcut="pad", width=8), "idinit", seed=0)
    x = torch.rand(1, 3, 8, 8)
    prof = profile(model, x, taps=["layer1.0", "layer1.1", "layer1.2"], method="exact")
    s0 = prof.taps[0].singular_values[0]
    for tap in prof.taps[1:]:
        np.testing.assert_allclose(tap.singular_values[0], s0, atol=1e-4)
