"""ZerO initialization (Zhao, Schäfer & Anandkumar, TMLR 2022): zeros, ones and Hadamard matrices.

Fully deterministic, so it takes no generator. The tensor rules (Algorithms 1 and 2) live here;
the model-level scheme, with the fixed skips that keep its zero layers trainable, lives in
:mod:`isokit.init.zero_scheme`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from isokit.init.checks import check_dtype, check_groups, check_int, check_weight

__all__ = ["hadamard", "zero_", "zero_matrix"]


def hadamard(n: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The n×n Sylvester Hadamard matrix, n a power of two.

    H_1 = [1] and H_2k = [[H_k, H_k], [H_k, -H_k]]. Entries are ±1 and H Hᵀ = n·I, so H/√n is
    orthogonal. Same ordering as ``scipy.linalg.hadamard``.

    Example:
        >>> hadamard(2)
        tensor([[ 1.,  1.],
                [ 1., -1.]], dtype=torch.float64)
    """
    check_int("n", n, where="hadamard", minimum=1)
    if n & (n - 1):
        raise ValueError(
            f"hadamard: n={n} is not a power of two; Sylvester Hadamard matrices exist only for "
            f"n = 2^k (the next one up is {1 << (n - 1).bit_length()})"
        )
    if not isinstance(dtype, torch.dtype) or not torch.empty((), dtype=dtype).is_signed():
        raise TypeError(
            f"hadamard: dtype must be a signed torch dtype that can hold -1, got {dtype!r}"
        )
    h = torch.ones(1, 1, dtype=dtype)
    while h.size(0) < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return h


def zero_matrix(m: int, n: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """ZerO's Algorithm 1 for an m×n weight (m = out, n = in).

    - m ≤ n: I_{m×n} (the zero-padded identity, same as ``eye_``).
    - m > n: c·H_p[:m, :n] with p = 2^⌈log2 m⌉ and c = 1/√p, as in the official notebook (the
      paper's printed c = 2^(-(m-1)/2) is a typo). When m = p the columns are orthonormal.

    Example:
        >>> zero_matrix(4, 2)
        tensor([[ 0.5000,  0.5000],
                [ 0.5000, -0.5000],
                [ 0.5000,  0.5000],
                [ 0.5000, -0.5000]], dtype=torch.float64)
    """
    check_int("m", m, where="zero_matrix", minimum=1)
    check_int("n", n, where="zero_matrix", minimum=1)
    check_dtype("dtype", dtype, where="zero_matrix")
    if m <= n:
        return torch.eye(m, n, dtype=dtype)
    p = 1 << (m - 1).bit_length()
    # Scale in float64 so 1/√p is not rounded twice for low-precision dtypes.
    return (hadamard(p)[:m, :n] / math.sqrt(p)).to(dtype)


def zero_(w: Tensor, *, groups: int = 1) -> Tensor:
    """Fill ``w`` with ZerO: Algorithm 1 for Linear, Algorithm 2 for ConvNd.

    - 2-D ``(out, in)``: W = :func:`zero_matrix` (out, in).
    - 3-D to 5-D ``(C_out, C_in/groups, *k)``: every tap 0 except the centre
      (k_1//2, ..., k_n//2), where group g's block W[g·o:(g+1)·o, :, centre] holds
      ``zero_matrix(o, C_in/groups)`` with o = C_out/groups (the per-group rule is an isokit
      extension). Like ``dirac_``, even kernels are accepted and use k//2.

    Example:
        >>> conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        >>> _ = zero_(conv.weight)
        >>> conv.weight[:, :, 1, 1].shape
        torch.Size([8, 3])
    """
    check_weight("w", w, where="zero_", min_dim=2, max_dim=5)
    check_groups("groups", groups, w, where="zero_")
    out_per_group, in_per_group = w.size(0) // groups, w.size(1)
    block = zero_matrix(out_per_group, in_per_group)
    if w.dim() == 2:
        with torch.no_grad():
            w.copy_(block)
        return w
    centre = tuple(k // 2 for k in w.shape[2:])
    kernel = torch.zeros(w.shape, dtype=torch.float64)
    for g in range(groups):
        kernel[(slice(g * out_per_group, (g + 1) * out_per_group), slice(None), *centre)] = block
    with torch.no_grad():
        w.copy_(kernel)
    return w
