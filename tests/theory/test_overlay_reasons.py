"""Where :func:`isokit.theory.overlay` draws no line, :func:`isokit.theory.overlay_reason` says why.

Every reason of ``docs/theory.md`` §7, the finite-width limit ``L/N > 0.25`` of §6 (and the exact
isometries it spares), the argument checks both functions share and the checks of
:class:`isokit.theory.Chain`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from isokit.theory import MAX_DEPTH_OVER_WIDTH, Chain, Overlay, overlay, overlay_reason
from tests.theory.chains import DEPTH, conv_chain, law, mlp_chain, residual_chain


@pytest.mark.parametrize(
    ("chain", "weights", "reason"),
    [
        # a scheme without an i.i.d. law (identity-like, LSUV, …)
        (mlp_chain("tanh"), None, "no i.i.d. law"),
        (mlp_chain("tanh", in_width=32), law(1.0, ensemble="orthogonal"), "input width 32"),
        (mlp_chain("swish"), law(1.0), "activation 'swish'"),
        (conv_chain("linear"), law(2.0), "kernels are gaussian"),
        (conv_chain("tanh"), law(1.0, ensemble="orthogonal"), "kernels are orthogonal"),
        (conv_chain("linear", in_channels=3), law(1.0, ensemble="delta-orthogonal"), "width 3"),
        (residual_chain("relu", branch_layers=2), law(2.0), "branches have 2 layers"),
        (residual_chain("gelu"), law(2.0), "residual gelu chain"),
        (residual_chain("sigmoid"), law(1.0), "no closed recursion"),
    ],
)
def test_no_line_where_no_theory_applies_and_the_reason_says_why(chain, weights, reason):
    assert overlay(chain, weights) is None
    assert reason in overlay_reason(chain, weights)


@pytest.mark.parametrize("kind", ["dense", "conv", "residual"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_no_line_beyond_the_finite_width_limit(kind, activation):
    # §6 rule 1: beyond L/N = 0.25 measured moments leave the free-probability limit.
    weights = law(2.0, ensemble="delta-orthogonal")
    width = 16

    def chain(depth: int) -> Chain:
        if kind == "dense":
            return mlp_chain(activation, width=width, in_width=width, depth=depth)
        if kind == "conv":
            return conv_chain(activation, channels=width, in_channels=width, depth=depth)
        return residual_chain(activation, width=width, depth=depth)

    at_limit = chain(int(MAX_DEPTH_OVER_WIDTH * width))  # L/N = 0.25 exactly: a line
    assert overlay(at_limit, weights) is not None and overlay_reason(at_limit, weights) is None
    beyond = chain(int(MAX_DEPTH_OVER_WIDTH * width) + 1)
    assert overlay(beyond, weights) is None
    assert overlay_reason(beyond, weights).startswith(
        "depth over width L/N = 5/16 = 0.312 > 0.25: at finite width"
    )


def test_exact_isometries_hold_at_any_depth_over_width():
    # Linear layers with orthogonal weights: every singular value is σ_w^L at any width.
    for chain in (
        mlp_chain("linear", width=4, in_width=4, depth=64),
        conv_chain("linear", depth=64),
    ):
        for ensemble in ("orthogonal", "delta-orthogonal"):
            if chain.layer == "conv" and ensemble == "orthogonal":
                continue  # flattened orthogonal kernels are no isometry
            ov = overlay(chain, law(1.0, ensemble=ensemble))
            np.testing.assert_allclose(ov.var, 0.0, atol=1e-12)
    # Gaussian weights are no isometry: the limit applies
    assert overlay(mlp_chain("linear", width=4, in_width=4, depth=64), law(1.0)) is None
    assert (
        overlay(residual_chain("linear", width=4, depth=64), law(1.0, ensemble="orthogonal"))
        is None
    )


@pytest.mark.parametrize(
    ("chain", "weights"),
    [
        (mlp_chain("tanh"), law(1.0)),
        (mlp_chain("tanh", width=4, in_width=4, depth=64), law(1.0)),
        (mlp_chain("tanh"), None),
        (residual_chain("relu"), law(2.0)),
        (residual_chain("relu", branch_layers=2), law(2.0)),
        (conv_chain("tanh"), law(1.0, ensemble="delta-orthogonal")),
        (conv_chain("tanh"), law(1.0)),
    ],
)
def test_overlay_is_none_exactly_where_a_reason_is_given(chain, weights):
    reason = overlay_reason(chain, weights)
    line = overlay(chain, weights)
    assert (line is None) == (reason is not None)
    assert reason is None or (isinstance(reason, str) and reason and not reason.endswith("."))


def test_taps_other_than_the_chain_taps_get_no_line():
    chain = mlp_chain("tanh")
    assert overlay(chain, law(1.0), taps=["fcs.0", "fcs.1"]) is None
    assert "fcs.0, fcs.1" in overlay_reason(chain, law(1.0), taps=["fcs.0", "fcs.1"])
    assert overlay(chain, law(1.0), taps=list(chain.taps[:-1])) is None  # too few
    with_head = [f"acts.{i}" for i in range(DEPTH)] + ["head"]
    assert overlay(chain, law(1.0), taps=with_head) is not None
    assert overlay(chain, law(1.0), taps=tuple(with_head)) is not None


def test_overlay_statistic_must_name_every_line():
    fields = dict(
        depth=np.arange(1, 3), m1=np.ones(2), var=np.zeros(2), activation="linear",
        weights="gaussian", law=law(1.0), section="§3.2", citation="derived", tag="D",
    )  # fmt: skip
    with pytest.raises(ValueError, match="probe statistic of each line"):
        Overlay(**fields, statistic={"m1": "m1"})
    line = Overlay(**fields, statistic={"m1": "m1_bulk", "var": "var_bulk"})
    assert line.bulk and line.var_raw is None
    with pytest.raises(TypeError):
        line.statistic["m1"] = "m1"  # read-only


@pytest.mark.parametrize("moment", [math.nan, math.inf, -math.inf, -1.0, "1", True])
def test_bad_input_second_moment_is_a_clear_error(moment):
    # Checked before any prediction, also where no line applies (law=None).
    for weights in (law(1.0), None):
        for function in (overlay, overlay_reason):
            with pytest.raises(ValueError, match="input_second_moment"):
                function(mlp_chain("tanh"), weights, input_second_moment=moment)


def test_wrong_argument_types_are_refused():
    for function in (overlay, overlay_reason):
        with pytest.raises(TypeError, match="Chain"):
            function({"layer": "dense"}, law(1.0))
        with pytest.raises(TypeError, match="WeightLaw"):
            function(mlp_chain("tanh"), (1.0, 0.0, "gaussian"))


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


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"branch_layers": 2}, "needs a residual chain"),
        ({"residual_scale": 0.5, "branch_layers": 0}, "branch_layers must be a positive"),
        ({"residual_scale": 0.5, "branch_layers": True}, "branch_layers must be a positive"),
        ({"residual_scale": "0.5"}, "residual_scale must be a real number"),
        ({"residual_scale": True}, "residual_scale must be a real number"),
        ({"residual_scale": math.nan}, "residual_scale must be finite"),
    ],
)
def test_chain_residual_fields_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        Chain(
            layer="dense", activation="relu", width=4, in_width=4, depth=2, fan_in=4, bias=True,
            taps=("blocks.0", "blocks.1"), **fields,
        )  # fmt: skip
    if "residual_scale" not in fields:
        return
    ok = Chain(
        layer="dense", activation="relu", width=4, in_width=4, depth=2, fan_in=4, bias=True,
        taps=("blocks.0", "blocks.1"), residual_scale=1,
    )  # fmt: skip
    assert ok.residual_scale == 1.0 and isinstance(ok.residual_scale, float)
