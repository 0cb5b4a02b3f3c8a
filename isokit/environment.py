"""What a result records about where it ran: :func:`environment` (versions, platform, device).

Probe reports and training results both carry it, so two results can be told comparable or not.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["environment"]


@functools.cache  # a metadata lookup costs ~80 ms, and every training run records one
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(dist)
        return str(getattr(module, "__version__", "not installed"))


def environment(
    packages: Sequence[str] = ("torch", "numpy", "scipy", "matplotlib", "seaborn"),
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """Versions, platform and device: enough to tell whether two results are comparable.

    Example:
        >>> sorted(environment(packages=()))[:3]
        ['device', 'isokit', 'machine']
    """
    import torch

    import isokit

    env: dict[str, Any] = {"isokit": isokit.__version__}
    for name in packages:
        env[name] = _version(name)
    env.update(
        python=platform.python_version(),
        platform=platform.platform(),
        machine=platform.machine(),
        device=str(device),
        torch_threads=torch.get_num_threads(),
    )
    return env
