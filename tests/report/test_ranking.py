"""The ranking: rank fraction first, then the non-zero gap; var where neither was measured."""

from __future__ import annotations

import math

import numpy as np

from isokit.report import Results, parse_config
from isokit.report.series import Curve, ranking


def _curve(scheme: str, **last: float) -> Curve:
    values = {name: np.array([[math.nan], [value]]) for name, value in last.items()}
    return Curve(
        model="mlp-relu-w4-d2",
        scheme=scheme,
        depth=np.array([1, 2]),
        names=["acts.0", "acts.1"],
        values=values,
        sigma=[None, None],
        seeds=1,
    )


def _results(schemes: list[str]) -> Results:
    config = parse_config(
        {"schemes": schemes, "models": [{"kind": "mlp", "width": 4, "depth": 2, "in_features": 4}]}
    )
    return Results(config=config, records=[], environment={})


def test_rank_fraction_beats_a_smaller_gap_and_gap_breaks_ties():
    curves = [
        _curve("orthogonal", rank_fraction=0.5, gap_nonzero=0.1, var_nonzero=0.2, var=1.0),
        _curve("idinit", rank_fraction=1.0, gap_nonzero=2.0, var_nonzero=3.0, var=3.0),
        _curve("zero", rank_fraction=1.0, gap_nonzero=1.0, var_nonzero=9.0, var=9.0),
    ]
    rows = ranking(_results(["idinit", "orthogonal", "zero"]), curves)
    assert [(r.scheme, r.place) for r in rows] == [("zero", 1), ("idinit", 2), ("orthogonal", 3)]
    assert rows[0].rank_fraction == 1.0 and rows[0].gap_nonzero == 1.0


def test_without_node_statistics_the_scale_free_variance_ranks():
    # a matrix-free profile without SLQ at the last tap: only the moments are measured there
    nan = math.nan
    curves = [
        _curve("idinit", rank_fraction=nan, gap_nonzero=nan, var_nonzero=nan, var=2.0),
        _curve("orthogonal", rank_fraction=nan, gap_nonzero=nan, var_nonzero=nan, var=0.5),
        _curve("zero", rank_fraction=nan, gap_nonzero=nan, var_nonzero=nan, var=math.inf),
    ]
    rows = ranking(_results(["idinit", "orthogonal", "zero"]), curves)
    assert [r.scheme for r in rows] == ["orthogonal", "idinit", "zero"]
    assert all("ranked by var" in r.note for r in rows)
