"""Convolution layouts for the identity initializers of :mod:`isokit.init.identity`.

A ConvNd weight has shape ``(C_out, ipg, *kernel)`` with ``ipg = C_in / groups``. The 2-D rules
(IDI, IDIZ) are applied to one ``(opg, F)`` matrix per group, ``opg = C_out / groups``, and the
result is laid back out as a kernel. Two layouts exist:

* **patch** (IDIC, ``docs/idinit.md`` §6.1): ``F = ipg * prod(kernel)``. Column ``j`` is
  ``c * K + t`` in PyTorch memory order (``flatten_order="torch"``), or ``t * ipg + c`` in the
  paper's k×k×C_in×C_out order (``flatten_order="tap"``), where ``t`` is the row-major tap index
  and ``K = prod(kernel)``.
* **centre** (channel-maintain, ``docs/idinit.md`` §6.2): ``F = ipg``; the matrix sits at the
  centre tap ``(k_1 // 2, ..., k_n // 2)`` and every other tap is zero.

Every group gets the same pattern, because output ``g * opg + m`` only ever reads the channels
of group ``g`` and the rule only sees indices inside the group.

The helpers here are layout only: they take the 2-D rule as a callable and build float64
patterns on the CPU, so they carry no option validation of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

FlattenOrder = Literal["torch", "tap"]
Fill = Callable[[int, int], Tensor]
"""A 2-D rule: ``fill(d_out, d_in)`` returns a float64 ``(d_out, d_in)`` pattern."""


def _repeat_groups(block: Tensor, groups: int) -> Tensor:
    return block.repeat(groups, *([1] * (block.ndim - 1)))


def patch_pattern(
    shape: Sequence[int], groups: int, fill: Fill, *, flatten_order: FlattenOrder = "torch"
) -> Tensor:
    """Apply ``fill`` to each group's flattened ``(opg, ipg * K)`` slice and reshape back.

    Example:
        >>> from isokit.init.identity_conv import patch_pattern
        >>> p = patch_pattern((2, 1, 3), 1, lambda o, i: torch.eye(o, i, dtype=torch.float64))
        >>> p[:, 0].tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    c_out, ipg, *kernel = (int(s) for s in shape)
    opg, taps = c_out // groups, math.prod(kernel)
    flat = fill(opg, ipg * taps)
    if flatten_order == "torch":
        block = flat.reshape(opg, ipg, *kernel)
    else:
        block = flat.reshape(opg, taps, ipg).transpose(1, 2).reshape(opg, ipg, *kernel)
    return _repeat_groups(block, groups)


def centre_pattern(shape: Sequence[int], groups: int, fill: Fill) -> Tensor:
    """Put ``fill(opg, ipg)`` at the centre tap of each group and zeros elsewhere.

    For even kernel sizes the centre index ``k // 2`` is the one ``torch.nn.init.dirac_`` uses,
    half a pixel right/below of the geometric centre.

    Example:
        >>> from isokit.init.identity_conv import centre_pattern
        >>> p = centre_pattern((1, 1, 3), 1, lambda o, i: torch.ones(o, i, dtype=torch.float64))
        >>> p.flatten().tolist()
        [0.0, 1.0, 0.0]
    """
    c_out, ipg, *kernel = (int(s) for s in shape)
    opg = c_out // groups
    block = torch.zeros(opg, ipg, *kernel, dtype=torch.float64)
    block[(slice(None), slice(None), *(k // 2 for k in kernel))] = fill(opg, ipg)
    return _repeat_groups(block, groups)


def group_view(w: Tensor, groups: int) -> Tensor:
    """View a weight as ``(groups, opg, ipg, taps)``; a 2-D weight has one group and one tap."""
    c_out, ipg = w.shape[0], w.shape[1]
    return w.reshape(groups, c_out // groups, ipg, -1)
