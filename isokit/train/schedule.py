"""Learning-rate schedules: :func:`lr_factor`, the multiplier of the peak rate at a step.

``constant``: 1. ``cosine``: ½(1 + cos(π·t/T)) over the steps after the warm-up, reaching 0 at the
run's last step. A linear warm-up over ``w`` steps multiplies step ``s < w`` by ``(s + 1)/w``,
so the first update is not taken at the full rate. :func:`isokit.train.train` feeds it to
``torch.optim.lr_scheduler.LambdaLR``.

Example:
    >>> [round(lr_factor(s, total=4, schedule="cosine", warmup=0), 3) for s in range(4)]
    [1.0, 0.854, 0.5, 0.146]
"""

from __future__ import annotations

import math

__all__ = ["lr_factor"]


def lr_factor(step: int, *, total: int, schedule: str, warmup: int) -> float:
    """The multiplier of the peak learning rate for the update at ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / span))
