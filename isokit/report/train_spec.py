"""The ``[train]`` section of a report config: :class:`TrainSpec` and its checks.

The section names a data set and holds the training options::

    [train]
    data = "fashion-mnist"          # isokit.train.DATASETS
    data_options = {pad_to = 32}    # the data set's own options (optional)
    optimizer = "sgd-momentum"      # every other key: an isokit.train.TrainOptions field
    lr = 0.05
    steps = 300                     # or epochs = 1
    checkpoints = [0, 100, 300]

Every key but ``data``, ``data_options`` and ``data_seed`` is a field of
:class:`isokit.train.TrainOptions`, which checks it (the error names ``train.<key>``); ``seed``
is not among them, since each run trains with its own seed from ``seeds``. With the models at
hand, :func:`check_train_models` loads the data once and checks that every model takes its
inputs and returns one output per class (classification) or per target (regression).

Example:
    >>> spec = parse_train({"data": "teacher-student", "lr": 0.05, "steps": 20})
    >>> spec.options.lr, spec.to_dict()["data"]
    (0.05, 'teacher-student')
    >>> parse_train({"data": "teacher-student", "lr": "fast"})
    Traceback (most recent call last):
    ...
    isokit.report.checks.ConfigError: train.lr: must be a finite number > 0, got 'fast'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from isokit.report.checks import ConfigError, pos_int, table_of

if TYPE_CHECKING:
    from isokit.report.modelspec import ModelSpec
    from isokit.train import TrainData, TrainOptions

__all__ = ["TrainSpec", "check_train_models", "parse_train"]

_OWN = ("data", "data_options", "data_seed")


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """The validated ``[train]`` section: the data set, its options and the training options."""

    data: str
    options: TrainOptions
    data_options: dict[str, Any] = field(default_factory=dict)
    data_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The TOML form (defaults filled in); :func:`parse_train` reads it back."""
        options = self.options.to_dict()
        options.pop("seed")
        return {
            "data": self.data,
            "data_options": dict(self.data_options),
            "data_seed": self.data_seed,
            **options,
        }

    def load(self) -> TrainData:
        """The data set, built from ``data_seed``; failures are :class:`ConfigError` at
        ``train.data`` (not installed) or ``train.data_options`` (a bad option)."""
        from isokit.train import DataError, DatasetUnavailableError, load_data

        try:
            return load_data(self.data, seed=self.data_seed, **self.data_options)
        except DatasetUnavailableError as exc:
            raise ConfigError("train.data", str(exc)) from None
        except (DataError, ValueError) as exc:
            raise ConfigError("train.data_options", str(exc)) from None


def parse_train(raw: object) -> TrainSpec:
    """Check the ``[train]`` table ``raw`` (module docstring) into a :class:`TrainSpec`."""
    from isokit.probe.checks import close_matches
    from isokit.train import DATASETS, TrainOptionError, TrainOptions

    table = table_of("train", raw)
    if "data" not in table:
        raise ConfigError("train.data", f"missing; name a data set: {', '.join(DATASETS)}")
    name = table["data"]
    if not isinstance(name, str) or name not in DATASETS:
        raise ConfigError(
            "train.data",
            f"unknown data set {name!r}{close_matches(str(name), DATASETS)} "
            f"(known: {', '.join(DATASETS)})",
        )
    if "seed" in table:
        raise ConfigError("train.seed", "is set per run by the config's seeds; drop it here")
    options = {k: v for k, v in table.items() if k not in _OWN}
    try:
        parsed = TrainOptions.from_mapping(options)
    except TrainOptionError as exc:
        raise ConfigError(f"train.{exc.option}", exc.message) from None
    return TrainSpec(
        data=name,
        options=parsed,
        data_options=table_of("train.data_options", table.get("data_options", {})),
        data_seed=pos_int("train.data_seed", table.get("data_seed", 0), minimum=0),
    )


def check_train_models(spec: TrainSpec, models: Sequence[ModelSpec]) -> None:
    """Load the data once and check each model against it: tensor inputs of the data's shape,
    one output per class or target, and a run length that holds the checkpoints."""
    import torch

    from isokit.probe.taps import first_tensor
    from isokit.train import TrainOptionError

    data = spec.load()
    try:
        spec.options.total_steps(len(data.train))
    except TrainOptionError as exc:
        raise ConfigError(f"train.{exc.option}", exc.message) from None
    want = data.input_shape
    for i, model_spec in enumerate(models):
        key = f"models[{i}]"
        if model_spec.inputs is not None:
            raise ConfigError(
                f"{key}.inputs",
                f"{model_spec.label} takes token or keyword inputs; training feeds it "
                f"{data.name}'s tensors, so train a model of those inputs",
            )
        if model_spec.input_shape != want:
            raise ConfigError(
                f"{key}.input_shape",
                f"{model_spec.label} takes inputs of shape {list(model_spec.input_shape or [])} "
                f"but {data.name} gives {list(want)}; set the model's input size (in_features, "
                "in_channels, inputs.image_size) or train.data_options to match",
            )
        with torch.random.fork_rng(devices=[]):
            model = model_spec.build()
        with torch.no_grad():
            out = model(data.train.inputs[:1].to(torch.float32))
        out = first_tensor(out)
        outputs = int(out[0].numel())
        need = data.num_classes if data.task == "classification" else data.train.targets[0].numel()
        if outputs != need:
            what = "classes" if data.task == "classification" else "targets"
            raise ConfigError(
                key,
                f"{model_spec.label} returns {outputs} outputs per example but {data.name} has "
                f"{need} {what}; set num_classes (or out_features) = {need}",
            )
