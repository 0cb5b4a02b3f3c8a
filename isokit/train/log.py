""":class:`RunLog`: what a training run appends to as it goes (logged steps, evaluations,
checkpoints), turned into a :class:`~isokit.train.TrainResult` at the end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from isokit.environment import environment
from isokit.probe import Profile
from isokit.train.data import TrainData
from isokit.train.options import TrainOptions
from isokit.train.result import TrainResult

__all__ = ["RunLog"]


class RunLog:
    """The lists a run appends to; :meth:`result` turns them into :class:`TrainResult` arrays."""

    def __init__(self) -> None:
        self.step: list[int] = []
        self.loss: list[float] = []
        self.accuracy: list[float] = []
        self.lr: list[float] = []
        self.grads: list[list[float]] = []
        self.eval_step: list[int] = []
        self.eval_loss: list[float] = []
        self.eval_accuracy: list[float] = []
        self.checkpoints: dict[int, Profile] = {}
        self.checkpoint_errors: dict[int, str] = {}

    def add(self, step: int, loss: float, accuracy: float | None, lr: float, grads) -> None:
        """One logged step; ``accuracy`` is ``None`` for regression, ``grads`` ``None`` when
        gradient norms are off."""
        self.step.append(step)
        self.loss.append(loss)
        if accuracy is not None:
            self.accuracy.append(accuracy)
        self.lr.append(lr)
        if grads is not None:
            self.grads.append(grads)

    def steps_to_target(self, target: float | None) -> int | None:
        """The first evaluated step whose held-out accuracy reached ``target``."""
        if target is None:
            return None
        for step, acc in zip(self.eval_step, self.eval_accuracy, strict=True):
            if acc >= target:
                return step
        return None

    def result(
        self,
        *,
        options: TrainOptions,
        data: TrainData,
        steps: int,
        diverged_at: int | None,
        tap_names: list[str],
        wall: float,
        device: torch.device,
        meta: Mapping[str, Any] | None,
    ) -> TrainResult:
        classification = data.task == "classification"
        grads = None
        if tap_names:
            grads = np.asarray(self.grads, dtype=np.float64).reshape(len(self.step), len(tap_names))
        return TrainResult(
            options=options,
            data=data.describe(),
            steps=steps,
            step=np.asarray(self.step, dtype=np.int64),
            loss=np.asarray(self.loss, dtype=np.float64),
            accuracy=np.asarray(self.accuracy, dtype=np.float64) if classification else None,
            lr=np.asarray(self.lr, dtype=np.float64),
            eval_step=np.asarray(self.eval_step, dtype=np.int64),
            eval_loss=np.asarray(self.eval_loss, dtype=np.float64),
            eval_accuracy=(
                np.asarray(self.eval_accuracy, dtype=np.float64) if classification else None
            ),
            grad_taps=list(tap_names),
            grad_norms=grads,
            steps_to_target=(
                self.steps_to_target(options.target_accuracy) if classification else None
            ),
            diverged_at=diverged_at,
            wall_time_s=round(wall, 3),
            checkpoints=self.checkpoints,
            checkpoint_errors=self.checkpoint_errors,
            environment={**environment(device=str(device)), "seed": options.seed},
            meta=dict(meta or {}),
        )
