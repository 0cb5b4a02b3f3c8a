"""The [sweep] table's expansion: the product of its lists, each cell a report config."""

from __future__ import annotations

import itertools

import pytest

from isokit.report.config import ConfigError, parse_config
from isokit.sweep import SweepError, cell_key, load_sweep_config, parse_sweep
from tests.sweep.tasks import MLP, small_grid


def test_the_grid_is_the_product_of_every_list_in_order():
    grid = parse_sweep(small_grid(activation=["tanh", "relu"]))
    got = [
        (c.axes["depth"], c.axes["activation"], c.axes["scheme"], c.axes["seed"])
        for c in grid.cells
    ]
    want = list(itertools.product([2, 3, 4], ["tanh", "relu"], ["orthogonal", "idinit"], [0, 1]))
    assert got == want
    assert grid.axes == ("depth", "activation", "seed")


def test_each_cell_is_the_report_config_of_its_one_run():
    grid = parse_sweep(small_grid())
    cell = next(
        c
        for c in grid.cells
        if c.axes
        == {"model": "mlp", "depth": 3, "activation": "tanh", "scheme": "idinit", "seed": 1}
    )
    direct = parse_config(
        {
            "inputs": {"examples": 2},
            "models": [MLP | {"depth": 3, "activation": "tanh"}],
            "schemes": ["idinit"],
            "seeds": [1],
        }
    )
    assert cell.config == direct.to_dict()
    assert cell.key == cell_key(direct.to_dict())


def test_keys_are_stable_and_distinct():
    a, b = parse_sweep(small_grid()), parse_sweep(small_grid(depth=[4, 3, 2]))
    assert len({c.key for c in a.cells}) == len(a.cells)
    assert {c.key for c in a.cells} == {c.key for c in b.cells}  # the same cells, in another order
    assert a.key != b.key
    assert parse_sweep(dict(small_grid(), title="other")).key == a.key  # the title is not a cell's


def test_scheme_options_sweep_only_the_schemes_that_have_them():
    grid = parse_sweep(small_grid(schemes=["orthogonal", "idinit"], **{"option.gain": [0.5, 2.0]}))
    ortho = [c for c in grid.cells if c.axes["scheme"] == "orthogonal"]
    assert sorted({c.axes["option.gain"] for c in ortho}) == [0.5, 2.0]
    assert {c.config["schemes"][0]["options"]["gain"] for c in ortho} == {0.5, 2.0}
    assert all("option.gain" not in c.axes for c in grid.cells if c.axes["scheme"] == "idinit")
    assert len(grid.cells) == 3 * 2 * (2 + 1)


def test_train_options_are_swept_into_the_train_section():
    grid = parse_sweep(
        small_grid(**{"train.lr": [0.01, 0.1]})
        | {
            "train": {
                "data": "teacher-student",
                "steps": 4,
                "data_options": {"in_features": 8, "out_features": 8},
            }
        }
    )
    assert {c.config["train"]["lr"] for c in grid.cells} == {0.01, 0.1}
    assert grid.trains


@pytest.mark.parametrize(
    ("sweep", "key", "words"),
    [
        ({"dpeth": [2]}, "sweep.dpeth", "not an argument of any model kind"),
        ({"depth": []}, "sweep.depth", "non-empty"),
        ({"depth": [2, 2]}, "sweep.depth", "duplicates"),
        ({"option.gian": [1.0]}, 'sweep."option.gian"', "not an option of any scheme"),
        ({"train.lr": [0.1]}, 'sweep."train.lr"', "no [train]"),
        ({"depth": [0]}, "sweep.depth", "depth = 0"),
    ],
)
def test_bad_sweeps_name_their_key(sweep, key, words):
    with pytest.raises(ConfigError) as info:
        parse_sweep(small_grid(**sweep))
    assert info.value.key == key and words in info.value.message


def test_an_argument_set_in_two_places_is_refused():
    data = small_grid()
    data["models"] = [MLP | {"depth": 4}]
    with pytest.raises(SweepError, match="models.0. sets depth itself"):
        parse_sweep(data)


def test_a_list_set_in_two_places_is_refused():
    with pytest.raises(SweepError, match="sweep.seeds: is also set at the top level"):
        parse_sweep(small_grid() | {"seeds": [0]})


def test_a_bad_train_value_names_its_sweep_key():
    data = small_grid(**{"train.lr": [0.1, -1.0]}) | {
        "train": {
            "data": "teacher-student",
            "steps": 4,
            "data_options": {"in_features": 8, "out_features": 8},
        }
    }
    with pytest.raises(SweepError) as info:
        parse_sweep(data)
    assert info.value.key == 'sweep."train.lr"' and "got -1.0" in info.value.message


def test_the_depth_sweep_config_expands(tmp_path):
    grid = load_sweep_config("analyses/configs/depth_sweep.toml")
    assert {c.axes["activation"] for c in grid.cells} == {"tanh", "relu"}
    assert max(c.axes["depth"] for c in grid.cells) == 256
    assert sorted({c.axes["seed"] for c in grid.cells}) == [0, 1, 2]
