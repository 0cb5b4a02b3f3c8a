"""Tap glob patterns (``docs/probes.md §1``): direct matches only, in module order."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from isokit.models import ResidualMLP
from isokit.probe import ProbeOptionError, ProbeOptions, TapError, profile
from isokit.probe.taps import first_tensor, replace_first, resolve_taps


class Net(nn.Module):
    """Blocks with children of their own, a head, and a name that sorts before the blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(12))
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_a_star_matches_one_dotted_part_in_module_order():
    net = Net()
    # Not blocks.0.0 or blocks.0.1: a * never crosses a dot. blocks.10 after blocks.9.
    assert resolve_taps(net, "blocks.*") == [f"blocks.{i}" for i in range(12)]
    assert resolve_taps(net, "blocks.*.1") == [f"blocks.{i}.1" for i in range(12)]
    assert resolve_taps(net, "blocks.1?") == ["blocks.10", "blocks.11"]
    assert resolve_taps(net, "blocks.[02]") == ["blocks.0", "blocks.2"]
    assert resolve_taps(net, "*") == ["blocks", "head"]


def test_a_list_keeps_its_order_and_expands_each_pattern_in_place():
    net = Net()
    got = resolve_taps(net, ["head", "blocks.1?", "blocks.0"])
    assert got == ["head", "blocks.10", "blocks.11", "blocks.0"]
    with pytest.raises(TapError, match="duplicate tap names: blocks.10"):
        resolve_taps(net, ["blocks.1*", "blocks.10"])


def test_a_pattern_that_matches_nothing_is_named_with_close_matches():
    with pytest.raises(
        TapError, match=r"no module matching the pattern 'block\.\*'.*close matches: blocks"
    ):
        resolve_taps(Net(), "block.*")
    with pytest.raises(TapError, match=re.escape("no module matching the pattern 'blocks.x*'")):
        resolve_taps(Net(), ["blocks.0", "blocks.x*"])


def test_patterns_are_options_of_taps_only():
    assert ProbeOptions(taps="blocks.*").taps == "blocks.*"
    assert ProbeOptions(taps=["blocks.0", "blocks.1?"]).taps == ("blocks.0", "blocks.1?")
    with pytest.raises(ProbeOptionError, match="start names are matched literally"):
        ProbeOptions(start="blocks.*")
    with pytest.raises(ProbeOptionError, match="slq_taps names are matched literally"):
        ProbeOptions(slq_taps=["blocks.*"])


def test_profile_with_a_pattern_measures_the_listed_taps():
    torch.manual_seed(0)
    model = ResidualMLP(6, 6, depth=4)
    x = torch.randn(2, 6)
    by_pattern = profile(model, x, taps="blocks.*", method="exact")
    by_name = profile(model, x, taps=[f"blocks.{i}" for i in range(4)], method="exact")
    assert by_pattern.names == by_name.names == model.taps
    for a, b in zip(by_pattern.taps, by_name.taps, strict=True):
        np.testing.assert_array_equal(a.singular_values, b.singular_values)


def test_mapping_outputs_read_and_replace_their_first_tensor():
    pytest.importorskip("transformers")
    from transformers.modeling_outputs import BaseModelOutput

    out = BaseModelOutput(last_hidden_state=torch.ones(1, 2))
    assert first_tensor(out) is out.last_hidden_state
    new = replace_first(out, torch.zeros(1, 2))
    assert isinstance(new, BaseModelOutput) and bool((new.last_hidden_state == 0).all())
    assert bool((out.last_hidden_state == 1).all())  # the original is left alone
    assert bool((new[0] == 0).all())  # the tuple view agrees


def test_hf_encoder_blocks_and_an_encoder_tap():
    pytest.importorskip("transformers")
    from isokit.models.hf import bert, token_ids

    torch.manual_seed(0)
    model = bert(hidden_size=8, num_hidden_layers=3, num_attention_heads=2, intermediate_size=8)
    assert resolve_taps(model, "encoder.layer.*") == [f"encoder.layer.{i}" for i in range(3)]
    ids = token_ids(1, generator=torch.Generator().manual_seed(0), seq_len=3)
    # The encoder returns a ModelOutput: its first tensor is the tap (the last layer's output).
    prof = profile(
        model, ids, start="embeddings", taps=["encoder.layer.2", "encoder"], method="exact"
    )
    np.testing.assert_allclose(
        prof.taps[1].singular_values, prof.taps[0].singular_values, rtol=1e-12
    )
