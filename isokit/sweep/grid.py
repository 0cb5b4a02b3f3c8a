"""A ``[sweep]`` table expanded into its grid: one :class:`Cell` per model × scheme × seed × value.

A sweep config is a report config (:mod:`isokit.report.config`) with a ``[sweep]`` table whose
every key takes the list of values it sweeps::

    [sweep]
    depth = [4, 16, 64]              # a model argument, on every [[models]] entry that has it
    activation = ["tanh", "relu"]
    schemes = ["idinit", "orthogonal"]
    seeds = [0, 1, 2]
    "option.gain" = [0.8, 1.0, 1.2]  # a scheme option, on the schemes that have it
    "train.lr" = [0.01, 0.05]        # a [train] option, when the config has a [train] section

The grid is the product of every list over every ``[[models]]`` entry. ``schemes`` and ``seeds``
may be given at the top level instead (as in a report config), not in both places. A model
argument is swept on every entry whose model kind has it (a factory entry takes it as a keyword
argument); one no entry has is an error that names it. A scheme option is swept on the schemes
that declare it, and the others run once.

Each cell is a complete one-run config (one model, one scheme, one seed), checked by the report
config's own parser: a cell's config is exactly what ``isokit report`` would run. Its
:attr:`Cell.key` is a stable hash of that resolved config, so the same cell has the same key in
every sweep and on every machine, and a rerun finds the cells it already has.

Example:
    >>> grid = parse_sweep({"models": [{"kind": "mlp", "in_features": 4, "width": 4}],
    ...     "sweep": {"depth": [2, 3], "schemes": ["orthogonal"], "seeds": [0, 1]}})
    >>> len(grid.cells), grid.axes
    (4, ('depth', 'seed'))
    >>> grid.cells[0].axes
    {'model': 'mlp', 'depth': 2, 'scheme': 'orthogonal', 'seed': 0}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isokit.report.checks import ConfigError, array_of, table_of
from isokit.report.config import Config, _read_text, parse_config

__all__ = ["Cell", "Grid", "SweepError", "cell_key", "load_sweep_config", "parse_sweep"]

OPTION = "option."
TRAIN = "train."
#: Keys of ``[sweep]`` that are not model arguments.
_LISTS = ("schemes", "seeds")


class SweepError(ConfigError):
    """A ``[sweep]`` problem at a dotted key (``sweep.depth``), with the fix."""


def cell_key(config: Mapping[str, Any]) -> str:
    """The stable hash of a resolved one-run config (``Config.to_dict()``, title left out).

    Example:
        >>> cell_key({"seeds": [0]}) == cell_key({"seeds": [0], "title": "another title"})
        True
    """
    body = {k: v for k, v in config.items() if k != "title"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One grid cell: its ``key``, its one-run ``config`` (resolved) and its ``axes``, the
    value of every swept key (``model`` names its ``[[models]]`` entry)."""

    key: str
    config: dict[str, Any]
    axes: dict[str, Any]

    def parsed(self) -> Config:
        """The cell's :class:`~isokit.report.config.Config` (checked when the grid was built)."""
        return parse_config(self.config, source=f"cell {self.key}", check_resources=False)


@dataclass(frozen=True, kw_only=True)
class Grid:
    """A sweep: its ``cells`` in grid order, the swept ``axes`` (those with more than one value)
    and the ``config`` table it was expanded from."""

    cells: tuple[Cell, ...]
    axes: tuple[str, ...]
    config: dict[str, Any]
    source: str = "<dict>"
    threads: int = 1
    trains: bool = False
    values: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The hash of the grid: of its cells' keys, in order."""
        return hashlib.sha256(" ".join(c.key for c in self.cells).encode()).hexdigest()[:20]


def _values(key: str, raw: object) -> list[Any]:
    values = array_of(key, raw, f"{key.split('.', 1)[1]} = [...]")
    if not values:
        raise SweepError(key, "is empty; list at least one value")
    seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
    if len(set(seen)) != len(seen):
        raise SweepError(key, f"has duplicates {values}; list each value once")
    return list(values)


def _model_axes(sweep: Mapping[str, list], models: list[dict]) -> dict[str, list[int]]:
    """Per swept model argument, the ``[[models]]`` entries that take it."""
    from isokit.models import get_model_kind
    from isokit.models.args import ModelArgError

    takers: dict[str, list[int]] = {}
    for name in sweep:
        takers[name] = []
        for i, table in enumerate(models):
            if "factory" in table:
                takers[name].append(i)
                continue
            try:
                kind = get_model_kind(table.get("kind"))
            except ModelArgError:
                continue  # the entry's own parse names its bad kind
            if name in (a.name for a in kind.args):
                takers[name].append(i)
        if not takers[name]:
            kinds = sorted({str(t.get("kind")) for t in models})
            raise SweepError(
                f"sweep.{name}",
                f"is not an argument of any model kind of [[models]] ({', '.join(kinds)}), nor "
                'a sweep key (schemes, seeds, "option.NAME", "train.NAME"); check the spelling',
            )
        for i in takers[name]:
            if name in models[i] or name in models[i].get("kwargs", {}):
                raise SweepError(
                    f"sweep.{name}",
                    f"models[{i}] sets {name} itself; drop it there or from [sweep]",
                )
    return takers


def _expand_models(sweep: Mapping[str, list], models: list[dict]) -> list[tuple[dict, dict, int]]:
    """Every ``(model table, axes, entry index)`` of the model part of the grid."""
    takers = _model_axes(sweep, models)
    counts: dict[str, int] = {}
    for t in models:
        name = str(t.get("label", t.get("kind", t.get("factory"))))
        counts[name] = counts.get(name, 0) + 1
    out = []
    for i, table in enumerate(models):
        base = str(table.get("label", table.get("kind", table.get("factory"))))
        label = base if counts[base] == 1 else f"{base}[{i}]"
        names = [n for n in sweep if i in takers[n]]
        for combo in itertools.product(*(sweep[n] for n in names)):
            changes = dict(zip(names, combo, strict=True))
            model = dict(table)
            if "factory" in table:
                model["kwargs"] = {**table.get("kwargs", {}), **changes}
            else:
                model.update(changes)
            if "label" in table and changes:
                model["label"] = "-".join(
                    [table["label"], *(f"{k}{v}" for k, v in changes.items())]
                )
            out.append((model, {"model": label, **changes}, i))
    return out


def _expand_schemes(options: Mapping[str, list], schemes: list) -> list[tuple[Any, dict]]:
    """Every ``(scheme entry, axes)``: each option swept on the schemes that declare it."""
    from isokit.init import get_scheme

    out = []
    used = set()
    for i, entry in enumerate(schemes):
        table = (
            {"name": entry} if isinstance(entry, str) else dict(table_of(f"schemes[{i}]", entry))
        )
        try:
            declared = get_scheme(table.get("name")).options
        except (ValueError, TypeError):
            declared = ()  # the cell's own parse names the bad scheme
        names = [n for n in options if n in declared]
        used.update(names)
        for n in names:
            if n in table.get("options", {}):
                raise SweepError(
                    f'sweep."{OPTION}{n}"',
                    f"schemes[{i}] ({table['name']}) sets {n} itself; drop it there or from "
                    "[sweep]",
                )
        label = str(table.get("label", table.get("name")))
        for combo in itertools.product(*(options[n] for n in names)):
            changes = dict(zip(names, combo, strict=True))
            scheme = dict(table, options={**table.get("options", {}), **changes})
            if changes:
                scheme["label"] = "-".join([label, *(f"{k}{v}" for k, v in changes.items())])
            out.append((scheme, {"scheme": label, **{OPTION + k: v for k, v in changes.items()}}))
    for n in options:
        if n not in used:
            raise SweepError(
                f'sweep."{OPTION}{n}"',
                f"is not an option of any scheme swept ({', '.join(map(str, schemes))}); "
                "`isokit schemes` lists each scheme's options",
            )
    return out


def _split(sweep: Mapping[str, Any], data: Mapping[str, Any]):
    """The sweep table's model arguments, scheme options, train options, schemes and seeds."""
    model, option, train = {}, {}, {}
    for key, raw in sweep.items():
        values = _values(f"sweep.{key}", raw)
        if key.startswith(OPTION):
            option[key[len(OPTION) :]] = values
        elif key.startswith(TRAIN):
            if "train" not in data:
                raise SweepError(
                    f'sweep."{key}"', "sweeps a [train] option, but the config has no [train]"
                )
            train[key[len(TRAIN) :]] = values
        elif key not in _LISTS:
            model[key] = values
    lists = {}
    for key in _LISTS:
        if key in sweep and key in data:
            raise SweepError(f"sweep.{key}", f"is also set at the top level; set {key} once")
        lists[key] = sweep[key] if key in sweep else data.get(key, [0] if key == "seeds" else None)
        if lists[key] is None:
            raise SweepError("sweep.schemes", 'missing; e.g. schemes = ["idinit", "orthogonal"]')
        lists[key] = _values(f"sweep.{key}", lists[key])
    return model, option, train, lists["schemes"], lists["seeds"]


def _check_union(data: dict, models: list[tuple[dict, dict, int]]) -> None:
    """Check every distinct model of the grid once (memory, build, data fit) in one config;
    an error names the swept key (``sweep.depth``) or the entry's own (``models[0].width``)
    and the cell's values."""
    union = dict(
        data, models=[dict(m, label=f"cell-model-{k}") for k, (m, *_) in enumerate(models)]
    )
    union["schemes"], union["seeds"] = union["schemes"][:1], union["seeds"][:1]
    try:
        parse_config(union, source="sweep")
    except ConfigError as exc:
        if not exc.key.startswith("models["):
            raise
        index = int(exc.key[len("models[") : exc.key.index("]")])
        _, axes, entry = models[index]
        rest = exc.key[exc.key.index("]") + 1 :].lstrip(".")
        where = ", ".join(f"{k} = {v!r}" for k, v in axes.items() if k != "model")
        key = f"sweep.{rest}" if rest in axes else f"models[{entry}]" + (f".{rest}" if rest else "")
        message = exc.message.replace(f"cell-model-{index}", axes["model"])
        raise SweepError(key, f"{message} (in the cells of {axes['model']} at {where})") from None


def parse_sweep(data: Mapping[str, Any], *, source: str = "<dict>") -> Grid:
    """Expand a sweep config table (module docstring) into its checked :class:`Grid`."""
    data = dict(table_of("config", dict(data)))
    sweep = table_of("sweep", data.pop("sweep", None) or {})
    if not sweep:
        raise SweepError("sweep", "missing or empty; add a [sweep] table with the values to sweep")
    model_lists, option_lists, train_lists, schemes, seeds = _split(sweep, data)
    models = _expand_models(
        model_lists, [table_of(f"models[{i}]", m) for i, m in enumerate(data.get("models", []))]
    )
    if not models:
        raise ConfigError("models", "missing; add at least one [[models]] table with a kind")
    scheme_cells = _expand_schemes(option_lists, schemes)
    base = dict(data, schemes=schemes, seeds=seeds)
    _check_union(base, models)
    train_combos = [
        dict(zip(train_lists, combo, strict=True))
        for combo in itertools.product(*train_lists.values())
    ]
    cells = []
    for (model, m_axes, _), (scheme, s_axes), train, seed in itertools.product(
        models, scheme_cells, train_combos, seeds
    ):
        one = dict(base, models=[model], schemes=[scheme], seeds=[seed])
        if "train" in data:
            one["train"] = {**data["train"], **train}
        try:
            config = parse_config(one, source=source, check_resources=False)
        except ConfigError as exc:
            key = next((f'sweep."{TRAIN}{k}"' for k in train if exc.key == f"train.{k}"), exc.key)
            where = ", ".join(f"{k} = {v!r}" for k, v in {**m_axes, **s_axes, **train}.items())
            raise SweepError(key, f"{exc.message} (in the cells at {where})") from None
        resolved = config.to_dict()
        axes = {**m_axes, **s_axes, **{TRAIN + k: v for k, v in train.items()}, "seed": seed}
        cells.append(Cell(key=cell_key(resolved), config=resolved, axes=axes))
    values: dict[str, list[Any]] = {}
    for cell in cells:
        for k, v in cell.axes.items():
            if v not in values.setdefault(k, []):
                values[k].append(v)
    swept = tuple(k for k, v in values.items() if len(v) > 1 and k not in ("model", "scheme"))
    first = cells[0].parsed()
    return Grid(
        cells=tuple(cells),
        axes=swept,
        config={**data, "sweep": dict(sweep)},
        source=source,
        threads=first.threads,
        trains=first.train is not None,
        values=values,
    )


def load_sweep_config(path: str | Path) -> Grid:
    """Read a sweep config (TOML with a ``[sweep]`` table) and expand it into its :class:`Grid`."""
    path = Path(path)
    try:
        data = tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"TOML syntax error: {exc}; fix the TOML there") from None
    return parse_sweep(data, source=str(path))
