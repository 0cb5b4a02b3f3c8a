"""Memory of the exact probe (``docs/probes.md §3.3``): the budget and the estimate of one sweep.

:func:`available_memory` and :func:`default_max_memory` give the budget;
:func:`estimate_exact_memory` the bytes of one sweep (joint or chained, see
:mod:`isokit.probe.exact`) over taps of given output sizes, which :mod:`isokit.probe.plan` fits
into it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = [
    "ACT_FACTOR",
    "available_memory",
    "default_max_memory",
    "estimate_exact_memory",
    "storage_and_live",
]

#: Live tangent-sized tensors per chunk column at the widest layer: activations, skip, scratch,
#: and above all the ``im2col`` buffer of a CPU 3×3 convolution (9× its input). Measured: about
#: 13 for a CIFAR BasicBlock in float64 on CPU.
ACT_FACTOR = 12


def available_memory(device: torch.device | str | None = None) -> int:
    """Free memory in bytes: ``MemAvailable`` (or ``os.sysconf``) on CPU; on CUDA the device's
    free memory (``torch.cuda.mem_get_info``) plus what PyTorch's caching allocator has reserved
    but does not use (``memory_reserved − memory_allocated``).

    Example:
        >>> available_memory("cpu") > 0
        True
    """
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks freed by earlier probes stay reserved: the driver counts them as used, yet the
        # allocator hands them out again (and releases them before it reports running out).
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 4 * 2**30


def default_max_memory(device: torch.device | str | None = None) -> int:
    """The default budget: half the free RAM on CPU, 80 % of the free memory on CUDA
    (:func:`available_memory` of ``device``).

    Example:
        >>> default_max_memory("cpu") > 0
        True
    """
    device = torch.device(device or "cpu")
    fraction = 0.8 if device.type == "cuda" else 0.5
    return int(fraction * available_memory(device))


def storage_and_live(
    n_in: int, dims: Sequence[int], strategy: str, c: int, svd: bool
) -> tuple[int, int]:
    """(stored floats, live tangent floats) per example for one sweep with chunk ``c``.

    Example:
        >>> storage_and_live(64, [64, 64], "joint", 64, False)  # two 64×64 Grams; tangents
        (8192, 57344)
    """
    max_d = max(dims)
    max_r = max(min(d, n_in) for d in dims)
    if strategy == "joint":
        storage = sum(d * n_in if (svd or d > n_in) else d * d for d in dims)
        live = c * (sum(dims) + ACT_FACTOR * max_d)
    elif strategy == "chained":
        pairs = [dims[0]] + [a + b for a, b in zip(dims[:-1], dims[1:], strict=True)]
        storage = max(pairs) * n_in + max_r * max_r
        live = c * (ACT_FACTOR + 1) * max_d
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return storage, live


def estimate_exact_memory(
    n_in: int,
    dims: Sequence[int],
    *,
    strategy: str = "joint",
    chunk_size: int | None = None,
    example_chunk: int = 1,
    svd: bool = False,
    param_bytes: int = 0,
) -> int:
    """Bytes needed by one exact sweep over taps of output sizes ``dims`` (float64 storage).

    ``joint``: ``Σ_l D_l·min(D_l, n_in)`` stored (``D_l·n_in`` with ``svd``) plus ``c·Σ_l D_l``
    captured tangents and ``ACT_FACTOR·c·max D`` live ones, per example in flight.
    ``chained``: ``max_l (D_{l−1} + D_l)·n_in`` columns, the largest ``r×r`` Gram, and the live
    tangents of one chunk. ``param_bytes`` (the float64 model copy) is added once.

    Example:
        >>> estimate_exact_memory(64, [64, 64], chunk_size=64)  # two 64×64 Grams + tangents
        524288
    """
    if not dims:
        return int(param_bytes)
    c = min(n_in, chunk_size or n_in)
    storage, live = storage_and_live(n_in, dims, strategy, c, svd)
    return int(8 * example_chunk * (storage + live) + param_bytes)
