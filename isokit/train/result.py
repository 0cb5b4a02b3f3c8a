""":class:`TrainResult`: what a training run measured, with an exact JSON round trip.

The JSON layout of :meth:`TrainResult.to_dict` (``schema = "isokit.train.result/1"``) is
``docs/training.md §4``: options, data, run length, divergence step, steps-to-target, the logged
training curves, the held-out evaluations, per-tap gradient norms, checkpoint Profiles,
environment and labels.

Step ``s`` is measured after ``s`` updates (``docs/training.md §1``). Numbers are written with
:func:`isokit.probe.serialization.encode` (``"nan"``, ``"inf"`` as strings, floats at ``repr``
precision), so reading back gives every array bit for bit; reading checks every field and names
the first bad one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isokit._atomic import write_atomic
from isokit.probe import Profile
from isokit.probe.serialization import (
    ProfileFormatError,
    encode,
    read_array,
    read_int,
    read_list,
    read_mapping,
    read_number,
    read_str,
)
from isokit.train.options import TrainOptionError, TrainOptions

__all__ = ["SCHEMA", "TrainResult", "TrainResultFormatError"]

SCHEMA = "isokit.train.result/1"
_FIELDS = (
    "schema",
    "options",
    "data",
    "steps",
    "diverged_at",
    "steps_to_target",
    "wall_time_s",
    "train",
    "eval",
    "grad_norms",
    "checkpoints",
    "environment",
    "meta",
)


class TrainResultFormatError(ProfileFormatError):
    """A training result dict or file that cannot be read back: ``.field`` names the culprit."""


@dataclass(kw_only=True, eq=False)
class TrainResult:
    """A finished (or diverged) training run (its JSON layout: ``docs/training.md §4``).

    Attributes:
        options: the :class:`TrainOptions` it ran with.
        data: the data set's :meth:`~isokit.train.TrainData.describe`.
        steps: updates done; ``diverged_at`` when it diverged.
        step, loss, accuracy, lr: the logged training steps, the loss and accuracy of their
            batch and the learning rate used for their update (``accuracy`` is ``None`` for
            regression).
        eval_step, eval_loss, eval_accuracy: held-out evaluations.
        grad_taps, grad_norms: with ``grad_norms=True``, ``grad_norms[i, l]`` is the root mean
            square over the batch of ``‖∂ℓ/∂h_l‖`` at tap ``grad_taps[l]`` on logged step
            ``step[i]`` (ℓ is one example's loss).
        steps_to_target: first evaluated step whose held-out accuracy reached the target.
        diverged_at: the step whose training loss was NaN or inf (training stopped there).
        wall_time_s: the run's wall time, evaluations and checkpoints included.
        checkpoints: step → :class:`isokit.probe.Profile` on the fixed probe batch.
        checkpoint_errors: step → why its probe failed (:class:`isokit.probe.NonFiniteError`:
            the weights' Jacobian overflowed, say); that step has no Profile, training went on.
        environment: versions, device, threads and seed.
        meta: free-form labels (model, scheme) given by the caller.
    """

    options: TrainOptions
    data: dict[str, Any]
    steps: int
    step: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    lr: np.ndarray
    eval_step: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray | None
    grad_taps: list[str] = field(default_factory=list)
    grad_norms: np.ndarray | None = None
    steps_to_target: int | None = None
    diverged_at: int | None = None
    wall_time_s: float = 0.0
    checkpoints: dict[int, Profile] = field(default_factory=dict)
    checkpoint_errors: dict[int, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def effective_lr(self) -> float:
        """η/(1−β) with momentum, η otherwise (:attr:`TrainOptions.effective_lr`)."""
        return self.options.effective_lr

    @property
    def final_loss(self) -> float:
        """The last held-out loss (NaN when no evaluation ran)."""
        return float(self.eval_loss[-1]) if self.eval_loss.size else float("nan")

    @property
    def final_accuracy(self) -> float | None:
        """The last held-out accuracy (``None`` for regression)."""
        if self.eval_accuracy is None or not self.eval_accuracy.size:
            return None
        return float(self.eval_accuracy[-1])

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (module docstring); :meth:`from_dict` reads it back exactly."""
        grads = None
        if self.grad_norms is not None:
            grads = {"taps": list(self.grad_taps), "values": encode(self.grad_norms)}
        return {
            "schema": SCHEMA,
            "options": self.options.to_dict(),
            "data": encode(self.data),
            "steps": self.steps,
            "diverged_at": self.diverged_at,
            "steps_to_target": self.steps_to_target,
            "wall_time_s": self.wall_time_s,
            "train": {
                "step": encode(self.step),
                "loss": encode(self.loss),
                "accuracy": None if self.accuracy is None else encode(self.accuracy),
                "lr": encode(self.lr),
            },
            "eval": {
                "step": encode(self.eval_step),
                "loss": encode(self.eval_loss),
                "accuracy": None if self.eval_accuracy is None else encode(self.eval_accuracy),
            },
            "grad_norms": grads,
            "checkpoints": _checkpoint_entries(self.checkpoints, self.checkpoint_errors),
            "environment": encode(self.environment),
            "meta": encode(self.meta),
        }

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON atomically (temporary file + ``os.replace``)."""
        write_atomic(path, json.dumps(self.to_dict(), allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, d: Any) -> TrainResult:
        """Inverse of :meth:`to_dict`; every field is checked and a bad one named.

        Raises:
            TrainResultFormatError: a missing, unknown, mistyped or wrongly sized field.
        """
        try:
            return cls(**_read(d))
        except TrainResultFormatError:
            raise
        except ProfileFormatError as exc:  # from a checkpoint's Profile or a field reader
            raise TrainResultFormatError(exc.field, exc.message) from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> TrainResult:
        """Read a result written by :meth:`to_json`, checking every field."""
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as err:
                raise TrainResultFormatError(str(path), f"is not valid JSON ({err})") from None
        return cls.from_dict(data)

    def __repr__(self) -> str:
        end = f"diverged at step {self.diverged_at}" if self.diverged else f"{self.steps} steps"
        acc = self.final_accuracy
        tail = "" if acc is None else f", held-out accuracy {acc:.4f}"
        return (
            f"TrainResult({self.data.get('name', '?')}, {self.options.optimizer}, {end}, "
            f"held-out loss {self.final_loss:.4g}{tail})"
        )


def _optional_int(name: str, value: Any) -> int | None:
    return None if value is None else read_int(name, value, 0)


def _read_curves(name: str, value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    table = read_mapping(name, value, keys, f"the {name} section")
    step = read_array(f"{name}.step", table["step"], (None,), np.int64)
    n = step.shape[0]
    out = {"step": step, "loss": read_array(f"{name}.loss", table["loss"], (n,))}
    for key in keys[2:]:
        raw = table[key]
        optional = key == "accuracy"
        out[key] = None if optional and raw is None else read_array(f"{name}.{key}", raw, (n,))
    return out


def _read_grads(value: Any, n: int) -> tuple[list[str], np.ndarray | None]:
    if value is None:
        return [], None
    table = read_mapping("grad_norms", value, ("taps", "values"), "the grad_norms section")
    taps = [
        read_str(f"grad_norms.taps[{i}]", t)
        for i, t in enumerate(read_list("grad_norms.taps", table["taps"]))
    ]
    values = read_array("grad_norms.values", table["values"], (n, len(taps)))
    return taps, values


def _checkpoint_entries(profiles: dict[int, Profile], errors: dict[int, str]) -> list[dict]:
    """One entry per checkpoint in step order: ``{step, profile}``, or ``{step, error}`` where
    the probe failed."""
    entries = {s: {"step": s, "profile": p.to_dict()} for s, p in profiles.items()}
    entries.update({s: {"step": s, "error": str(e)} for s, e in errors.items()})
    return [entries[s] for s in sorted(entries)]


def _read_checkpoints(value: Any) -> tuple[dict[int, Profile], dict[int, str]]:
    profiles: dict[int, Profile] = {}
    errors: dict[int, str] = {}
    for i, item in enumerate(read_list("checkpoints", value)):
        failed = isinstance(item, dict) and "error" in item
        keys = ("step", "error") if failed else ("step", "profile")
        entry = read_mapping(f"checkpoints[{i}]", item, keys, "a checkpoint")
        step = read_int(f"checkpoints[{i}].step", entry["step"], 0)
        if step in profiles or step in errors:
            raise TrainResultFormatError(f"checkpoints[{i}].step", f"step {step} appears twice")
        if failed:
            errors[step] = read_str(f"checkpoints[{i}].error", entry["error"])
            continue
        try:
            profiles[step] = Profile.from_dict(entry["profile"])
        except ProfileFormatError as exc:  # name the field from the result's root
            raise TrainResultFormatError(
                f"checkpoints[{i}].profile.{exc.field}", exc.message
            ) from None
    return profiles, errors


def _check_length(steps: int, diverged_at: int | None, last_logged: int | None) -> None:
    if diverged_at is not None and diverged_at != steps:
        raise TrainResultFormatError(
            "diverged_at", f"is {diverged_at}, but a diverged run stops there (steps is {steps})"
        )
    if last_logged is not None and last_logged > steps:
        raise TrainResultFormatError(
            "train.step", f"logs step {last_logged}, after the run's last step {steps}"
        )


def _read(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise TrainResultFormatError(
            "result", f"must be an object (TrainResult.to_dict()), got {type(d).__name__}"
        )
    d = read_mapping("", d, _FIELDS, "a training result")
    if d["schema"] != SCHEMA:
        raise TrainResultFormatError(
            "schema", f"is {d['schema']!r}, this isokit reads {SCHEMA!r}; re-run the training"
        )
    try:
        options = TrainOptions.from_mapping(d["options"])
    except TrainOptionError as exc:
        raise TrainResultFormatError(f"options.{exc.option}", exc.message) from None
    train = _read_curves("train", d["train"], ("step", "loss", "accuracy", "lr"))
    evals = _read_curves("eval", d["eval"], ("step", "loss", "accuracy"))
    taps, grads = _read_grads(d["grad_norms"], train["step"].shape[0])
    for name in ("data", "environment", "meta"):
        read_mapping(name, d[name], tuple(d[name]) if isinstance(d[name], dict) else (), name)
    steps = read_int("steps", d["steps"], 0)
    diverged_at = _optional_int("diverged_at", d["diverged_at"])
    logged = train["step"]
    _check_length(steps, diverged_at, int(logged.max()) if logged.size else None)
    profiles, checkpoint_errors = _read_checkpoints(d["checkpoints"])
    return {
        "options": options,
        "data": dict(d["data"]),
        "steps": steps,
        "step": train["step"],
        "loss": train["loss"],
        "accuracy": train["accuracy"],
        "lr": train["lr"],
        "eval_step": evals["step"],
        "eval_loss": evals["loss"],
        "eval_accuracy": evals["accuracy"],
        "grad_taps": taps,
        "grad_norms": grads,
        "steps_to_target": _optional_int("steps_to_target", d["steps_to_target"]),
        "diverged_at": diverged_at,
        "wall_time_s": read_number("wall_time_s", d["wall_time_s"]),
        "checkpoints": profiles,
        "checkpoint_errors": checkpoint_errors,
        "environment": dict(d["environment"]),
        "meta": dict(d["meta"]),
    }
