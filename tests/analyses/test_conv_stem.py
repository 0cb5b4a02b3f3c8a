"""analyses/conv_stem.py: its coverage count against dense Jacobians, and its quick run's numbers
against independent recomputations (the stem's rank from ``torch.func.jacrev``, the ConvNet's
first tap against the stem probe, the verdicts from the recorded numbers)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

import isokit
from isokit.models import ResNet
from tests.analyses.conftest import ANALYSES

NAME = "conv_stem"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(ANALYSES))
    try:
        spec = importlib.util.spec_from_file_location(NAME, ANALYSES / f"{NAME}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ANALYSES))
    return module


def _stem(width: int, **options) -> torch.nn.Conv2d:
    model = isokit.init.apply(ResNet(depth=8, width=width), "idinit", seed=0, **options)
    return model.stem[0].double()


def _jacobian_rank_fraction(conv: torch.nn.Conv2d, size: int) -> float:
    """rank / n_in of the dense Jacobian of the stem convolution (a linear map, bias 0)."""
    x = torch.rand(3, size, size, dtype=torch.float64)
    jac = torch.func.jacrev(lambda v: conv(v[None]).flatten())(x).reshape(-1, x.numel())
    return int(torch.linalg.matrix_rank(jac)) / x.numel()


@pytest.mark.parametrize("width", [1, 4, 8, 16, 22, 23, 27, 40])
def test_read_fraction_is_the_rank_of_the_truncated_patch_stem(script, width):
    conv = _stem(width)
    assert script.read_fraction(conv.weight, 6) == pytest.approx(
        _jacobian_rank_fraction(conv, 6), abs=1e-12
    )


def test_read_fraction_counts_border_pixels_a_shift_never_reaches(script):
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 0, 0] = 1.0  # out[y, x] = in[y − 1, x − 1]: the last row and column are never read
    assert script.read_fraction(w, 4) == pytest.approx(9 / 16)
    w[0, 0, 2, 2] = 1.0  # and in[y + 1, x + 1]: only the corners (0, 3) and (3, 0) stay unread
    assert script.read_fraction(w, 4) == pytest.approx(14 / 16)
    w[0, 0, 1, 1] = 1.0  # the centre tap reads every pixel
    assert script.read_fraction(w, 4) == 1.0


def test_read_fraction_bounds_the_rank_of_the_tiled_stem(script):
    for width in (4, 8, 16):
        conv = _stem(width, contract="tile")
        assert _jacobian_rank_fraction(conv, 6) <= script.read_fraction(conv.weight, 6) + 1e-12


def _rows(record, part: str, **match):
    return [r for r in record["numbers"][part] if all(r[k] == v for k, v in match.items())]


@pytest.mark.slow
def test_stem_rank_fractions_match_dense_jacobians(quick_run):
    record = quick_run(NAME).record
    size = record["settings"]["stem_image_size"]
    for label, options in (
        ("IDInit patch, truncate", {}),
        ("IDInit patch, tile", {"contract": "tile"}),
        ("IDInit channel", {"conv_mode": "channel"}),
    ):
        for row in _rows(record, "stem", variant=label):
            expected = _jacobian_rank_fraction(_stem(row["width"], **options), size)
            assert row["rank_fraction_conv"] == pytest.approx(expected, abs=1e-9), (label, row)


@pytest.mark.slow
def test_the_width_16_stem_reads_two_channels_and_wide_stems_read_everything(quick_run):
    record = quick_run(NAME).record
    trunc = {r["width"]: r for r in _rows(record, "stem", variant="IDInit patch, truncate")}
    assert trunc[16]["channels_read"] == 2 and trunc[16]["pairs_read"] == 16
    assert trunc[16]["rank_fraction_conv"] == pytest.approx(2 / 3, abs=1e-12)
    for width, row in trunc.items():
        assert row["pairs_read"] == min(width, 27)
        if width >= 27:
            assert row["rank_fraction_conv"] == 1.0
    for row in _rows(record, "stem", variant="IDInit patch, tile"):
        assert row["channels_read"] == 3 and row["pairs_read"] == 27
    grad = record["numbers"]["stem_gradient"]
    # The blue channel's weights all start at 0, yet its first gradient is not zero.
    assert grad["channel_2_weight_zero"] == 1.0 and grad["channel_2_grad_nonzero"] > 0


@pytest.mark.slow
def test_convnet_first_tap_agrees_with_the_stem_probe(quick_run):
    """The ConvNet's first conv is the same 3 → width patch stem, and tanh is invertible, so its
    first tap's rank fraction (the sweep) is the stem's (the direct probe) on any input."""
    record = quick_run(NAME).record
    width = record["settings"]["width"]
    assert record["settings"]["image_size"] == record["settings"]["stem_image_size"]
    stem = _rows(record, "stem", variant="IDInit patch, truncate", width=width)[0]
    for row in _rows(record, "convnet", variant="IDInit patch, truncate", activation="tanh"):
        assert row["rank_fraction"][0] == pytest.approx(stem["rank_fraction_conv"], abs=1e-12)
        assert max(row["rank_fraction"][1:]) <= 1 / 3 + 1e-12
        # Each further layer reads at most the shifts of one channel: the rank never grows.
        ranks = row["rank_fraction"]
        assert all(b <= a + 1e-12 for a, b in zip(ranks, ranks[1:], strict=False))
    for row in _rows(record, "convnet", variant="IDInit channel, truncate", activation="tanh"):
        assert min(row["rank_fraction"]) == 1.0  # channel-maintain: identity at the centre tap


@pytest.mark.slow
def test_verdicts_follow_from_the_recorded_numbers(quick_run, script):
    record = quick_run(NAME).record
    numbers = record["numbers"]
    expected = {
        "plain ConvNet collapses under patch-maintain": script.convnet_verdict(numbers["convnet"]),
        "patch-maintain is harmless inside ResNet blocks": script.resnet_verdict(numbers["resnet"]),
        "the width-16 stem leaves input channel 2 unused": script.stem_verdict(numbers["stem"]),
    }
    assert record["verdict"] == {k: v[0] for k, v in expected.items()}
    # On fixed seeds: patch/truncate collapses the ConvNet, and the 3 → 16 stem is blind to blue.
    assert record["verdict"]["plain ConvNet collapses under patch-maintain"] == "confirmed"
    assert record["verdict"]["the width-16 stem leaves input channel 2 unused"] == "confirmed"
    stems = {f.rsplit(".", 1)[0] for f in record["figures"]}
    assert stems == {f"{NAME}_convnet", f"{NAME}_resnet", f"{NAME}_stem"}
