"""The Jacobian probe of a training checkpoint: a Profile of the current weights, or the reason
the weights cannot be measured, so that one overflowing checkpoint does not cost the run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from isokit.probe import NonFiniteError, Profile, profile

__all__ = ["probe_checkpoint"]


def probe_checkpoint(
    model: nn.Module,
    batch: Tensor,
    probe_options: Any,
    *,
    step: int,
    meta: Mapping[str, Any] | None = None,
) -> tuple[Profile | None, str | None]:
    """``(Profile, None)`` of ``model`` on ``batch`` at ``step``, or ``(None, why)`` when the
    probe met NaN or inf in the weights or their Jacobian (:class:`isokit.probe.NonFiniteError`).

    A bad option or a batch that does not fit still raises: those are the caller's mistakes, not
    properties of the trained weights. The model's train/eval mode and torch's random stream
    are left as they were (the probe draws from its own seeded generator).
    """
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), np.errstate(divide="ignore", invalid="ignore"):
            return profile(
                model, batch, probe_options, meta={**dict(meta or {}), "step": step}
            ), None
    except NonFiniteError as exc:
        return None, str(exc)
    finally:
        model.train(was_training)
